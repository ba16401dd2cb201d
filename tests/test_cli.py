"""The ``greenroom`` command line, without a server: arguments, settings, token, output."""

from __future__ import annotations

import argparse
import gc
import io
import json
import logging
import os
import stat
from pathlib import Path

import pytest

from greenroom import cli
from greenroom.cli.arguments import make_parser
from greenroom.cli.chat import Output, logs_on_their_own_line
from greenroom.cli.discovery import discover
from greenroom.cli.environment import build_config, server_address
from greenroom.cli.exits import EXIT_NO_SERVER, NO_SERVER
from greenroom.cli.render import describe, sessions_table
from greenroom.cli.serve import GC_THRESHOLDS, freeze_startup_heap, tune_gc
from greenroom.config import default_data_dir
from greenroom.settings import SETTINGS
from greenroom.transport.client import websocket_url


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main([])
    assert exited.value.code == 2
    assert "usage: greenroom" in capsys.readouterr().err


def test_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["serve", "--resume", "sometimes"], ["serve", "--port", "x"], ["chat"]):
        with pytest.raises(SystemExit) as exited:
            cli.main(argv)
        assert exited.value.code == 2


def test_bad_port_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("GREENROOM_PORT", "eighty")
    code = cli.main(["serve", "--config-dir", str(tmp_path), "--data-dir", str(tmp_path)])
    assert code == 2
    assert "bad port 'eighty'" in capsys.readouterr().err


def test_a_data_folder_that_cannot_be_used_is_named(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A file where the snapshots' folder should be: the error names it, not the port."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "sessions").write_text("a file where a folder should be")
    argv = ["serve", "--config-dir", str(tmp_path / "config"), "--data-dir", str(data)]
    assert cli.main([*argv, "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "cannot use" in err and "sessions" in err and "Not a directory" in err
    assert "cannot listen" not in err


def test_token_is_created_once_and_private(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["token", "--config-dir", str(tmp_path)]) == 0
    token = capsys.readouterr().out.strip()
    assert len(token) >= 32
    mode = stat.S_IMODE((tmp_path / "token").stat().st_mode)
    assert mode == 0o600
    assert cli.main(["token", "--config-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == token


def test_token_from_the_environment_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GREENROOM_CONFIG_DIR", str(tmp_path / "env"))
    assert cli.main(["token"]) == 0
    assert (tmp_path / "env" / "token").read_text().strip() == capsys.readouterr().out.strip()


def test_settings_precedence(tmp_path: Path) -> None:
    parser = make_parser()
    env = {
        "GREENROOM_DATA_DIR": str(tmp_path / "env-data"),
        "GREENROOM_PROJECTS_DIR": str(tmp_path / "env-projects"),
        "GREENROOM_PORT": "9000",
        "GREENROOM_HOST": "0.0.0.0",
        "GREENROOM_PROVIDER": "simulated",
    }
    bare = parser.parse_args(["serve"])
    assert build_config(bare, {}).data_dir == default_data_dir()
    assert server_address(bare, {}) == ("127.0.0.1", 8765)

    config = build_config(bare, env)
    assert config.data_dir == tmp_path / "env-data"
    assert config.projects_root == tmp_path / "env-projects"
    assert server_address(bare, env) == ("0.0.0.0", 9000)

    flags = parser.parse_args(
        ["serve", "--data-dir", str(tmp_path / "flag"), "--port", "0", "--resume", "manual"]
    )
    config = build_config(flags, env)
    assert config.data_dir == tmp_path / "flag"
    assert config.resume == "manual"
    assert server_address(flags, env) == ("0.0.0.0", 0)


def test_no_server_found(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["sessions"],
        ["projects"],
        ["chat", "demo", "hi"],
        ["stop", "s-1"],
        ["delete", "s-1"],
        ["new-chat", "s-1"],
        ["resume", "s-1"],
        ["watch"],
    ):
        assert cli.main([*argv, "--config-dir", str(tmp_path)]) == EXIT_NO_SERVER
        assert capsys.readouterr().err.strip() == f"greenroom: {NO_SERVER}"


def test_stale_discovery_file_and_dead_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A server.json left by a process that is gone is ignored.
    info = {"url": "ws://127.0.0.1:9/ws", "pid": 2**22 + 12345, "port": 9}
    (tmp_path / "server.json").write_text(json.dumps(info))
    assert discover(tmp_path) is None
    assert cli.main(["sessions", "--config-dir", str(tmp_path)]) == EXIT_NO_SERVER
    # A live pid whose URL does not answer: the same message.
    info["pid"] = os.getpid()
    (tmp_path / "server.json").write_text(json.dumps(info))
    assert discover(tmp_path) == "ws://127.0.0.1:9/ws"
    capsys.readouterr()
    assert cli.main(["sessions", "--config-dir", str(tmp_path)]) == EXIT_NO_SERVER
    assert NO_SERVER in capsys.readouterr().err


def test_output_appends_deltas_at_offsets() -> None:
    out = io.StringIO()
    shown = Output(out)
    shown.streaming({"offset": 0, "delta": "Hel"})
    shown.streaming({"offset": 0, "delta": "Hello"})  # merged, overlapping what we have
    shown.streaming({"offset": 2, "delta": "l"})  # ends before what we have: ignored
    shown.streaming({"offset": 5, "delta": " world"})
    shown.message({"role": "assistant", "content": "Hello world.", "tool_calls": None})
    shown.message(
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "read_file", "arguments": "{}"},
                }
            ],
        }
    )
    shown.message({"role": "tool", "content": "line one\nline two", "tool_call_id": "c1"})
    assert out.getvalue() == "Hello world.\n-> read_file({})\n<- line one\n"


def test_sessions_table_and_lifecycle_lines() -> None:
    summary = {
        "session": "s-1",
        "project": "blog",
        "name": "n",
        "status": "running",
        "loading": True,
        "messageCount": 3,
        "lastActivity": 1000.0,
        "preview": "Once upon\na time",
        "queued": ["next"],
        "error": None,
    }
    table = sessions_table([summary], now=1090.0).splitlines()
    assert table[0].split() == ["SESSION", "PROJECT", "STATUS", "MESSAGES", "LAST", "ACTIVITY",
                                "PREVIEW"]  # fmt: skip
    assert "s-1" in table[1] and "running (+1 queued)" in table[1] and "1m ago" in table[1]
    assert "Once upon a time" in table[1]
    asking = {**summary, "queued": [], "approval": {"call": "c1", "tool": "delete_file"}}
    table = sessions_table([asking], now=1090.0).splitlines()
    assert "running (approve delete_file?)" in table[1]

    def line(name: str, **data: object) -> str | None:
        event = {"event": name, "session": "s-1", "project": "blog", "seq": 4, "data": data}
        return describe(event)

    assert line("sessionCreated") == "session s-1 blog: created"
    assert line("loadingChanged", loading=True) == "session s-1 blog: turn started"
    assert (
        line("loadingChanged", loading=False, reason="failed", error="quota: no credit")
        == "session s-1 blog: turn failed (quota: no credit)"
    )
    assert line("sessionRestarted", reason="crash", restarts=2) == (
        "session s-1 blog: restarted (crash, restart 2)"
    )
    assert line("sessionFailed", reason="too many crashes") is not None
    assert line("sessionDeleted") == "session s-1 blog: deleted"
    assert line("streamingUpdate", offset=0, delta="x") is None


def test_serving_tunes_the_collector_and_freezes_what_startup_made() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)  # Python's defaults
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert GC_THRESHOLDS[0] > 700
        kept = [[n] for n in range(100)]  # tracked objects, standing for the restored mirror
        freeze_startup_heap()
        assert gc.get_freeze_count() >= len(kept)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_help_shows_choices_environment_variables_and_examples() -> None:
    parser = make_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert commands.help
    for name, command in commands.choices.items():
        text = command.format_help()
        assert "examples:\n  greenroom " + name in text, name
        for action in command._actions:
            if not action.option_strings:
                assert action.help, f"{name} {action.dest} has no help"
    serve = commands.choices["serve"].format_help()
    assert "--provider {simulated,openai,anthropic}" in serve
    assert "--resume {auto,manual}" in serve
    for setting in SETTINGS:
        if setting.flag is not None:
            for variable in setting.env:
                assert variable in " ".join(serve.split()), setting.key
    chat = " ".join(commands.choices["chat"].format_help().split())
    assert "env GREENROOM_URL" in chat and "env GREENROOM_TOKEN" in chat
    assert "exit codes:" in parser.format_help()


def test_a_bad_choice_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["serve", "--provider", "claude"])
    assert exited.value.code == 2
    assert "invalid choice: 'claude' (choose from" in capsys.readouterr().err


def test_a_log_line_ends_the_reply_line_first(capsys: pytest.CaptureFixture[str]) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    handler = logging.StreamHandler(Terminal())
    logging.getLogger().addHandler(handler)
    try:
        out = Terminal()
        output = Output(out)
        with logs_on_their_own_line(output):
            output.streaming({"offset": 0, "delta": "half a rep"})
            logging.getLogger("greenroom.test").warning("the server is slow")
            output.streaming({"offset": 10, "delta": "ly"})
        logging.getLogger("greenroom.test").warning("after the chat")
    finally:
        logging.getLogger().removeHandler(handler)
    assert out.getvalue() == "half a rep\nly"
    assert handler.stream.getvalue() == "the server is slow\nafter the chat\n"


def test_websocket_url_takes_what_users_have_at_hand() -> None:
    assert websocket_url("ws://127.0.0.1:8765/ws") == "ws://127.0.0.1:8765/ws"
    assert websocket_url("http://127.0.0.1:8765/?token=T") == "ws://127.0.0.1:8765/ws?token=T"
    assert websocket_url("https://greenroom.example") == "wss://greenroom.example/ws"
    assert websocket_url(" localhost:8765 ") == "ws://localhost:8765/ws"
    assert websocket_url("[::1]:9000") == "ws://[::1]:9000/ws"
    for bad in ("ftp://x:1", "localhost", "http://", "x:99999", "http://x:port", "ws://x/#f", ""):
        with pytest.raises(ValueError, match="give ws://HOST:PORT/ws, http://HOST:PORT or"):
            websocket_url(bad)
    with pytest.raises(ValueError) as refused:
        websocket_url("ftp://x:1/ws?token=secret")
    assert "secret" not in str(refused.value)
