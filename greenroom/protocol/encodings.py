"""Each event and each summary encoded once, whatever the number of connections.

An event goes to every connection subscribed to its session, and a summary is in every
listing (the welcome, ``listSessions``): the codec encodes each once per format and keeps the
encoding beside the object, weakly, so that it goes with the object. Used from the trio
thread only (an entry may be dropped from whichever thread frees its object).
"""

from __future__ import annotations

import operator
import weakref
from collections.abc import Callable, Sequence
from typing import Final

from greenroom.protocol.events import Event, Summary


class _Memo(weakref.ref[Summary]):
    """A weak reference to a summary that also carries its encoding and its key in the memo.
    (Set after it is made: a Python ``__init__`` here was a third of what a miss cost.)"""

    __slots__ = ("encoded", "key")
    encoded: str | bytes
    key: int


class SummaryMemo:
    """Each summary's encoding in one format, kept for as long as the summary object lives.

    A :class:`Summary` is frozen, and a session that changes gets a new one, so an object's
    encoding never goes stale: a dormant session keeps the same summary object until it wakes,
    and after the first listing (the welcome) every later one copies its text. Entries are
    keyed by the object's identity and hold it only weakly; a summary that is freed takes its
    entry with it (the reference's callback). So the memo needs no bound of its own: it is at
    most the live summaries that were listed, about one per session.

    One per format for the whole process rather than one per codec, since every connection
    lists the same summary objects and a codec lives as long as its connection. Written from
    the trio thread only; an entry may be dropped from whichever thread frees its summary.
    """

    def __init__(self) -> None:
        self._memos: dict[int, _Memo] = {}
        self._forget_memo = self._forget  # one bound method, shared by every entry

    def of(self, summary: Summary, encode: Callable[[Summary], str | bytes]) -> str | bytes:
        """``summary`` encoded (by ``encode`` if it is not in the memo)."""
        key = id(summary)
        memo = self._memos.get(key)
        if memo is not None and memo() is summary:
            return memo.encoded
        encoded = encode(summary)
        memo = self._memos[key] = _Memo(summary, self._forget_memo)
        memo.key, memo.encoded = key, encoded
        return encoded

    def _forget(self, memo: _Memo) -> None:
        if self._memos.get(memo.key) is memo:
            self._memos.pop(memo.key, None)

    def __len__(self) -> int:
        return len(self._memos)


JSON_SUMMARIES: Final = SummaryMemo()
MSGPACK_SUMMARIES: Final = SummaryMemo()


class _EventMemo(weakref.ref[Event]):
    """A weak reference to an event that carries its encoding and its key (see SummaryMemo)."""

    __slots__ = ("encoded", "key")
    encoded: str | bytes
    key: int


class Fragments:
    """The encoded text (or bytes) of recent events, for one format (see EventEncodings).

    Entries hold their event weakly: an event can carry far more than its encoding shows (a
    summary's whole queue of texts behind their short previews), and a memo that kept the
    events alive kept every such text until ordinary traffic pushed it out. An entry goes with
    its event, and at the latest after two generations of at most ``limit`` entries each: when
    the newer one is full it becomes the older and the older is dropped. (Evicting one entry at
    a time from the front of one dict would make every eviction scan the dict's deleted
    slots.) An encoding over ``BIG_BYTES`` (a long message, a tool's output) is kept apart, in
    at most ``big_budget`` bytes, oldest out first, so that the memo never doubles what a
    flood of long messages holds.

    Besides, the last frame made of live events alone (:meth:`frame_of`): the one thing here
    that holds events strongly, one frame's worth, until the next such frame replaces it.
    """

    BIG_BYTES: Final = 64 << 10

    def __init__(self, limit: int = 16_384, big_budget: int = 1 << 20) -> None:
        self._limit = limit
        self._new: dict[int, _EventMemo] = {}
        self._old: dict[int, _EventMemo] = {}
        self._big: dict[int, _EventMemo] = {}
        self._big_budget = big_budget
        self._big_bytes = 0
        self._forget_memo = self._forget  # one bound method, shared by every entry
        # The last frame of events alone that a connection made: (its events, its budget,
        # the frame, how many it took). Connections on the same frame clock and with the
        # same subscriptions take the same events at a tick: the first joins, the rest reuse.
        self._frame: tuple[Sequence[Event], int, str | bytes, int] | None = None

    def of(self, event: Event, encode: Callable[[Event], str | bytes]) -> str | bytes:
        key = id(event)
        memo = self._new.get(key) or self._old.get(key) or self._big.get(key)
        if memo is not None and memo() is event:
            return memo.encoded
        encoded = encode(event)
        memo = _EventMemo(event, self._forget_memo)
        memo.key, memo.encoded = key, encoded
        if len(encoded) > self.BIG_BYTES:
            self._keep_big(memo)
        else:
            if len(self._new) >= self._limit:
                self._old, self._new = self._new, {}
            self._new[key] = memo
        return encoded

    def of_all(
        self, events: Sequence[Event], encode: Callable[[Event], str | bytes]
    ) -> list[str | bytes]:
        """Each of ``events`` encoded, in order: :meth:`of` for many, with the common case (a
        recent event, in the newest generation) looked up in this loop."""
        new = self._new
        out: list[str | bytes] = []
        append = out.append
        for event in events:
            memo = new.get(id(event))
            if memo is not None and memo() is event:
                append(memo.encoded)
            else:
                append(self.of(event, encode))
        return out

    def frame_of(self, events: Sequence[Event], budget: int) -> tuple[str | bytes, int] | None:
        """The frame last made of exactly ``events`` (the same objects, in order) within
        ``budget``, and how many of them it took; None when the last frame was another's."""
        last = self._frame
        if last is None or last[1] != budget:
            return None
        made_of = last[0]
        if len(made_of) != len(events) or not all(map(operator.is_, made_of, events)):
            return None
        return last[2], last[3]

    def keep_frame(
        self, events: Sequence[Event], budget: int, frame: str | bytes, taken: int
    ) -> None:
        """Remember the frame just made of ``events`` (which must not change afterwards)."""
        self._frame = (events, budget, frame, taken)

    def _keep_big(self, memo: _EventMemo) -> None:
        big = self._big
        size = len(memo.encoded)
        self._drop_big(memo.key)  # a recycled id: the old entry's event is gone
        while big and self._big_bytes + size > self._big_budget:
            self._drop_big(next(iter(big)))
        if size <= self._big_budget:
            big[memo.key] = memo
            self._big_bytes += size

    def _drop_big(self, key: int) -> None:
        memo = self._big.pop(key, None)
        if memo is not None:
            self._big_bytes -= len(memo.encoded)

    def _forget(self, memo: _EventMemo) -> None:
        for entries in (self._new, self._old):  # maybe from another thread: no KeyError
            if entries.get(memo.key) is memo:
                entries.pop(memo.key, None)
        if self._big.get(memo.key) is memo:
            self._drop_big(memo.key)

    @property
    def big_bytes(self) -> int:
        """Bytes of the big encodings kept now."""
        return self._big_bytes

    def __len__(self) -> int:
        return len(self._new) + len(self._old) + len(self._big)


class EventEncodings:
    """The encoded form of recent events, shared by the connections of one server.

    One event is offered to every connection; with ten clients subscribed to a thousand
    streaming sessions, encoding it once instead of ten times is most of the writers' work.
    Entries are keyed by the event object itself (its id, checked against the object, so a
    recycled id is never mistaken), and the oldest are dropped past ``limit`` per format: a
    connection encodes an event within a batch or two of receiving it; big encodings are kept
    in at most ``big_budget`` bytes per format besides. Owned by the server,
    so it goes away with it; used from the trio thread only.
    """

    def __init__(self, limit: int = 16_384, big_budget: int = 1 << 20) -> None:
        self.json = Fragments(limit, big_budget)
        self.msgpack = Fragments(limit, big_budget)
