"""What the runtime counts for its metrics, beyond the actors' own statistics.

:class:`Tally` is one live object per runtime: the journal actor counts every event as it
releases it (turns started and ended by reason, streamed text, provider failures by kind) and
times its fsyncs; the persistence actor times its flushes. ``/metrics`` reads it when it is
scraped (see :mod:`greenroom.transport.metrics`); nothing here knows of Prometheus.

Counting where the journal releases events counts each event once, in the order clients see
them, whatever the number of clients; it costs one ``match`` per event.
"""

from __future__ import annotations

import bisect
from collections import Counter

import attrs

from greenroom.actors.session import provider_error_kind
from greenroom.protocol.events import Event, LoadingChanged, StreamingUpdate

__all__ = ["DURATION_BOUNDS", "Durations", "Tally"]

DURATION_BOUNDS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
"""Upper bounds (seconds) of the duration buckets: a page-cache fsync to a stalled disk."""


@attrs.define(eq=False)
class Durations:
    """Durations counted in fixed buckets: ``counts[i]`` are those up to ``bounds[i]`` (and
    above the bound before), ``counts[-1]`` those above every bound."""

    bounds: tuple[float, ...] = DURATION_BOUNDS
    counts: list[int] = attrs.field(init=False)
    total: float = 0.0
    """The sum of every duration observed."""

    @counts.default
    def _zeros(self) -> list[int]:
        return [0] * (len(self.bounds) + 1)

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)


@attrs.define(eq=False)
class Tally:
    """Live counters of a runtime (see the module docstring)."""

    turns_started: int = 0
    turns_ended: Counter[str] = attrs.Factory(Counter)
    """By reason: completed, stopped, failed, interrupted."""
    streamed_deltas: int = 0
    """Text pieces streamed by the model: one per token from the providers greenroom has."""
    streamed_chars: int = 0
    provider_errors: Counter[str] = attrs.Factory(Counter)
    """Turns failed by the provider, by the failure's kind (``rate_limit``, ``timeout``...)."""
    flush_seconds: Durations = attrs.Factory(Durations)
    """How long each write of the snapshots and histories took."""
    sync_seconds: Durations = attrs.Factory(Durations)
    """How long each fsync of the journal (its group commit) took."""

    def count(self, event: Event) -> None:
        data = event.data
        if type(data) is StreamingUpdate:  # most events: tested first
            if data.delta:
                self.streamed_deltas += 1
                self.streamed_chars += len(data.delta)
            return
        match data:
            case LoadingChanged(loading=True):
                self.turns_started += 1
            case LoadingChanged(reason=reason, error=error) if reason is not None:
                self.turns_ended[reason] += 1
                kind = provider_error_kind(error) if reason == "failed" else None
                if kind is not None:
                    self.provider_errors[kind] += 1
