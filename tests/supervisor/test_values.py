"""The value classes: restart types, backoff and the intensity window."""

from __future__ import annotations

import random

import pytest

from greenroom.protocol.errors import Conflict, GreenroomError, NotFound
from greenroom.supervisor import (
    Backoff,
    ChildExists,
    ChildSpec,
    Intensity,
    NoSuchChild,
    Restart,
    SupervisorGaveUp,
)
from greenroom.supervisor.intensity import RestartWindow


async def _noop(restart: object) -> None:
    return None


@pytest.mark.parametrize(
    ("restart", "after_crash", "after_return"),
    [
        (Restart.PERMANENT, True, True),
        (Restart.TRANSIENT, True, False),
        (Restart.TEMPORARY, False, False),
    ],
)
def test_restart_types(restart: Restart, after_crash: bool, after_return: bool) -> None:
    assert restart.restarts_after(crashed=True) is after_crash
    assert restart.restarts_after(crashed=False) is after_return


def test_backoff_without_jitter_doubles_up_to_the_cap() -> None:
    backoff = Backoff(initial=0.01, factor=2.0, maximum=0.1, jitter=0.0)
    rng = random.Random(1)
    delays = [backoff.delay(attempt, rng) for attempt in range(1, 7)]
    assert delays == pytest.approx([0.01, 0.02, 0.04, 0.08, 0.1, 0.1])
    assert backoff.delay(10_000, rng) == pytest.approx(0.1)  # no overflow


def test_backoff_jitter_stays_in_range_and_is_deterministic() -> None:
    backoff = Backoff(initial=1.0, factor=3.0, maximum=100.0, jitter=0.5)
    first = [backoff.delay(a, random.Random(42)) for a in range(1, 6)]
    again = [backoff.delay(a, random.Random(42)) for a in range(1, 6)]
    assert first == again
    for attempt, delay in enumerate(first, start=1):
        base = min(100.0, 3.0 ** (attempt - 1))
        assert base * 0.5 <= delay <= base
    rng = random.Random(7)
    draws = {backoff.delay(1, rng) for _ in range(50)}
    assert len(draws) > 1  # the jitter really varies


@pytest.mark.parametrize(
    "kwargs",
    [{"initial": -1.0}, {"factor": 0.5}, {"jitter": 1.5}, {"initial": 2.0, "maximum": 1.0}],
)
def test_backoff_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)


def test_backoff_rejects_attempt_zero() -> None:
    with pytest.raises(ValueError):
        Backoff().delay(0, random.Random())


def test_window_admits_max_restarts_per_period() -> None:
    window = RestartWindow(Intensity(max_restarts=2, period=5.0))
    assert window.admit(0.0)
    assert window.admit(1.0)
    assert not window.admit(4.9)  # a third within 5 s
    # The refused restart was not counted: at 5.0 the restart at 0.0 has left the window.
    assert window.admit(5.0)
    assert not window.admit(5.5)
    assert window.admit(10.0)


def test_zero_max_restarts_never_admits() -> None:
    assert not RestartWindow(Intensity(max_restarts=0)).admit(0.0)


def test_intensity_and_spec_validation() -> None:
    with pytest.raises(ValueError):
        Intensity(max_restarts=-1)
    with pytest.raises(ValueError):
        Intensity(period=0.0)
    with pytest.raises(ValueError):
        ChildSpec(id="", start=_noop)
    with pytest.raises(ValueError):
        ChildSpec(id="a", start=_noop, shutdown=-1.0)


def test_errors_belong_to_the_tree() -> None:
    gave_up = SupervisorGaveUp("a", "ValueError: boom")
    assert isinstance(gave_up, GreenroomError)
    assert (gave_up.child_id, gave_up.reason) == ("a", "ValueError: boom")
    assert isinstance(ChildExists("a"), Conflict)
    assert ChildExists("a").code == "conflict"
    assert isinstance(NoSuchChild("a"), NotFound)
    assert NoSuchChild("a").code == "not_found"


def test_a_crash_wrapped_in_exception_groups_is_described_by_what_was_raised() -> None:
    from greenroom.supervisor.child import describe

    inner = ExceptionGroup("nursery", [RuntimeError("boom")])
    assert describe(ExceptionGroup("outer", [inner])) == "RuntimeError: boom"
    both = ExceptionGroup("n", [RuntimeError("a"), ValueError("b")])
    assert describe(both) == "RuntimeError: a; ValueError: b"
    assert describe(KeyError("k")) == "KeyError: 'k'"
