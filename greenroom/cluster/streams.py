"""The cluster's bus: per-session event streams, the live stream and forwarded commands.

Valkey or Redis, through coredis (anyio-based, so it runs on trio). The keys are the
"Keys" table of docs/cluster.md. Every event is appended by one Lua script that first
checks the session's owner hash against this node and its epoch (the fencing token), and
XADD with an explicit ID refuses an entry at or below the stream's last: no stale owner,
duplicate or regression is ever appended.

One client serves every call. coredis multiplexes ordinary commands on shared connections
but leases a connection of its own to each blocking command (XREAD BLOCK, BLPOP: their
command flags say so) until its reply comes, opening another one for the rest when none is
free (up to ``MAX_CONNECTIONS``). So a reader blocked in :meth:`Streams.receive` or
:meth:`Streams.read_live` never holds the connection an append needs, and cancelling a blocked
reader drops its connection rather than leave a late reply on it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

import attrs
import coredis
import trio
from coredis.commands.script import Script
from coredis.exceptions import ConnectionError as RedisConnectionError
from coredis.exceptions import NoScriptError

from greenroom.cluster.errors import EngineUnavailable
from greenroom.config import redact_url

OPEN_SECONDS: Final = 5.0
"""How long :meth:`Streams.open` waits for Redis to connect and answer a PING."""

COMMAND_SECONDS: Final = 30.0
"""How long any call waits for its answer beyond its own blocking time: a Redis that stopped
answering (a paused process, a lost network) is reported, never waited on forever."""

MAX_CONNECTIONS: Final = 32
"""The client's connections: the few blocking readers a node runs, each on one of its own,
and the shared ones the other commands are multiplexed on."""

PAGE: Final = 1000
"""Entries read per XRANGE round trip in :meth:`Streams.replay`."""

RECEIVE_MORE: Final = 100
"""How many more queued payloads :meth:`Streams.receive` takes after the first."""

# KEYS[1]: the owner hash <prefix>owner:<session>.
# ARGV[1]: this node's ID; ARGV[2]: the epoch claimed (a decimal integer).
# Sets the hash to (node, epoch) only when the epoch is above the stored one (or none is
# stored): an owner is only ever raised. Returns 1 when the hash now says (node, epoch).
RAISE_OWNER: Final = """
local stored = tonumber(redis.call('HGET', KEYS[1], 'epoch'))
local epoch = tonumber(ARGV[2])
if stored == nil or epoch > stored then
  redis.call('HSET', KEYS[1], 'node', ARGV[1], 'epoch', ARGV[2])
  return 1
end
if stored == epoch and redis.call('HGET', KEYS[1], 'node') == ARGV[1] then
  return 1
end
return 0
"""

# KEYS[1]: the owner hash <prefix>owner:<session>; KEYS[2]: the session's stream
# <prefix>session:<session>; KEYS[3]: the live stream <prefix>events.
# ARGV[1]: this node's ID; ARGV[2]: its epoch; ARGV[3]: the live stream's approximate
# MAXLEN; ARGV[4]: the session's ID; then pairs ARGV[5], ARGV[6], ...: seq, record.
# Appends nothing unless the owner hash says (node, epoch). Each record goes to the session's
# stream as entry "<seq>-1" and then to the live stream, both with the epoch (field p); an ID
# at or below the stream's last (a duplicate, a regression) is refused by XADD, and the script
# stops there. Returns 1 when every record was appended, 0 when the session is fenced.
APPEND: Final = """
local owner = redis.call('HMGET', KEYS[1], 'node', 'epoch')
if owner[1] ~= ARGV[1] or owner[2] ~= ARGV[2] then
  return 0
end
for i = 5, #ARGV, 2 do
  local added = redis.pcall('XADD', KEYS[2], ARGV[i] .. '-1', 'e', ARGV[i + 1], 'p', ARGV[2])
  if type(added) == 'table' and added.err then
    return 0
  end
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*',
             's', ARGV[4], 'q', ARGV[i], 'e', ARGV[i + 1], 'p', ARGV[2])
end
return 1
"""

_CONNECTION_ERRORS: Final = (RedisConnectionError, OSError, TimeoutError)


@attrs.frozen(kw_only=True)
class Entry:
    """One event read back: its session, its seq, its record as the journal encodes it, and
    the epoch of the owner that appended it (0: appended by a node that did not say)."""

    session: str
    seq: int
    record: bytes
    epoch: int = 0


@attrs.frozen(kw_only=True)
class Append:
    """A session's events to append under its owner's epoch, seqs rising."""

    session: str
    epoch: int
    entries: tuple[tuple[int, bytes], ...]


def _bytes(value: str | bytes) -> bytes:
    # coredis types a stream entry's parts as str | bytes whatever the client decodes; this
    # client never decodes, so they are bytes.
    return value if isinstance(value, bytes) else value.encode()


def _seq(identifier: str | bytes) -> int:
    return int(_bytes(identifier).split(b"-", 1)[0])


def _epoch(fields: Mapping[Any, str | bytes]) -> int:
    """An entry's epoch; 0 (unknown) when it has none (appended by an older version)."""
    epoch = fields.get(b"p")
    try:
        return 0 if epoch is None else int(_bytes(epoch))
    except ValueError:
        return 0


class Streams:
    """This node's side of the bus.

    :meth:`open` and :meth:`aclose` nest like an ``async with`` in one task (coredis keeps its
    connections' tasks in a task group that lives between the two); ``async with Streams(...)``
    does both. Every call raises :class:`EngineUnavailable` when Redis cannot be reached or
    does not answer in time.
    """

    def __init__(
        self,
        url: str,
        node: str,
        *,
        prefix: str = "greenroom:",
        live_maxlen: int = 100_000,
    ) -> None:
        self.url = url
        self.node = node
        self.prefix = prefix
        self.live_maxlen = live_maxlen
        self._events = f"{prefix}events"
        self._client: coredis.Redis[bytes] | None = None
        self._stack = contextlib.AsyncExitStack()
        self._raise_owner = Script[bytes](script=RAISE_OWNER)
        self._append = Script[bytes](script=APPEND)

    async def __aenter__(self) -> Streams:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- lifetime -------------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and PING; :class:`EngineUnavailable` within ``OPEN_SECONDS`` if it fails."""
        await self._probe()
        client = coredis.Redis.from_url(
            self.url,
            decode_responses=False,
            connect_timeout=OPEN_SECONDS,
            max_connections=MAX_CONNECTIONS,
        )
        self._stack = contextlib.AsyncExitStack()
        # Entered outside any deadline: the client's task group must outlive this call, and a
        # cancel scope closed around it would break trio's nesting. Entering does no I/O.
        await self._stack.enter_async_context(client)
        self._client = client
        try:
            with self._errors(OPEN_SECONDS):
                await client.ping()
                await client.script_load(APPEND)
        except BaseException:
            await self.aclose()
            raise

    async def _probe(self) -> None:
        """Reach Redis' TCP port before coredis tries: a connection coredis fails to open
        leaves its buffers unclosed (a ResourceWarning each), and a server that is simply not
        there is the usual failure at start."""
        parts = urlsplit(self.url)
        if parts.scheme not in ("redis", "rediss"):
            return
        with self._errors(OPEN_SECONDS):
            stream = await trio.open_tcp_stream(parts.hostname or "localhost", parts.port or 6379)
            await stream.aclose()

    async def aclose(self) -> None:
        """Close the connections (idempotent)."""
        self._client = None
        # No cancel scope around this: the client's task group, opened in open(), encloses
        # any scope opened here, and must be exited outside of them.
        await self._stack.aclose()

    # -- ownership and appends ------------------------------------------------------------------

    async def raise_owner(self, session: str, epoch: int) -> bool:
        """Raise the session's owner hash to (this node, ``epoch``), never lower it.

        True when the hash now says (this node, ``epoch``).
        """
        client = self._connected()
        with self._errors():
            done: object = await self._raise_owner(
                keys=[self._owner(session)], args=[self.node, str(epoch)], client=client
            )
        return bool(done)

    async def append(self, appends: Sequence[Append]) -> set[str]:
        """Append each session's entries if this node still owns it at that epoch.

        All in one round trip. Returns the sessions fenced: another owner or epoch, or an entry
        at or below the stream's last (nothing from that entry on is appended).
        """
        client = self._connected()
        if not appends:
            return set()
        with self._errors():
            async with client.pipeline(transaction=False, raise_on_error=False) as pipe:
                requests = [
                    pipe.evalsha(self._append.sha, keys=self._append_keys(a), args=self._args(a))
                    for a in appends
                ]
            replies: list[object] = []
            for request in requests:
                try:
                    replies.append(await request)
                except NoScriptError as lost:  # raised here, not returned, by coredis
                    replies.append(lost)
        fenced: set[str] = set()
        for item, reply in zip(appends, replies, strict=True):
            if isinstance(reply, NoScriptError):
                # Redis lost its script cache (a restart): the script did not run, so running
                # it now cannot append anything twice.
                with self._errors():
                    reply = await self._append(
                        keys=self._append_keys(item), args=self._args(item), client=client
                    )
            if isinstance(reply, BaseException):
                with self._errors():
                    raise reply
            if reply != 1:
                fenced.add(item.session)
        return fenced

    def _append_keys(self, append: Append) -> list[str]:
        return [self._owner(append.session), self._session(append.session), self._events]

    def _args(self, append: Append) -> list[str | int | bytes]:
        args: list[str | int | bytes] = [
            self.node,
            str(append.epoch),
            self.live_maxlen,
            append.session,
        ]
        for seq, record in append.entries:
            args += [seq, record]
        return args

    # -- a session's stream ---------------------------------------------------------------------

    async def replay(self, session: str, after: int) -> list[Entry]:
        """Every entry of the session's stream with a seq above ``after``, in order."""
        client = self._connected()
        key = self._session(session)
        start = f"({after}-1" if after >= 0 else "-"
        found: list[Entry] = []
        while True:
            with self._errors():
                page = await client.xrange(key, start, "+", count=PAGE)
            found += [
                Entry(
                    session=session,
                    seq=_seq(e.identifier),
                    record=_bytes(e.field_values[b"e"]),
                    epoch=_epoch(e.field_values),
                )
                for e in page
            ]
            if len(page) < PAGE:
                return found
            start = "(" + _bytes(page[-1].identifier).decode()

    async def last_seq(self, session: str) -> int | None:
        """The seq of the session's newest entry; None when its stream is empty or missing."""
        client = self._connected()
        with self._errors():
            newest = await client.xrevrange(self._session(session), "+", "-", count=1)
        return _seq(newest[0].identifier) if newest else None

    async def trim(self, session: str, below: int) -> None:
        """Drop the session's entries with a seq below ``below`` (a snapshot holds them)."""
        client = self._connected()
        with self._errors():
            # MINID <below> keeps every ID from <below>-0 up: the same entries as <below>-1,
            # since every entry's ID is <seq>-1.
            await client.xtrim(self._session(session), coredis.PureToken.MINID, below)

    async def forget(self, session: str) -> None:
        """Delete the session's stream and owner hash (the session was deleted)."""
        client = self._connected()
        with self._errors():
            await client.delete([self._session(session), self._owner(session)])

    # -- the live stream ------------------------------------------------------------------------

    async def live_cursor(self) -> bytes:
        """The ID of the live stream's newest entry (``0-0`` when empty): where to start."""
        client = self._connected()
        with self._errors():
            newest = await client.xrevrange(self._events, "+", "-", count=1)
        return _bytes(newest[0].identifier) if newest else b"0-0"

    async def read_live(
        self, cursor: bytes, *, count: int = 1000, block: float = 1.0
    ) -> tuple[bytes, list[Entry]]:
        """The live stream's entries after ``cursor`` (waiting up to ``block`` seconds for one).

        Returns the cursor to read on from and the entries; none when nothing came. A
        ``block`` of 0 or less does not wait.
        """
        client = self._connected()
        waits = block > 0
        with self._errors(COMMAND_SECONDS + max(block, 0.0)):
            found = await client.xread(
                {self._events: cursor},
                count=count,
                block=max(1, round(block * 1000)) if waits else None,
            )
        if not found:
            return cursor, []
        page = next(iter(found.values()))
        entries = [
            Entry(
                session=_bytes(e.field_values[b"s"]).decode(),
                seq=int(e.field_values[b"q"]),
                record=_bytes(e.field_values[b"e"]),
                epoch=_epoch(e.field_values),
            )
            for e in page
        ]
        return (_bytes(page[-1].identifier) if page else cursor), entries

    # -- forwarded commands ---------------------------------------------------------------------

    async def send(self, node: str, payload: bytes) -> None:
        """Queue a command for ``node``."""
        await self._push(f"{self.prefix}inbox:{node}", payload)

    async def receive(self, *, block: float = 1.0) -> list[bytes]:
        """The commands queued for this node, waiting up to ``block`` seconds for the first."""
        return await self._pop(f"{self.prefix}inbox:{self.node}", block)

    async def answer(self, node: str, payload: bytes) -> None:
        """Queue a reply for ``node``, the asker of a forwarded command."""
        await self._push(f"{self.prefix}replies:{node}", payload)

    async def answers(self, *, block: float = 1.0) -> list[bytes]:
        """The replies queued for this node, waiting up to ``block`` seconds for the first."""
        return await self._pop(f"{self.prefix}replies:{self.node}", block)

    async def _push(self, key: str, payload: bytes) -> None:
        client = self._connected()
        with self._errors():
            await client.rpush(key, [payload])

    async def _pop(self, key: str, block: float) -> list[bytes]:
        client = self._connected()
        got: list[bytes] = []
        if block > 0:
            with self._errors(COMMAND_SECONDS + block):
                first = await client.blpop([key], timeout=block)
            if first is None:
                return []
            got.append(first[1])
        with self._errors():
            more = await client.lpop(key, RECEIVE_MORE if got else RECEIVE_MORE + 1)
        return got + list(more or [])

    # -- plumbing -------------------------------------------------------------------------------

    def _owner(self, session: str) -> str:
        return f"{self.prefix}owner:{session}"

    def _session(self, session: str) -> str:
        return f"{self.prefix}session:{session}"

    def _connected(self) -> coredis.Redis[bytes]:
        if self._client is None:
            raise trio.ClosedResourceError("the bus is not open")
        return self._client

    @contextlib.contextmanager
    def _errors(self, limit: float = COMMAND_SECONDS) -> Iterator[None]:
        """Redis' connection failures, and no answer within ``limit`` seconds, as
        :class:`EngineUnavailable`."""
        name = f"Redis at {redact_url(self.url)}"
        try:
            with trio.fail_after(limit):
                yield
        except trio.TooSlowError as error:
            raise EngineUnavailable(f"{name} did not answer within {limit:g} s") from error
        except _CONNECTION_ERRORS as error:
            raise EngineUnavailable(f"{name} is unreachable: {error}") from error
        except BaseExceptionGroup as group:
            # coredis' task group can wrap a connection failure in a group.
            matched, rest = group.split(_CONNECTION_ERRORS)
            if matched is None or rest is not None:
                raise
            first: Any = matched.exceptions[0]
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            raise EngineUnavailable(f"{name} is unreachable: {first}") from group


__all__ = ["Append", "EngineUnavailable", "Entry", "Streams"]
