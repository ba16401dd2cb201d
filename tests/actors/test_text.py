"""The one accumulator of streamed text, against plain strings."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from greenroom.protocol.events import Event, PartialToolCall, StreamingUpdate
from greenroom.protocol.text import JOIN_EVERY, DeltaRun, Text

pieces = st.text(max_size=8)
steps = st.lists(
    st.tuples(st.sampled_from(["append", "put", "cut", "read", "head"]), pieces, st.integers(0, 40))
)


@given(first=pieces, steps=steps)
def test_a_text_is_what_its_pieces_make(first: str, steps: list[tuple[str, str, int]]) -> None:
    text, model = Text(first), first
    for step, piece, n in steps:
        if step == "append":
            text.append(piece)
            model += piece
        elif step == "put":
            text.put(n, piece)
            model = model[:n] + piece
        elif step == "cut":
            text.cut(n)
            model = model[:n]
        elif step == "head":
            assert text.head(n) == model[:n]
        else:
            assert str(text) == model
        assert len(text) == len(model)
        assert text.pieces < JOIN_EVERY
    assert str(text) == model


def test_a_long_text_keeps_few_pieces_and_reads_once_joined() -> None:
    text = Text()
    for n in range(1000):
        text.append(f"w{n} ")
    assert text.pieces < JOIN_EVERY
    assert str(text) == "".join(f"w{n} " for n in range(1000))
    assert text.pieces == 1


def delta(
    seq: int, offset: int, piece: str, calls: tuple[PartialToolCall, ...] | None = None
) -> Event:
    return Event(
        session="s", project="p", seq=seq,
        data=StreamingUpdate(offset=offset, delta=piece, tool_calls=calls),
    )  # fmt: skip


@given(start=st.integers(0, 100), deltas=st.lists(pieces, min_size=1, max_size=30))
def test_a_run_is_one_update_from_the_first_offset_to_the_last_seq(
    start: int, deltas: list[str]
) -> None:
    offset, events = start, []
    for seq, piece in enumerate(deltas, start=1):
        events.append(delta(seq, offset, piece))
        offset += len(piece)
    run = DeltaRun(events[0])
    for event in events[1:]:
        assert run.end == event.data.offset  # type: ignore[union-attr]
        run.add(event, event.data.delta)  # type: ignore[union-attr]
    assert run.end == offset
    merged = run.event()
    assert merged.seq == len(deltas)
    assert merged.data == StreamingUpdate(offset=start, delta="".join(deltas))
    if len(deltas) == 1:
        assert merged is events[0]


def test_a_run_carries_the_newest_tool_calls() -> None:
    calls = (PartialToolCall(index=0, id="c", name="read_file", arguments='{"pa'),)
    run = DeltaRun(delta(1, 0, "a"))
    run.add(delta(2, 1, "", calls), "")
    assert run.event().data == StreamingUpdate(offset=0, delta="a", tool_calls=calls)
