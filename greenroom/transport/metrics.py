"""``GET /metrics``: the server's counters in the Prometheus text format.

A custom collector reads the live statistics when Prometheus scrapes, rather than keeping a
second set of counters beside them: the runtime's ``stats`` (sessions by status, restarts,
give-ups), its :class:`~greenroom.actors.tally.Tally` (turns, streamed text, provider failures,
the flush and fsync histograms, observed where they happen), the journal's size and the
transport's counters and send queues. prometheus-client writes the exposition; nothing here
formats text by hand. Each server has its own registry, so that several servers in one process
(the tests) never share a counter. The process's own metrics (memory, CPU, open files) come
from prometheus-client's ``ProcessCollector``.

A scrape runs in the event loop, as every read of the runtime's state must: it costs one pass
over the sessions' summaries (for the sessions by status) and one over the connections.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, get_args

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from greenroom.actors.tally import Durations
from greenroom.protocol.events import EndReason, Status

if TYPE_CHECKING:
    from greenroom.transport.server import Server

__all__ = ["CONTENT_TYPE", "metrics_registry", "render_metrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
STATUSES: tuple[str, ...] = get_args(Status)
END_REASONS: tuple[str, ...] = get_args(EndReason)


def metrics_registry(server: Server) -> CollectorRegistry:
    """A registry of its own for ``server``: its collector and the process's."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ServerCollector(server))
    ProcessCollector(registry=registry)
    return registry


def render_metrics(registry: CollectorRegistry) -> bytes:
    """The exposition, as prometheus-client writes it."""
    return generate_latest(registry)


class _ServerCollector(Collector):
    def __init__(self, server: Server) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        server = self.server
        counters = server.counters
        yield _gauge("greenroom_ready", "1 when the sessions are restored and served", (
            1 if server.ready else 0))  # fmt: skip
        yield _gauge("greenroom_connections", "open websocket connections", counters.connections)
        yield _counter(
            "greenroom_connections_accepted", "websocket connections accepted",
            counters.connections_total,
        )  # fmt: skip
        yield _counter(
            "greenroom_handshakes_rejected", "handshakes refused (token, origin, Host, limit)",
            counters.rejected_handshakes,
        )  # fmt: skip
        yield _counter("greenroom_frames_sent", "websocket frames sent", counters.frames_sent)
        yield _counter("greenroom_events_sent", "events sent to clients", counters.events_sent)
        yield _counter(
            "greenroom_merged_deltas",
            "streamingUpdate events merged into one for a client that was behind",
            counters.merged_deltas,
        )
        yield _counter(
            "greenroom_slow_closes", "connections closed with 4008 for falling behind",
            counters.closed_slow,
        )  # fmt: skip
        yield _gauge(
            "greenroom_send_queue_bytes", "bytes waiting in the connections' send queues",
            sum(outbox.size for outbox in server.outboxes),
        )  # fmt: skip
        runtime = server.runtime
        if runtime is None:
            return  # still restoring: only the transport and the process so far
        stats = runtime.statistics()
        tally = runtime.tally
        yield _labelled(
            GaugeMetricFamily, "greenroom_sessions", "sessions by status", "status",
            {status: stats.sessions.get(status, 0) for status in STATUSES},
        )  # fmt: skip
        yield _gauge(
            "greenroom_sessions_in_memory", "sessions loaded (the others are dormant, on disk)",
            stats.sessions_in_memory,
        )  # fmt: skip
        yield _counter("greenroom_turns_started", "turns started", tally.turns_started)
        yield _labelled(
            CounterMetricFamily, "greenroom_turns_ended", "turns ended, by reason", "reason",
            {reason: tally.turns_ended.get(reason, 0) for reason in END_REASONS},
        )  # fmt: skip
        yield _counter(
            "greenroom_streamed_tokens",
            "text pieces streamed by the model (one per token from the OpenAI-compatible and "
            "simulated providers)",
            tally.streamed_deltas,
        )
        yield _counter(
            "greenroom_streamed_characters", "characters of text streamed by the model",
            tally.streamed_chars,
        )  # fmt: skip
        yield _labelled(
            CounterMetricFamily, "greenroom_provider_errors",
            "turns failed by the model provider, by kind", "kind", tally.provider_errors,
        )  # fmt: skip
        yield _counter("greenroom_session_restarts", "sessions restarted after a crash", (
            stats.restarts))  # fmt: skip
        yield _counter(
            "greenroom_sessions_given_up", "sessions the supervisor gave up on (status failed)",
            stats.given_up,
        )  # fmt: skip
        yield _counter("greenroom_events_published", "events published", stats.events_published)
        yield _counter(
            "greenroom_notifications_sent", "notifications sent to clients",
            stats.notifications_sent,
        )  # fmt: skip
        yield _histogram(
            "greenroom_flush_duration_seconds",
            "how long each write of the snapshots and histories took", tally.flush_seconds,
        )  # fmt: skip
        yield _histogram(
            "greenroom_journal_fsync_duration_seconds",
            "how long each fsync of the journal (a group commit) took", tally.sync_seconds,
        )  # fmt: skip
        yield _gauge("greenroom_journal_size_bytes", "bytes in the journal's segments", (
            stats.journal.size))  # fmt: skip
        yield _counter(
            "greenroom_journal_write_failures", "failed journal writes and fsyncs (retried)",
            stats.journal.write_failures,
        )  # fmt: skip
        yield _counter(
            "greenroom_flush_failures", "failed writes of snapshots and histories (retried)",
            stats.persistence.write_failures,
        )  # fmt: skip


def _gauge(name: str, documentation: str, value: float) -> Metric:
    return GaugeMetricFamily(name, documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> Metric:
    return CounterMetricFamily(name, documentation, value=value)


def _labelled(
    family: type[GaugeMetricFamily] | type[CounterMetricFamily],
    name: str,
    documentation: str,
    label: str,
    values: Mapping[str, float],
) -> Metric:
    metric = family(name, documentation, labels=[label])
    for key, value in sorted(values.items()):
        metric.add_metric([key], value)
    return metric


def _histogram(name: str, documentation: str, durations: Durations) -> Metric:
    return HistogramMetricFamily(
        name, documentation, buckets=list(_cumulative(durations)), sum_value=durations.total
    )


def _cumulative(durations: Durations) -> Iterable[tuple[str, float]]:
    running = 0
    for bound, count in zip((*durations.bounds, float("inf")), durations.counts, strict=True):
        running += count
        yield ("+Inf" if bound == float("inf") else repr(bound)), running
