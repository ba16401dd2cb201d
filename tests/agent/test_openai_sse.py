"""The sans-IO event-stream decoder: fed whole, or split at any points, it gives the same events."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from greenroom.agent.sse import ServerSentEvent, SSEDecoder, SSEError

STREAM = (
    b": OPENROUTER PROCESSING\r\n\r\n"
    b'data: {"a": 1}\r\n\r\n'
    b"event: ping\ndata: first\ndata:second\n\n"
    b"id: 7\rdata:  two spaces\r\r"
    b"data\n\n"
    b"retry: 100\nunknown: x\n\n"
    b"data: caf\xc3\xa9 \xe2\x9c\x93\n\n"
    b"data: [DONE]\n\n"
    b"data: cut before the blank line\n"
)
EXPECTED = [
    ServerSentEvent(data='{"a": 1}'),
    ServerSentEvent(data="first\nsecond", event="ping"),
    ServerSentEvent(data=" two spaces", id="7"),
    ServerSentEvent(data="", id="7"),
    ServerSentEvent(data="café ✓", id="7"),
    ServerSentEvent(data="[DONE]", id="7"),
]


def feed_split(stream: bytes, cuts: list[int]) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    bounds = [0, *sorted(cuts), len(stream)]
    for start, end in itertools.pairwise(bounds):
        events += decoder.feed(stream[start:end])
    return events


def test_whole_stream() -> None:
    assert SSEDecoder().feed(STREAM) == EXPECTED


def test_one_byte_at_a_time() -> None:
    assert feed_split(STREAM, list(range(1, len(STREAM)))) == EXPECTED


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=30))
def test_split_anywhere(cuts: list[int]) -> None:
    assert feed_split(STREAM, cuts) == EXPECTED


_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=20
)


@given(
    st.lists(st.lists(_TEXT, min_size=1, max_size=3), max_size=6),
    st.sampled_from(["\n", "\r\n", "\r"]),
    st.data(),
)
def test_random_events_survive_random_splits(
    events: list[list[str]], newline: str, data: st.DataObject
) -> None:
    stream = "\ufeff" + "".join(
        ": comment" + newline + "".join(f"data: {line}{newline}" for line in lines) + newline
        for lines in events
    )
    raw = stream.encode()
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(raw)), max_size=20))
    got = feed_split(raw, cuts)
    if newline == "\r" and events:
        # A CR last may be the start of a CRLF: the final blank line waits for the next byte.
        assert got == [ServerSentEvent(data="\n".join(lines)) for lines in events[:-1]]
    else:
        assert got == [ServerSentEvent(data="\n".join(lines)) for lines in events]


def test_a_line_over_the_limit_is_refused() -> None:
    decoder = SSEDecoder(max_line_chars=10)
    assert decoder.feed(b"data: 1234\n") == []
    with pytest.raises(SSEError):
        decoder.feed(b"data: 12345678901")


def test_an_event_whose_data_lines_together_are_over_the_limit_is_refused() -> None:
    """Short lines that never end the event (no blank line) would fill memory as well."""
    decoder = SSEDecoder(max_line_chars=10)
    assert decoder.feed(b"data: 1234\n\n") == [ServerSentEvent(data="1234")]
    assert decoder.feed(b"data: 1234\n") == []  # a new event: its count starts again
    with pytest.raises(SSEError, match="event's data"):
        decoder.feed(b"data: 1234\ndata: 1234\n")
