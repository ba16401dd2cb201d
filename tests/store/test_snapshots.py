"""Snapshot codec and the snapshot store, on real files."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greenroom.protocol.errors import InvalidArgument
from greenroom.store.snapshots import (
    CorruptSnapshot,
    SnapshotEncodeError,
    SnapshotStore,
    decode_partials,
    decode_snapshot,
    encode_partial,
    encode_snapshot,
    join_partials,
)

PAYLOAD: dict[str, Any] = {
    "state": "running",
    "seq": 42,
    "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None}],
    "ratio": 0.5,
    "flags": [True, False, None],
    "blob": b"\x00\x01",
    "by_number": {1: "one"},
}


def test_round_trip() -> None:
    data = encode_snapshot("s-abc123", PAYLOAD)
    assert decode_snapshot(data) == ("s-abc123", PAYLOAD)


def test_envelope_is_plain_msgpack() -> None:
    envelope = msgpack.unpackb(encode_snapshot("s-1", {"a": 1}), raw=False)
    assert envelope == {"format": 1, "session": "s-1", "payload": {"a": 1}}


def test_encode_refuses_bad_session_id() -> None:
    with pytest.raises(InvalidArgument):
        encode_snapshot("../etc", {})


def _pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"\xc1", "not msgpack"),
        (b"garbage that is not msgpack at all", "trailing bytes"),
        (encode_snapshot("s-1", PAYLOAD)[:-3], "truncated"),
        (encode_snapshot("s-1", PAYLOAD) + b"\x00", "trailing"),
        (_pack([1, 2]), "envelope must be a map"),
        (_pack({"format": 2, "session": "s-1", "payload": {}}), "unknown format version 2"),
        (_pack({"format": "1", "session": "s-1", "payload": {}}), "must be an integer"),
        (_pack({"format": True, "session": "s-1", "payload": {}}), "must be an integer"),
        (_pack({"session": "s-1", "payload": {}}), "must be an integer, not nil"),
        (_pack({"format": 1, "session": "x-1", "payload": {}}), "invalid session id"),
        (_pack({"format": 1, "session": 7, "payload": {}}), "invalid session id"),
        (_pack({"format": 1, "session": "s-1", "payload": [1]}), "payload must be a map"),
        (_pack({"format": 1, "session": "s-1", "payload": {"t": msgpack.ExtType(5, b"")}}), "ext"),
        (_pack({"format": 1, "session": "s-1", "payload": {(1, 2): 3}}), "not msgpack"),
    ],
)
def test_decode_says_what_is_wrong(data: bytes, reason: str) -> None:
    with pytest.raises(CorruptSnapshot, match=reason):
        decode_snapshot(data)


def test_decode_refuses_huge_claims() -> None:
    """A few bytes claiming a 4-billion-element array or string fail fast, without allocating."""
    for header in (b"\xdd\xff\xff\xff\xff", b"\xdb\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff"):
        with pytest.raises(CorruptSnapshot):
            decode_snapshot(header + b"\x00" * 10)


def test_decode_refuses_deep_nesting() -> None:
    with pytest.raises(CorruptSnapshot):
        decode_snapshot(b"\x91" * 100_000 + b"\xc0")


@given(st.binary(max_size=200))
@settings(max_examples=500)
def test_any_bytes_decode_or_raise_corrupt(data: bytes) -> None:
    try:
        session, payload = decode_snapshot(data)
    except CorruptSnapshot:
        return
    assert isinstance(session, str)
    assert isinstance(payload, dict)


@given(st.binary(max_size=60))
@settings(max_examples=300)
def test_bytes_after_a_valid_prefix_decode_or_raise_corrupt(tail: bytes) -> None:
    """Garbage that gets past the first byte exercises the deeper parts of the decoder."""
    data = b"\x83\xa6format\x01\xa7session\xa3s-1\xa7payload" + tail
    with contextlib.suppress(CorruptSnapshot):
        decode_snapshot(data)


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=30,
)


@given(st.dictionaries(st.text(max_size=10), _values, max_size=8), st.integers(0, 2**64))
def test_encode_decode_round_trip(payload: dict[str, Any], number: int) -> None:
    session = f"s-{number:x}"
    assert decode_snapshot(encode_snapshot(session, payload)) == (session, payload)


@given(
    st.dictionaries(
        st.integers(0, 2**64).map(lambda n: f"s-{n:x}"),
        st.dictionaries(st.text(max_size=10), _values, max_size=4),
        max_size=6,
    )
)
def test_the_partials_file_joined_from_its_payloads_is_the_envelope_packed_whole(
    partials: dict[str, dict[str, Any]],
) -> None:
    """A payload kept encoded from an earlier write is copied in as it is: the file is byte
    for byte what packing the whole envelope gives, and reads back."""
    joined = join_partials({s: encode_partial(s, p) for s, p in partials.items()})
    whole = msgpack.packb({"format": 1, "partials": partials}, use_bin_type=True)
    assert joined == whole
    assert decode_partials(joined) == partials


def test_a_partial_payload_with_a_bad_session_id_is_refused() -> None:
    with pytest.raises(InvalidArgument):
        encode_partial("../escape", {})


def test_nan_round_trips() -> None:
    _, payload = decode_snapshot(encode_snapshot("s-1", {"x": math.nan}))
    assert math.isnan(payload["x"])


# -- the store ------------------------------------------------------------------------------


def test_store_write_load_delete(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    assert store.load("s-1") is None
    store.write({"s-1": {"v": 1}, "s-2": {"v": 2}})
    assert (tmp_path / "sessions" / "s-1.msgpack").is_file()
    assert store.load("s-1") == {"v": 1}
    store.write({"s-1": {"v": 3}})
    assert store.load("s-1") == {"v": 3}
    store.delete("s-1")
    store.delete("s-1")
    assert store.load("s-1") is None
    assert sorted(os.listdir(tmp_path / "sessions")) == ["s-2.msgpack"]


def test_store_refuses_bad_ids(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    for bad in ("../x", "s-XYZ", "s-", "abc", "s-1/../../x"):
        with pytest.raises(InvalidArgument):
            store.write({bad: {}})
        with pytest.raises(InvalidArgument):
            store.load(bad)


def test_store_write_reports_unencodable_but_writes_the_rest(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    with pytest.raises(SnapshotEncodeError) as caught:
        store.write({"s-1": {"ok": 1}, "s-2": {"bad": object()}, "s-3": {"big": 2**70}})
    assert set(caught.value.errors) == {"s-2", "s-3"}
    assert store.load("s-1") == {"ok": 1}
    assert store.load("s-2") is None


def test_load_quarantines_corrupt_file(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    store.write({"s-1": {"v": 1}})
    (tmp_path / "sessions" / "s-1.msgpack").write_bytes(b"\xc1junk")
    with pytest.raises(CorruptSnapshot, match="moved to"):
        store.load("s-1")
    assert store.load("s-1") is None
    moved = os.listdir(tmp_path / "sessions" / "corrupt")
    assert len(moved) == 1
    assert moved[0].startswith("s-1.msgpack.")


def test_scan_returns_good_and_quarantines_bad(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    store.write({f"s-{i:x}": {"i": i} for i in range(20)})
    folder = tmp_path / "sessions"
    good_bytes = (folder / "s-0.msgpack").read_bytes()
    (folder / "s-aa.msgpack").write_bytes(good_bytes[:-4])  # truncated
    (folder / "s-bb.msgpack").write_bytes(b"\x00garbage\xff" * 10)
    (folder / "s-cc.msgpack").write_bytes(_pack({"format": 9, "session": "s-cc", "payload": {}}))
    (folder / "s-dd.msgpack").write_bytes(b"")
    (folder / "s-ee.msgpack").write_bytes(encode_snapshot("s-ff", {}))  # wrong session inside
    (folder / "README.txt").write_bytes(b"not a snapshot name: left alone")
    (folder / "S-1.msgpack").write_bytes(b"also left alone")
    (folder / "s-1.msgpack.tmp-0123456789abcdef").write_bytes(b"stale temp")

    result = store.scan()

    assert sorted(result.snapshots) == sorted((f"s-{i:x}", {"i": i}) for i in range(20))
    reasons = {q.name: q.reason for q in result.quarantined}
    assert set(reasons) == {
        "s-aa.msgpack",
        "s-bb.msgpack",
        "s-cc.msgpack",
        "s-dd.msgpack",
        "s-ee.msgpack",
    }
    assert "truncated" in reasons["s-aa.msgpack"]
    assert "unknown format version 9" in reasons["s-cc.msgpack"]
    assert "empty" in reasons["s-dd.msgpack"]
    assert "s-ff" in reasons["s-ee.msgpack"]
    assert result.removed_temps == 1
    for q in result.quarantined:
        assert q.moved_to is not None
        assert q.moved_to.parent == folder / "corrupt"
        assert q.moved_to.name.startswith(q.name + ".")
        assert q.moved_to.is_file()
    assert (folder / "README.txt").exists()
    assert (folder / "S-1.msgpack").exists()
    assert (folder / "s-bb.msgpack").exists() is False

    again = store.scan()
    assert again.quarantined == []
    assert len(again.snapshots) == 20


def test_scan_keeps_every_quarantined_copy(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    folder = tmp_path / "sessions"
    folder.mkdir()
    for _ in range(3):
        (folder / "s-1.msgpack").write_bytes(b"junk")
        assert len(store.scan().quarantined) == 1
    assert len(os.listdir(folder / "corrupt")) == 3


def test_scan_of_missing_folder(tmp_path: Path) -> None:
    result = SnapshotStore(tmp_path / "nothing").scan()
    assert result.snapshots == []
    assert result.quarantined == []


def test_scan_quarantines_unreadable_entry(tmp_path: Path) -> None:
    folder = tmp_path / "sessions"
    (folder / "s-5.msgpack").mkdir(parents=True)  # a folder where a file should be
    result = SnapshotStore(tmp_path).scan()
    assert [q.name for q in result.quarantined] == ["s-5.msgpack"]
    assert "unreadable" in result.quarantined[0].reason


def test_oversized_file_is_corrupt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from greenroom.store import snapshots

    monkeypatch.setattr(snapshots, "MAX_SNAPSHOT_BYTES", 100_000)
    store = SnapshotStore(tmp_path)
    store.write({"s-1": {"big": "x" * 200_000}})
    result = store.scan()
    assert [q.name for q in result.quarantined] == ["s-1.msgpack"]
    assert "too large" in result.quarantined[0].reason


_CRASH_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from greenroom.store.snapshots import SnapshotStore

    store = SnapshotStore(Path(sys.argv[1]))
    round = 0
    while True:
        store.write({f"s-{i:x}": {"round": round, "pad": "x" * (i * 100)} for i in range(30)})
        if round == 0:
            print("ready", flush=True)
        round += 1
    """
)


def test_sigkill_mid_write_leaves_every_file_whole(tmp_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _CRASH_WRITER, str(tmp_path)],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    ) as process:
        try:
            assert process.stdout is not None
            assert process.stdout.readline() == b"ready\n"
            time.sleep(0.3)  # let it write many rounds; the kill lands mid-write
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=5)
    assert process.returncode == -signal.SIGKILL
    result = SnapshotStore(tmp_path).scan()
    assert result.quarantined == []
    assert len(result.snapshots) == 30
    assert all(payload["round"] >= 0 for _, payload in result.snapshots)
    leftover = [n for n in os.listdir(tmp_path / "sessions") if ".tmp-" in n]
    assert leftover == []
