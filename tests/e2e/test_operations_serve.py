"""End to end, as an operator runs it: ``greenroom serve`` in a subprocess with its token from
``GREENROOM_TOKEN``, JSON logs at debug level, the health and metrics endpoints; its output
read whole for any trace of the token."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest
import trio

from greenroom.transport.client import connect
from tests.e2e.harness import REPO, Server, start_server, stop_server
from tests.e2e.test_serve import open_subscribed, turn_ended, until
from tests.transport.test_operations import get, one, samples

TOKEN = "op-token-1234567890abcdef"


async def test_serve_with_the_token_from_the_environment_logs_json_and_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GREENROOM_TOKEN", TOKEN)
    monkeypatch.setenv("GREENROOM_API_KEY", "sk-test-secret-key-0000")
    server = await start_server(tmp_path, "-v", "--log-format", "json", "--metrics-public")
    try:
        stdout = server.url
        url = server.url.partition(" ")[0]
        assert server.token == ""  # the banner shows no token
        assert url.endswith("/ws")
        assert server.url.endswith(" (token: GREENROOM_TOKEN)")
        port = int(url.rsplit(":", 1)[1].removesuffix("/ws"))
        with trio.fail_after(30):
            assert (await get(port, "/readyz")).body == b"ready\n"
            async with connect(f"{url}?token={TOKEN}", None) as client:
                session = await open_subscribed(client, "ops")
                await client.send_message(session, "hello [[tokens:5]]")
                await until(client.events(), turn_ended(session))
            async with connect(url, TOKEN) as client:  # Authorization: Bearer, logged at -v
                await client.ping()
            scraped = await get(port, "/metrics")  # public, by the flag
            found = samples(scraped.body)
            assert one(found, "greenroom_turns_ended_total", reason="completed") == 1
            assert one(found, "greenroom_streamed_tokens_total") == 5
        assert await stop_server(server) == 0
        stdout += await _rest_of(server)
    finally:
        if server.process.returncode is None:
            server.process.kill()
    log = server.stderr.read_text(encoding="utf-8")
    assert TOKEN not in stdout + log
    assert "sk-test-secret-key" not in stdout + log
    lines = [json.loads(line) for line in log.splitlines()]  # every line is one object
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert any(line["level"] == "debug" for line in lines)
    lifecycle = [line for line in lines if line.get("event") == "loadingChanged"]
    assert [line.get("reason") for line in lifecycle] == [None, "completed"]
    assert {line["project"] for line in lifecycle} == {"ops"}
    assert all(line["session"].startswith("s-") for line in lifecycle)
    assert not (tmp_path / "config" / "token").exists()  # the file's token is not made


async def _rest_of(server: Server) -> str:
    """What the server printed besides the banner's first two lines (read by start_server),
    to its exit."""
    assert server.process.stdout is not None
    return (await server.process.stdout.receive_some(65536)).decode()


@pytest.mark.parametrize("token", ["short", "has space in it and is long", "x" * 15])
async def test_a_weak_token_in_the_environment_is_refused_plainly(
    tmp_path: Path, token: str
) -> None:
    with trio.fail_after(20):
        done = await trio.run_process(
            [sys.executable, "-m", "greenroom", "serve", "--port", "0",
             "--data-dir", str(tmp_path / "data"), "--config-dir", str(tmp_path / "config")],
            env={"GREENROOM_TOKEN": token, "PATH": "/usr/bin:/bin"},
            capture_stdout=True, capture_stderr=True, check=False, cwd=REPO,
        )  # fmt: skip
    assert done.returncode == 2
    error = done.stderr.decode()
    assert error.startswith("greenroom: GREENROOM_TOKEN must be at least 16 characters")
    assert token not in error + done.stdout.decode()


async def test_quiet_after_the_command_leaves_warnings_only(tmp_path: Path) -> None:
    server = await start_server(tmp_path, "-q")
    try:
        assert await stop_server(server, signal.SIGINT) == 0
    finally:
        if server.process.returncode is None:
            server.process.kill()
    assert " INFO " not in server.stderr.read_text(encoding="utf-8")
    loud = await start_server(tmp_path)
    try:
        assert await stop_server(loud) == 0
    finally:
        if loud.process.returncode is None:
            loud.process.kill()
    assert " INFO " in loud.stderr.read_text(encoding="utf-8")


def test_logging_flags_go_before_or_after_the_command() -> None:
    from greenroom.cli.arguments import make_parser

    parser = make_parser()
    after = parser.parse_args(["serve", "-v", "--log-format", "json"])
    before = parser.parse_args(["-v", "--log-format", "json", "serve"])
    for args in (after, before):
        assert (args.verbose, args.quiet, args.log_format) == (True, None, "json")
    plain = parser.parse_args(["sessions"])
    assert (plain.verbose, plain.quiet, plain.log_format) == (None, None, None)
    assert parser.parse_args(["chat", "p", "m", "-q"]).quiet is True
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "-v", "-q"])
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--log-format", "xml"])

