"""``/healthz``, ``/readyz`` and ``/metrics``: real HTTP requests to a server on 127.0.0.1, the
Prometheus text parsed with prometheus-client's own parser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import trio
import trio_websocket
from prometheus_client.parser import text_string_to_metric_families

from greenroom.actors.persistence import Flush
from greenroom.config import SimulatedConfig
from greenroom.transport.server import Server, ServerAddress, ServerSettings
from tests.conftest import make_config, open_test_runtime
from tests.transport.test_server_support import TOKEN, open_client, open_server, turn_ended


@attrs.frozen
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


async def get(
    port: int, target: str, *headers: tuple[str, str], method: str = "GET"
) -> Response:
    """One HTTP/1.1 request on a fresh connection, read to the server's close."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in headers]
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        received = bytearray()
        while chunk := await stream.receive_some():
            received += chunk
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in header_lines)
    return Response(int(status_line.split()[1]), {k.lower(): v for k, v in fields.items()}, body)


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition by (name, sorted labels)."""
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text.decode("utf-8")):
        for sample in family.samples:
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


def one(found: dict[Any, float], name: str, **labels: str) -> float:
    return found[name, tuple(sorted(labels.items()))]


async def test_health_and_readiness_need_no_token_and_say_little(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with open_server(tmp_path) as running:
            port = running.address.port
            health = await get(port, "/healthz")
            assert (health.status, health.body) == (200, b"ok\n")
            ready = await get(port, "/readyz")
            assert (ready.status, ready.body) == (200, b"ready\n")
            assert ready.headers["content-type"].startswith("text/plain")
            head = await get(port, "/readyz", method="HEAD")
            assert (head.status, head.body) == (200, b"")
            assert (await get(port, "/healthz", method="POST")).status == 405
            # The Host check holds here too (a rebound DNS name learns nothing).
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: evil.example\r\n\r\n")
                assert (await stream.receive_some()).startswith(b"HTTP/1.1 403 ")


async def test_metrics_need_the_token_and_count_a_turn(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with open_server(tmp_path) as running:
            port = running.address.port
            refused = await get(port, "/metrics")
            assert refused.status == 401
            assert refused.headers["www-authenticate"].startswith("Bearer")
            assert (await get(port, "/metrics", ("Authorization", "Bearer wrong"))).status == 401
            async with open_client(running.address) as client:
                await client.next_item()  # welcome
                opened = await client.call("openSession", project="demo")
                session = opened["session"]["session"]
                await client.call("subscribe", session=session)
                await client.call("sendMessage", session=session, content="hi [[tokens:12]]")
                await client.event(turn_ended(session))
                await client.call("sendMessage", session=session, content="[[fail-before:quota]]")
                await client.event(turn_ended(session))
                # A flush now, so that the flush histogram has a write in it.
                await running.runtime._persistence.ref.ask(Flush())
                scraped = await get(port, "/metrics", ("Authorization", f"Bearer {TOKEN}"))
                assert scraped.status == 200
                assert scraped.headers["content-type"].startswith("text/plain; version=")
                found = samples(scraped.body)
                assert one(found, "greenroom_connections") == 1
            by_query = await get(port, f"/metrics?token={TOKEN}")
            assert by_query.status == 200
    assert one(found, "greenroom_ready") == 1
    assert one(found, "greenroom_sessions", status="failed") == 1  # its last turn failed
    assert one(found, "greenroom_sessions", status="running") == 0
    assert one(found, "greenroom_turns_started_total") == 2
    assert one(found, "greenroom_turns_ended_total", reason="completed") == 1
    assert one(found, "greenroom_turns_ended_total", reason="failed") == 1
    assert one(found, "greenroom_turns_ended_total", reason="stopped") == 0
    assert one(found, "greenroom_provider_errors_total", kind="quota") == 1
    assert one(found, "greenroom_streamed_tokens_total") == 12
    assert one(found, "greenroom_streamed_characters_total") > 12
    assert one(found, "greenroom_connections_accepted_total") == 1
    assert one(found, "greenroom_send_queue_bytes") == 0
    assert one(found, "greenroom_merged_deltas_total") == 0
    assert one(found, "greenroom_slow_closes_total") == 0
    assert one(found, "greenroom_session_restarts_total") == 0
    assert one(found, "greenroom_sessions_given_up_total") == 0
    assert one(found, "greenroom_journal_size_bytes") > 0
    flushes = one(found, "greenroom_flush_duration_seconds_count")
    assert flushes >= 1
    assert one(found, "greenroom_flush_duration_seconds_bucket", le="+Inf") == flushes
    assert "process_resident_memory_bytes" in {name for name, _ in found}
    fsyncs = one(found, "greenroom_journal_fsync_duration_seconds_count")
    assert one(found, "greenroom_journal_fsync_duration_seconds_bucket", le="+Inf") == fsyncs


async def test_metrics_may_be_made_public(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with open_server(tmp_path, metrics_public=True) as running:
            scraped = await get(running.address.port, "/metrics")
    assert scraped.status == 200
    assert one(samples(scraped.body), "greenroom_sessions", status="idle") == 0


async def test_not_ready_while_restoring_and_while_stopping(tmp_path: Path) -> None:
    """A server that listens before its runtime exists: /readyz says so, a websocket waits
    for the runtime instead of being refused, and leaving serving() closes it with 1001."""
    config = make_config(tmp_path, simulated=SimulatedConfig(seed=1, reply_tokens=3))
    server = Server(settings=ServerSettings(host="127.0.0.1", port=0, token=TOKEN))
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            address: ServerAddress = await nursery.start(server.run)
            port = address.port
            assert (await get(port, "/healthz")).status == 200
            restoring = await get(port, "/readyz")
            assert (restoring.status, restoring.body) == (503, b"restoring\n")
            early = await get(port, f"/metrics?token={TOKEN}")
            assert one(samples(early.body), "greenroom_ready") == 0
            welcomed = trio.Event()
            closed: list[int | None] = []

            async def connect_early() -> None:
                async with open_client(address) as client:
                    assert (await client.next_item())["event"] == "welcome"
                    welcomed.set()
                    try:
                        while True:
                            await client.next_item()
                    except trio_websocket.ConnectionClosed as gone:
                        closed.append(gone.reason.code)

            nursery.start_soon(connect_early)
            await trio.testing.wait_all_tasks_blocked()
            assert not welcomed.is_set()
            async with open_test_runtime(config) as runtime:
                async with server.serving(runtime):
                    await welcomed.wait()
                    assert (await get(port, "/readyz")).status == 200
                stopping = await get(port, "/readyz")
                assert (stopping.status, stopping.body) == (503, b"stopping\n")
                assert closed == [1001]
            nursery.cancel_scope.cancel()

