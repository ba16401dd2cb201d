"""A sans-IO decoder for server-sent events (the ``text/event-stream`` format).

Bytes go in, in pieces cut anywhere (inside a line, inside a CRLF, inside a UTF-8 sequence);
complete events come out. It knows nothing of sockets or HTTP, so it is tested by feeding it
a stream split at random points. It follows the WHATWG parsing rules: lines end with CRLF, LF
or CR; ``:`` starts a comment; ``field: value`` loses one space after the colon; ``data`` lines
of one event are joined with newlines; a blank line dispatches the event, and an event with no
data is not dispatched. An event not finished by a blank line when the stream ends is dropped
(the stream was cut), as the standard says.
"""

from __future__ import annotations

import codecs

import attrs

MAX_LINE_CHARS = 16 * 1024 * 1024
"""A line longer than this is refused: a stream that never ends a line would fill memory. The
same bound holds for one event's data lines together (a stream that never ends an event)."""


class SSEError(ValueError):
    """The stream is not server-sent events a client can read (a line, or an event, over the
    limit)."""


@attrs.frozen(kw_only=True)
class ServerSentEvent:
    """One dispatched event: ``event`` is ``message`` unless the stream named it."""

    data: str
    event: str = "message"
    id: str | None = None


class SSEDecoder:
    """Turns the bytes of an event stream into :class:`ServerSentEvent` values."""

    def __init__(self, *, max_line_chars: int = MAX_LINE_CHARS) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._max_line = max_line_chars
        self._buffer = ""
        self._started = False
        self._data: list[str] = []
        self._data_chars = 0
        self._event = ""
        self._id: str | None = None

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        """The events that ``data`` completes (often none; sometimes several)."""
        text = self._decoder.decode(data)
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")  # a byte order mark may open the stream
        self._buffer += text
        events: list[ServerSentEvent] = []
        start = 0
        buffer = self._buffer
        while True:
            cr, lf = buffer.find("\r", start), buffer.find("\n", start)
            if cr < 0 and lf < 0:
                break
            if cr >= 0 and (lf < 0 or cr < lf):
                if cr == len(buffer) - 1:
                    break  # a CR last: the LF of a CRLF may be in the next piece
                end, after = cr, cr + 2 if buffer[cr + 1] == "\n" else cr + 1
            else:
                end, after = lf, lf + 1
            event = self._line(buffer[start:end])
            if event is not None:
                events.append(event)
            start = after
        self._buffer = buffer[start:]
        if len(self._buffer) > self._max_line:
            raise SSEError(f"an event-stream line is over {self._max_line} characters")
        return events

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment: servers send them to keep the connection alive
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data_chars += len(value) + 1
            if self._data_chars > self._max_line:
                raise SSEError(f"an event's data is over {self._max_line} characters")
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id" and "\0" not in value:
            self._id = value
        # `retry` and unknown fields are ignored: this client does not reconnect.
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        data, event = self._data, self._event
        self._data, self._data_chars, self._event = [], 0, ""
        if not data:
            return None
        return ServerSentEvent(data="\n".join(data), event=event or "message", id=self._id)
