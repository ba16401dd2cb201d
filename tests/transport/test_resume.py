"""The client's resume bookkeeping, without a socket: no gap, no duplicate, reset, delete."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from greenroom.protocol.resume import ResumeTracker

JSON = dict[str, Any]


def ev(seq: int, session: str = "s", name: str = "messageAdded") -> JSON:
    return {"event": name, "session": session, "project": "p", "seq": seq, "data": {}}


def seqs(events: list[JSON]) -> list[int | None]:
    return [e["seq"] for e in events]


def subscribed_at(seq: int, session: str = "s") -> ResumeTracker:
    tracker = ResumeTracker()
    tracker.subscribing(session, None)
    assert tracker.subscribed_reply(session, None, {"seq": seq}) == []
    return tracker


def test_events_of_sessions_not_subscribed_and_unnumbered_ones_pass_through() -> None:
    tracker = subscribed_at(0)
    other, note = ev(7, session="t"), {"event": "notification", "session": "s", "seq": None}
    assert tracker.event(other) == [other]
    assert tracker.event(note) == [note]
    assert tracker.last_seq("s") == 0 and tracker.last_seq("t") is None


def test_a_duplicate_is_dropped() -> None:
    tracker = subscribed_at(3)
    assert seqs(tracker.event(ev(3))) == []
    assert seqs(tracker.event(ev(4))) == [4]
    assert seqs(tracker.event(ev(4))) == []
    assert tracker.last_seq("s") == 4


def test_events_that_overtake_a_replay_come_after_it() -> None:
    tracker = subscribed_at(2)
    assert tracker.reconnected() == {"s": 2}
    assert tracker.event(ev(5)) == []  # before the reply: held
    assert tracker.subscribed_reply("s", 2, {"seq": 5}) == []
    assert seqs(tracker.event(ev(3))) == [3]
    assert seqs(tracker.event(ev(4))) == [4]
    assert seqs(tracker.event(ev(5))) == [5]  # the replay's end; the held 5 is a duplicate
    assert seqs(tracker.event(ev(6))) == [6]


def test_a_held_event_past_the_replay_is_released_when_the_replay_ends() -> None:
    tracker = subscribed_at(1)
    tracker.reconnected()
    assert tracker.event(ev(4)) == []
    assert tracker.subscribed_reply("s", 1, {"seq": 3}) == []
    assert seqs(tracker.event(ev(2))) == [2]
    assert seqs(tracker.event(ev(3))) == [3, 4]


def test_an_empty_replay_releases_what_was_held_at_once() -> None:
    tracker = subscribed_at(4)
    tracker.reconnected()
    tracker.event(ev(5))
    assert seqs(tracker.subscribed_reply("s", 4, {"seq": 4})) == [5]


def test_a_reset_is_a_resync_event_then_what_is_newer_than_the_reply() -> None:
    tracker = subscribed_at(2)
    tracker.reconnected()
    tracker.event(ev(90))
    tracker.event(ev(101))
    out = tracker.subscribed_reply("s", 2, {"seq": 100, "reset": True})
    assert [(e["event"], e["seq"]) for e in out] == [("resync", None), ("messageAdded", 101)]
    assert out[0]["data"] == {"seq": 100} and out[0]["project"] == "p"


def test_a_deleted_session_is_no_longer_resubscribed() -> None:
    tracker = subscribed_at(0)
    assert seqs(tracker.event(ev(1, name="sessionDeleted"))) == [1]
    assert tracker.subscribed == frozenset()
    assert tracker.reconnected() == {}


def test_unsubscribing_or_a_refused_resubscribe_delivers_what_was_held() -> None:
    for refuse in (ResumeTracker.unsubscribe, ResumeTracker.resubscribe_failed):
        tracker = subscribed_at(0)
        tracker.reconnected()
        tracker.event(ev(1))
        assert seqs(refuse(tracker, "s")) == [1]
        assert tracker.subscribed == frozenset()


def test_a_failed_first_subscribe_forgets_the_session_but_not_an_older_subscription() -> None:
    tracker = ResumeTracker()
    handle = tracker.subscribing("s", 5)
    assert tracker.event(ev(6)) == []
    assert seqs(tracker.subscribe_failed("s", handle)) == [6]
    assert tracker.subscribed == frozenset()
    tracker = subscribed_at(3)
    handle = tracker.subscribing("s", None)
    assert tracker.subscribe_failed("s", handle) == []  # it had started: it stays
    assert tracker.subscribed == {"s"}


def test_a_reply_for_a_session_unsubscribed_meanwhile_is_ignored() -> None:
    tracker = ResumeTracker()
    tracker.subscribing("s", 3)
    tracker.unsubscribe("s")
    assert tracker.subscribed_reply("s", 3, {"seq": 9}) == []
    assert tracker.subscribed == frozenset()


@st.composite
def reconnections(draw: st.DrawFn) -> tuple[int, int, int, list[JSON | int]]:
    """(k delivered before the drop, R the reply's seq, N the last event, what arrives after
    the reconnect: events, and the reply as the int R)."""
    k = draw(st.integers(0, 20))
    r = draw(st.integers(k, k + 20))
    n = draw(st.integers(r, r + 20))
    # Published after the server registered the subscription but before its reply: the last
    # few of the replay window, sent live.
    early = draw(st.integers(0, r - k))
    arrivals: list[JSON | int] = [ev(s) for s in range(r - early + 1, r + 1)]
    # Old events sent again are dropped wherever they come.
    if k:
        arrivals += [ev(s) for s in draw(st.lists(st.integers(1, k), max_size=3))]
    arrivals.append(r)
    arrivals += [ev(s) for s in range(k + 1, n + 1)]  # the replay, then live events
    return k, r, n, arrivals


@given(reconnections())
def test_after_a_reconnect_every_event_comes_once_in_order(
    case: tuple[int, int, int, list[JSON | int]],
) -> None:
    k, _, n, arrivals = case
    tracker = subscribed_at(0)
    before = [e for s in range(1, k + 1) for e in tracker.event(ev(s))]
    since = tracker.reconnected()["s"]
    assert since == k
    after: list[JSON] = []
    for item in arrivals:
        if isinstance(item, int):
            after += tracker.subscribed_reply("s", since, {"seq": item})
        else:
            after += tracker.event(item)
    assert seqs(before + after) == list(range(1, n + 1))
    assert tracker.last_seq("s") == n


def test_typed_events_are_the_protocols_classes_and_the_clients_own() -> None:
    from greenroom.protocol.events import Event, MessageAdded
    from greenroom.protocol.resume import Reconnected, Resync, typed

    added = {
        "event": "messageAdded", "session": "s", "project": "p", "seq": 3,
        "data": {"index": 0, "message": {"role": "user", "content": "hi"}},
    }  # fmt: skip
    event = typed(added)
    assert isinstance(event, Event) and isinstance(event.data, MessageAdded)
    assert (event.seq, event.data.message.content) == (3, "hi")
    welcome = {"server": "greenroom", "sessions": []}
    assert typed({"event": "reconnected", "session": None, "project": None, "seq": None,
                  "data": welcome}) == Reconnected(welcome=welcome)  # fmt: skip
    assert typed({"event": "resync", "session": "s", "project": "p", "seq": None,
                  "data": {"seq": 9}}) == Resync(session="s", project="p", seq=9)  # fmt: skip
    assert typed({"event": "fromTheFuture", "session": "s", "project": "p", "seq": 4,
                  "data": {}}) is None  # fmt: skip
