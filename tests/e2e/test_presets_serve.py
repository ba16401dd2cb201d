"""Presets with the real ``greenroom serve`` and the real CLI: ``greenroom presets``,
``greenroom chat --preset``, a session's preset across a kill -9, and a bad preset in
config.toml or in a project's file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import trio

from greenroom.transport.client import connect
from tests.e2e.harness import REPO, Server, kill_server, run_cli, start_server

CONFIG = """
[presets.review]
description = "Careful code review"
model = "big-model"
temperature = 0.2
max_tokens = 400
system_prompt = "You review code."

[presets.review.tools]
delete_file = "deny"

[presets.quick]
temperature = 1.0
"""


async def serve_with(tmp_path: Path, config: str) -> Server:
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "config.toml").write_text(config)
    return await start_server(tmp_path)


async def state(server: Server, project: str) -> dict[str, Any]:
    async with connect(server.url, server.token) as client:
        result: dict[str, Any] = (await client.open_session(project))["session"]
    return result


async def test_presets_from_the_command_line_and_across_a_kill(tmp_path: Path) -> None:
    server = await serve_with(tmp_path, CONFIG)
    try:
        listed = await run_cli(server, "presets")
        assert listed.returncode == 0, listed.stderr
        table = listed.stdout.decode().splitlines()
        assert table[0].split() == ["PRESET", "SOURCE", "MODEL", "DESCRIPTION"]
        assert table[1].split() == ["review", "global", "big-model", "Careful", "code", "review"]
        assert table[2].split() == ["quick", "global", "-"]

        done = await run_cli(server, "chat", "demo", "--preset", "review", "hello")
        assert done.returncode == 0, done.stderr
        sessions = json.loads((await run_cli(server, "sessions", "--json")).stdout)
        assert [(s["project"], s["preset"], s["model"]) for s in sessions] == [
            ("demo", "review", "big-model")
        ]

        # A typo in a preset's name: a clear error, exit 1, and no project made of it.
        typo = await run_cli(server, "chat", "other", "--preset", "reveiw", "hi")
        assert typo.returncode == 1
        assert "no preset 'reveiw' (presets: review, quick)" in typo.stderr.decode()
        projects = json.loads((await run_cli(server, "projects", "--json")).stdout)
        assert [p["project"] for p in projects] == ["demo"]

        # The project's own presets, and a broken file: the listing says why, exit 1.
        folder = server.data_dir / "projects" / "demo" / ".ai"
        (folder / "presets.toml").write_text('[presets.docs]\ndescription = "docs"\n')
        own = json.loads((await run_cli(server, "presets", "demo", "--json")).stdout)
        assert [(p["name"], p["source"]) for p in own["presets"]] == [
            ("review", "global"), ("quick", "global"), ("docs", "project"),
        ]  # fmt: skip
        (folder / "presets.toml").write_text("[presets.docs]\ntemperature = 'hot'\n")
        broken = await run_cli(server, "presets", "demo")
        assert broken.returncode == 1
        assert broken.stderr.decode().startswith(
            "project demo: .ai/presets.toml: preset 'docs': temperature must be a number"
        )
        assert "review" in broken.stdout.decode()  # the global ones still listed
        (folder / "presets.toml").unlink()
        await kill_server(server)

        # kill -9, and a configuration without presets: the session keeps its own.
        server = await serve_with(tmp_path, "")
        kept = await state(server, "demo")
        assert (kept["preset"], kept["model"], kept["temperature"], kept["maxTokens"]) == (
            "review", "big-model", 0.2, 400,
        )  # fmt: skip
        assert kept["systemPrompt"] == "You review code."
        assert kept["tools"] == {"delete_file": "deny"}
        gone = await run_cli(server, "chat", "demo", "--preset", "review", "again")
        assert gone.returncode == 1
        assert "no preset 'review' (presets: none)" in gone.stderr.decode()
    finally:
        await kill_server(server)


async def test_a_bad_preset_in_config_toml_stops_serve(tmp_path: Path) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "config.toml").write_text("[presets.review]\ntemprature = 0.2\n")
    with trio.fail_after(60):
        done = await trio.run_process(
            [sys.executable, "-m", "greenroom", "serve", "--port", "0",
             "--data-dir", str(tmp_path / "data"), "--config-dir", str(config_dir)],
            capture_stdout=True, capture_stderr=True, check=False, cwd=REPO,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    assert done.returncode == 2
    said = done.stderr.decode()
    assert "presets: preset 'review': unknown key 'temprature' (did you mean 'temperature'?)" in (
        said
    )
