"""The journal's files: records round-trip, a torn or corrupt tail is moved aside, segments."""

from __future__ import annotations

from pathlib import Path

import msgpack  # type: ignore[import-untyped]
from hypothesis import given
from hypothesis import strategies as st

from greenroom.protocol.chat import Message
from greenroom.protocol.events import (
    Event,
    LoadingChanged,
    MessageAdded,
    PartialToolCall,
    SessionUpdated,
    StreamingUpdate,
)
from greenroom.store.journal import (
    JournalFiles,
    encode_record,
    iter_records,
    list_segments,
    read_journal,
    segment_path,
)
from tests import strategies

texts = st.text(max_size=40)
summaries = strategies.summaries(
    texts,
    session=st.just("s-1"),
    project=st.just("p"),
    last_activity=st.floats(allow_nan=False),  # compared after the round trip
    queued=st.lists(st.text(max_size=500), max_size=3).map(tuple),  # kept whole
)
datas = st.one_of(
    st.builds(StreamingUpdate, offset=st.integers(0, 10**9), delta=texts),
    st.builds(
        StreamingUpdate,
        offset=st.integers(0, 10**6),
        delta=texts,
        tool_calls=st.lists(
            st.builds(
                PartialToolCall,
                index=st.integers(0, 9),
                id=st.none() | texts,
                name=st.none() | texts,
                arguments=texts,
            ),
            max_size=2,
        ).map(tuple),
    ),
    st.builds(
        MessageAdded,
        index=st.integers(0, 10**6),
        message=st.builds(Message, role=st.just("user"), content=texts),
    ),
    st.builds(SessionUpdated, summary=summaries),
    st.builds(LoadingChanged, loading=st.booleans()),
)
events = st.builds(
    Event, session=st.just("s-1"), project=st.just("p"), seq=st.integers(1, 10**9), data=datas
)


@given(batch=st.lists(events, max_size=5))
def test_records_read_back_as_the_events_written(batch: list[Event]) -> None:
    data = b"".join(encode_record(e) for e in batch)
    read = [event for _, event in iter_records(data)]
    assert read == batch
    # The journal actor keeps one packer for every record: the same bytes.
    pack = msgpack.Packer().pack
    assert b"".join(encode_record(e, pack) for e in batch) == data


def write_segment(folder: Path, number: int, batch: list[Event]) -> bytes:
    folder.mkdir(parents=True, exist_ok=True)
    data = b"".join(encode_record(e) for e in batch)
    segment_path(folder, number).write_bytes(data)
    return data


def delta(seq: int) -> Event:
    return Event(
        session="s-1", project="p", seq=seq, data=StreamingUpdate(offset=seq, delta="x")
    )


def test_a_torn_tail_keeps_its_valid_prefix_and_moves_the_rest_aside(tmp_path: Path) -> None:
    folder = tmp_path / "journal"
    data = write_segment(folder, 1, [delta(1), delta(2), delta(3)])
    torn = data[:-5]  # a write cut by the kill
    segment_path(folder, 1).write_bytes(torn)
    later = write_segment(folder, 2, [delta(4)])
    read = read_journal(folder)
    assert [e.seq for e in read.events] == [1, 2]
    kept = len(encode_record(delta(1))) * 2
    assert segment_path(folder, 1).read_bytes() == data[:kept]
    # What follows a hole is never applied: the rest of the segment and every later one.
    assert [m.path.read_bytes() for m in read.moved] == [torn[kept:], later]
    assert list_segments(folder) == [1]
    assert read_journal(folder).events == read.events  # and it is stable


def test_a_corrupt_record_in_the_middle_ends_what_is_read(tmp_path: Path) -> None:
    folder = tmp_path / "journal"
    data = bytearray(write_segment(folder, 1, [delta(1), delta(2), delta(3)]))
    first = len(encode_record(delta(1)))
    data[first + 10] ^= 0xFF  # a flipped byte in the second record's payload
    segment_path(folder, 1).write_bytes(bytes(data))
    read = read_journal(folder)
    assert [e.seq for e in read.events] == [1]
    assert read.moved and "corrupt" in read.moved[0].reason


def test_what_a_second_incident_sets_aside_keeps_what_the_first_did(tmp_path: Path) -> None:
    """Segment numbers are used again after a hole: the same segment torn twice, and the same
    later segment moved aside twice, leave four files aside, none overwritten."""
    folder = tmp_path / "journal"
    aside: list[bytes] = []
    for first in (1, 100):
        write_segment(folder, 1, [delta(first), delta(first + 1)])
        segment_path(folder, 1).write_bytes(segment_path(folder, 1).read_bytes()[:-5])
        write_segment(folder, 2, [delta(first + 2)])
        read = read_journal(folder)
        assert [e.seq for e in read.events] == [first] and len(read.moved) == 2
        aside += [moved.path.read_bytes() for moved in read.moved]
        segment_path(folder, 1).unlink()  # the next incident starts from segment 1 again
    kept = [path.read_bytes() for path in (folder / "corrupt").iterdir()]
    assert sorted(kept) == sorted(aside) and len(set(aside)) == 4


def test_segments_roll_over_and_only_checkpointed_ones_beyond_the_budget_go(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "journal"
    batch = encode_record(delta(1)) * 4
    files = JournalFiles.open(folder, [], segment_bytes=len(batch))
    for applied in range(1, 11):
        # Each batch fills a segment; the next append closes it, with the count of events
        # applied by then (all of the closed segment's).
        files.append(batch, applied)
    assert [s.last_applied for s in files.segments] == list(range(2, 11))
    what = files.take_sync()
    assert what is not None and len(what[1]) == 9  # the closed segments' files, to be synced
    files.sync(what)
    assert files.take_sync() is None  # nothing new
    assert files.removable(checkpointed=0, keep_bytes=0) == []  # nothing checkpointed yet
    size = files.segments[0].size
    gone = files.removable(checkpointed=5, keep_bytes=2 * size)
    assert sorted(s.last_applied or 0 for s in gone) == [2, 3]  # 4 and 5 stay for replay
    files.forget(gone)
    files.remove(gone)
    assert list_segments(folder)[0] == 3
    files.close()
    assert [e.seq for e in read_journal(folder).events] == [1] * 4 * 8
