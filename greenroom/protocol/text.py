"""Streamed text, accumulated once: the partial message, and runs of merged deltas.

A reply streams as many small deltas. Three places keep them: the session's state (the
partial message), the bus's retention (consecutive deltas retained as one update) and a
connection's send queue (deltas merged while the connection is behind). All three append
pieces and read the whole rarely, so they share :class:`Text`, and the two that merge deltas
share :class:`DeltaRun`.
"""

from __future__ import annotations

from greenroom.protocol.events import Event, StreamingUpdate, merged_update

JOIN_EVERY = 64
"""Pieces are joined every so many appends, so that a long reply keeps few objects alive."""


class Text:
    """Text that grows by appending pieces: an append is O(1); reading joins them once."""

    __slots__ = ("_length", "_parts")

    def __init__(self, first: str = "") -> None:
        self._parts = [first] if first else []
        self._length = len(first)

    def __len__(self) -> int:
        return self._length

    @property
    def pieces(self) -> int:
        """How many pieces are held (fewer than ``JOIN_EVERY``)."""
        return len(self._parts)

    def append(self, piece: str) -> None:
        if not piece:
            return
        parts = self._parts
        parts.append(piece)
        self._length += len(piece)
        if len(parts) >= JOIN_EVERY:
            parts[:] = ["".join(parts)]

    def __str__(self) -> str:
        parts = self._parts
        if len(parts) > 1:
            parts[:] = ["".join(parts)]
        return parts[0] if parts else ""

    def head(self, chars: int) -> str:
        """The first ``chars`` characters, without joining when the first piece has them."""
        parts = self._parts
        if parts and len(parts[0]) >= chars:
            return parts[0][:chars]
        return str(self)[:chars]

    def cut(self, length: int) -> None:
        """Keep the first ``length`` characters."""
        if length < self._length:
            kept = str(self)[:length]
            self._parts[:] = [kept] if kept else []
            self._length = length

    def put(self, offset: int, piece: str) -> None:
        """Write ``piece`` at ``offset``, dropping what came after it (one call per delta)."""
        if offset < self._length:
            self.cut(offset)
        self.append(piece)


class DeltaRun:
    """Consecutive ``streamingUpdate``s of one session that stand as one: from the first's
    offset, all their deltas, the newest's seq and tool calls (see ``merged_update``)."""

    __slots__ = ("end", "first", "last", "text")

    def __init__(self, first: Event) -> None:
        data = first.data
        assert isinstance(data, StreamingUpdate)
        self.first = self.last = first
        self.text = Text(data.delta)
        self.end = data.offset + len(data.delta)
        """Where the run's text ends in the partial message: a delta at this offset joins."""

    def add(self, event: Event, delta: str) -> None:
        self.last = event
        self.text.append(delta)
        self.end += len(delta)

    def event(self) -> Event:
        """The run as one ``streamingUpdate`` (the first event itself while it is alone)."""
        if self.first is self.last:
            return self.first
        return merged_update(self.first, self.last, str(self.text))
