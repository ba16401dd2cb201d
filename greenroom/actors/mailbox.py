"""Mailboxes, actor references, ``tell`` and ``ask``.

An actor is a task that reads its :class:`Mailbox` one message at a time. Others hold an
:class:`ActorRef` and talk to it only by message:

- ``tell`` sends and does not wait for an answer; when the mailbox is at its bound the sender
  waits (backpressure), and ``tell_nowait`` raises :class:`~greenroom.protocol.errors.MailboxFull`.
- ``ask`` sends a request that carries a :class:`Reply` slot and waits for the answer, with a
  timeout. An ask never hangs on a dead actor: when the incarnation serving the mailbox ends
  (it returned, crashed or is being restarted), every ask still waiting fails at once with
  :class:`~greenroom.protocol.errors.ActorDied`, and an ask made while no incarnation serves
fails at once.

The mailbox outlives incarnations: a supervisor restarts an actor on the same mailbox, so an
``ActorRef`` stays valid across restarts. Tells queued during a crash are kept for the next
incarnation; asks queued then have already failed and are skipped.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Generic, Protocol, TypeGuard, TypeVar, cast

import attrs
import trio

from greenroom.protocol.commands import Command
from greenroom.protocol.errors import ActorDied, AskTimeout, MailboxFull
from greenroom.waits import send

T = TypeVar("T")
R = TypeVar("R")
M = TypeVar("M")

DEFAULT_ASK_TIMEOUT = 10.0


@attrs.define(eq=False)
class Reply(Generic[T]):
    """A one-shot answer slot. The first ``send`` or ``fail`` wins; later ones are ignored."""

    _event: trio.Event = attrs.field(factory=trio.Event, init=False)
    _value: Any = attrs.field(default=None, init=False)
    _error: Exception | None = attrs.field(default=None, init=False)

    @property
    def done(self) -> bool:
        return self._event.is_set()

    def send(self, value: T) -> None:
        if not self.done:
            self._value = value
            self._event.set()

    def fail(self, error: Exception) -> None:
        if not self.done:
            self._error = error
            self._event.set()

    async def wait(self) -> T:
        await self._event.wait()
        if self._error is not None:
            raise self._error
        value: T = self._value
        return value


class Asks(Protocol[T]):
    """A message that expects an answer: it carries the reply slot the actor answers in."""

    @property
    def reply(self) -> Reply[T]: ...


@attrs.frozen(kw_only=True)
class Request(Generic[T]):
    """A command of the protocol, sent to the actor that executes it as it came (no copy of
    its fields in a message class of the actor's own), and the slot for the actor's answer:
    usually the command's result; what the runtime completes into it, where it needs more
    than one actor (``openSession``: the manager answers the session id)."""

    command: Command[Any]
    reply: Reply[T] = attrs.field(factory=Reply, eq=False, repr=False)

    @classmethod
    def of(cls, command: Command[R]) -> Request[R]:
        """The request whose answer is ``command``'s result."""
        return Request(command=command)


@attrs.frozen(kw_only=True)
class MailboxStatistics:
    """A snapshot of one mailbox, for ``stats`` and the bench suite."""

    name: str
    capacity: float
    queued: int
    serving: bool
    told: int
    asked: int
    asks_failed: int
    incarnations: int


class _Stop:
    """Wakes an idle inbox so that it notices a stop request."""


_STOP = _Stop()


@attrs.define(eq=False)
class Mailbox(Generic[M]):
    """A bounded queue of messages for one actor, kept across the actor's restarts.

    ``capacity`` is the bound; when full, ``tell`` waits and ``tell_nowait`` raises. ``math.inf``
    is allowed only where the caller says why it is safe.
    """

    name: str
    capacity: float = 1024
    ask_timeout: float = DEFAULT_ASK_TIMEOUT
    _send: trio.MemorySendChannel[M | _Stop] = attrs.field(init=False)
    _receive: trio.MemoryReceiveChannel[M | _Stop] = attrs.field(init=False)
    _pending: set[Reply[Any]] = attrs.field(factory=set, init=False)
    _serving: bool = attrs.field(default=False, init=False)
    _stopping: bool = attrs.field(default=False, init=False)
    _closed: bool = attrs.field(default=False, init=False)
    _told: int = attrs.field(default=0, init=False)
    _asked: int = attrs.field(default=0, init=False)
    _asks_failed: int = attrs.field(default=0, init=False)
    _incarnations: int = attrs.field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[M | _Stop](self.capacity)

    @property
    def ref(self) -> ActorRef[M]:
        return ActorRef(self)

    @property
    def serving(self) -> bool:
        return self._serving

    @property
    def accepting(self) -> bool:
        """Serving, and not asked to stop: a message sent now will be handled (one sent to
        an actor on its way out fails with :class:`ActorDied`)."""
        return self._serving and not self._stopping

    @contextmanager
    def serve(self) -> Iterator[Inbox[M]]:
        """Mark an incarnation as serving this mailbox for the duration of the block.

        On leaving, however it is left, every ask still waiting fails with ActorDied.
        """
        if self._serving:
            raise RuntimeError(f"mailbox {self.name} is already served")
        self._serving = True
        self._stopping = False
        self._incarnations += 1
        try:
            yield Inbox(self)
        finally:
            self._serving = False
            self._fail_pending(f"{self.name} stopped before it replied")

    def request_stop(self) -> None:
        """Ask the serving incarnation to leave its message loop after the current message."""
        self._stopping = True
        # When full, the inbox is busy anyway: it checks the flag before its next receive.
        with contextlib.suppress(trio.WouldBlock):
            self._send.send_nowait(_STOP)

    def close(self) -> None:
        """Refuse every later message: the actor is gone for good."""
        self._closed = True
        self.request_stop()
        self._fail_pending(f"{self.name} is closed")

    def statistics(self) -> MailboxStatistics:
        return MailboxStatistics(
            name=self.name,
            capacity=self.capacity,
            queued=self._send.statistics().current_buffer_used,
            serving=self._serving,
            told=self._told,
            asked=self._asked,
            asks_failed=self._asks_failed,
            incarnations=self._incarnations,
        )

    def _check_open(self) -> None:
        if self._closed:
            raise ActorDied(f"{self.name} is closed")

    def _fail_pending(self, why: str) -> None:
        pending, self._pending = self._pending, set()
        for reply in pending:
            if not reply.done:
                self._asks_failed += 1
                reply.fail(ActorDied(why))


@attrs.define(eq=False)
class Inbox(Generic[M]):
    """The receiving side of a mailbox, handed to the incarnation that serves it."""

    _mailbox: Mailbox[M]

    def __aiter__(self) -> Inbox[M]:
        return self

    async def __anext__(self) -> M:
        # A plain iterator rather than an async generator: an actor that crashes mid-loop
        # leaves no generator behind to be finalised out of its task.
        box = self._mailbox
        while not box._stopping:
            message = await box._receive.receive()
            if _deliverable(message):
                return message
        raise StopAsyncIteration

    async def receive_batch(self, limit: int = 1024) -> list[M]:
        """The next message and up to ``limit - 1`` more that are queued already; an empty
        list once the inbox has ended.

        For actors that handle a stream of cheap messages (every event of every session):
        one trip through the scheduler per batch, not per message.
        """
        try:
            first = await self.__anext__()
        except StopAsyncIteration:
            return []
        batch = [first]
        box = self._mailbox
        while len(batch) < limit and not box._stopping:
            try:
                message = box._receive.receive_nowait()
            except trio.WouldBlock:
                break
            if _deliverable(message):
                batch.append(message)
        return batch

    def drain_nowait(self) -> list[M]:
        """Every message still queued, without waiting, even once a stop was requested: for
        an actor that must not leave work behind when it stops (the journal)."""
        drained: list[M] = []
        while True:
            try:
                message = self._mailbox._receive.receive_nowait()
            except trio.WouldBlock:
                return drained
            if _deliverable(message):
                drained.append(message)


def _deliverable(message: M | _Stop) -> TypeGuard[M]:
    """Whether the actor should see ``message``: not a stop wake-up, and not a request whose
    asker already gave up or was failed by a restart."""
    if isinstance(message, _Stop):
        return False
    reply = getattr(message, "reply", None)
    return not (isinstance(reply, Reply) and reply.done)


@attrs.frozen
class ActorRef(Generic[M]):
    """How others reach an actor. Valid across the actor's restarts."""

    _mailbox: Mailbox[M]

    @property
    def name(self) -> str:
        return self._mailbox.name

    @property
    def alive(self) -> bool:
        return self._mailbox.serving

    async def tell(self, message: M) -> None:
        """Send without waiting for an answer; waits while the mailbox is full."""
        box = self._mailbox
        box._check_open()
        await box._send.send(message)
        box._told += 1

    def tell_nowait(self, message: M) -> None:
        """Send without waiting at all; raises MailboxFull at the bound."""
        box = self._mailbox
        box._check_open()
        try:
            box._send.send_nowait(message)
        except trio.WouldBlock:
            raise MailboxFull(f"{box.name} mailbox is full ({box.capacity} messages)") from None
        box._told += 1

    # The timeout is part of what an ask is (a request with a deadline), hence the parameter.
    async def ask(self, request: Asks[T], *, timeout: float | None = None) -> T:  # noqa: ASYNC109
        """Send ``request`` (which must also be an ``M``) and wait for its reply.

        Fails with ActorDied at once if no incarnation serves the mailbox, or as soon as the
        serving one ends; with AskTimeout after ``timeout`` seconds (the mailbox default when
        None; ``math.inf`` waits as long as the actor lives).
        """
        box = self._mailbox
        box._check_open()
        if not box.serving:
            box._asks_failed += 1
            raise ActorDied(f"{box.name} is not running")
        reply = request.reply
        box._pending.add(reply)
        box._asked += 1
        limit = box.ask_timeout if timeout is None else timeout
        try:
            with trio.fail_after(limit):
                await send(box._send, cast(M, request))  # an Asks is also an M
                return await reply.wait()  # the checkpoint
        except trio.TooSlowError:
            box._asks_failed += 1
            error = AskTimeout(f"{box.name} did not reply within {limit:g} s")
            reply.fail(error)  # so that the actor skips the request if it is still queued
            raise error from None
        finally:
            box._pending.discard(reply)

    def statistics(self) -> MailboxStatistics:
        return self._mailbox.statistics()
