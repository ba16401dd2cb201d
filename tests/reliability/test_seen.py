"""The model of what a client saw (tests/reliability/resume.py) across a reconnect, where a
lifecycle event of a session reaches the new connection before its subscribe's replay."""

from __future__ import annotations

from typing import Any

import pytest

from tests.reliability.resume import Seen


def event(seq: int, name: str, **data: Any) -> dict[str, Any]:
    return {"event": name, "session": "s", "project": "p", "seq": seq, "data": data}


def test_a_lifecycle_event_ahead_of_the_replay_waits_for_it() -> None:
    view = Seen(session="s", last=380, partial="abcdef")
    # Restarted, the server resumed the turn while the client reconnected: the new connection
    # gets the resumed turn's start before the client subscribed again.
    view.see(event(392, "loadingChanged", loading=True))
    assert view.last == 380  # so it subscribes with since=380, and the replay brings:
    replay = [
        event(381, "messageAdded", index=1, message={"role": "assistant", "content": "abcdef"}),
        event(382, "loadingChanged", loading=False, reason="interrupted"),
        event(392, "loadingChanged", loading=True),
        event(393, "streamingUpdate", offset=0, delta="xyz"),
    ]
    for replayed in replay:
        view.see(replayed)
    assert (view.last, view.partial) == (393, "xyz")


def test_a_different_event_under_a_seen_seq_still_fails() -> None:
    view = Seen(session="s", last=10)
    view.see(event(12, "loadingChanged", loading=True))
    with pytest.raises(AssertionError, match="differs"):
        view.see(event(12, "loadingChanged", loading=False))


def test_text_that_differs_from_what_was_streamed_still_fails() -> None:
    view = Seen(session="s", last=10, partial="abc")
    with pytest.raises(AssertionError, match="splice"):
        view.see(event(11, "streamingUpdate", offset=0, delta="xyz"))
