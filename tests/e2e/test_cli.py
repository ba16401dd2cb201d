"""The ``greenroom`` client commands, run as subprocesses against a real ``greenroom serve``:
stdin, ``--json``, exit codes, ``--url`` forms, the project and session commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from greenroom.transport.client import connect
from tests.e2e.harness import Server, cli_env, kill_server, run_cli, start_server

JSON = dict[str, Any]


def lines(data: bytes) -> list[JSON]:
    return [json.loads(line) for line in data.decode().splitlines()]


async def sessions(server: Server) -> list[JSON]:
    done = await run_cli(server, "sessions", "--json")
    assert done.returncode == 0, done.stderr
    result: list[JSON] = json.loads(done.stdout)
    return result


async def state(server: Server, project: str) -> JSON:
    async with connect(server.url, server.token) as client:
        result: JSON = (await client.open_session(project))["session"]
    return result


async def test_chat_one_message_creates_the_project_and_says_so(server: Server) -> None:
    done = await run_cli(server, "chat", "demo", "hello")
    assert done.returncode == 0, done.stderr
    assert done.stderr.decode() == "created project demo\n"
    reply = (await state(server, "demo"))["messages"][-1]["content"]
    assert done.stdout.decode() == reply + "\n"

    again = await run_cli(server, "chat", "demo", "once more")
    assert again.returncode == 0
    assert again.stderr == b"", "the project exists now: nothing to say"


async def test_chat_reads_the_message_from_stdin(server: Server) -> None:
    # "-" reads stdin; so does no message at all when stdin is not a terminal.
    dash = await run_cli(server, "chat", "demo", "-", stdin=b"from a pipe\n")
    assert dash.returncode == 0, dash.stderr
    piped = await run_cli(server, "chat", "demo", stdin=b"line one\nline two\n")
    assert piped.returncode == 0, piped.stderr
    users = [m["content"] for m in (await state(server, "demo"))["messages"] if m["role"] == "user"]
    assert users == ["from a pipe", "line one\nline two"]

    empty = await run_cli(server, "chat", "demo", stdin=b"  \n")
    assert empty.returncode == 2
    assert empty.stderr.decode() == "greenroom: no message: stdin was empty\n"
    binary = await run_cli(server, "chat", "demo", "-", stdin=b"\xff\xfe not text")
    assert binary.returncode == 2
    assert binary.stderr.decode() == "greenroom: the message on stdin is not UTF-8 text\n"


async def test_chat_json_prints_the_events_as_lines(server: Server) -> None:
    done = await run_cli(server, "chat", "demo", "--json", "create file a.txt with hi")
    assert done.returncode == 0, done.stderr
    events = lines(done.stdout)
    session = (await state(server, "demo"))["session"]
    assert {e["session"] for e in events} == {session}
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    names = [e["event"] for e in events]
    assert "messageAdded" in names and "streamingUpdate" in names
    assert events[-1]["event"] == "loadingChanged"
    assert events[-1]["data"] == {"loading": False, "reason": "completed", "error": None}
    tools = [e for e in events if e["event"] == "messageAdded"]
    assert tools[0]["data"]["message"] == {"role": "user", "content": "create file a.txt with hi"}


async def test_chat_model_and_a_failed_turn(server: Server) -> None:
    done = await run_cli(server, "chat", "demo", "--model", "small-one", "hi")
    assert done.returncode == 0, done.stderr
    (summary,) = await sessions(server)
    assert summary["model"] == "small-one"

    failed = await run_cli(server, "chat", "demo", "[[fail-before:auth]] x")
    assert failed.returncode == 1
    assert failed.stderr.decode().startswith("turn failed")


async def test_url_forms_and_a_bad_url(server: Server) -> None:
    port = server.url.rsplit(":", 1)[1].split("/")[0]
    env = cli_env(None, GREENROOM_TOKEN=server.token)
    for url in (server.url, f"http://127.0.0.1:{port}", f"127.0.0.1:{port}", f"localhost:{port}/"):
        done = await run_cli(None, "sessions", "--url", url, env=env)
        assert done.returncode == 0, (url, done.stderr)
        assert done.stdout == b"no sessions\n"
    # The address the server prints for browsers, token included, works as it is.
    browser = f"http://127.0.0.1:{port}/?token={server.token}"
    done = await run_cli(None, "projects", "--url", browser, env=cli_env(None))
    assert done.returncode == 0, done.stderr

    for bad in ("ftp://127.0.0.1:1", "127.0.0.1", "http://:80", "x:99999"):
        done = await run_cli(None, "sessions", "--url", bad, env=env)
        assert done.returncode == 2, bad
        err = done.stderr.decode()
        assert err.startswith("greenroom: --url: not a server address") and err.count("\n") == 1

    # An address where nothing listens: no server (3), one line.
    done = await run_cli(None, "sessions", "--url", "127.0.0.1:9", env=env)
    assert done.returncode == 3
    assert done.stderr.decode().count("\n") == 1 and b"Traceback" not in done.stderr
    # A wrong token: a usage error (2).
    env["GREENROOM_TOKEN"] = "wrong"
    done = await run_cli(None, "sessions", "--url", server.url, env=env)
    assert done.returncode == 2
    assert b"refused the token" in done.stderr


async def test_projects_sessions_and_their_json(server: Server) -> None:
    assert (await run_cli(server, "projects")).stdout == b"no projects\n"
    assert (await run_cli(server, "chat", "blog", "hi")).returncode == 0
    assert (await run_cli(server, "chat", "shop", "hi")).returncode == 0
    table = (await run_cli(server, "projects")).stdout.decode().splitlines()
    assert table[0].split() == ["PROJECT", "SESSION", "STATUS"]
    assert [row.split()[0] for row in table[1:]] == ["blog", "shop"]
    projects = json.loads((await run_cli(server, "projects", "--json")).stdout)
    assert [(p["project"], p["status"]) for p in projects] == [("blog", "idle"), ("shop", "idle")]
    listed = await sessions(server)
    assert sorted(s["project"] for s in listed) == ["blog", "shop"]
    text = (await run_cli(server, "sessions")).stdout.decode()
    assert text.splitlines()[0].split()[:3] == ["SESSION", "PROJECT", "STATUS"]


async def test_stop_new_chat_resume_delete(server: Server) -> None:
    assert (await run_cli(server, "chat", "blog", "hi")).returncode == 0
    session = (await sessions(server))[0]["session"]

    stopped = await run_cli(server, "stop", "blog", "--json")
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(stopped.stdout) == {"session": session, "discarded": []}
    assert (await run_cli(server, "stop", session)).stdout.decode() == f"stopped {session}\n"

    # Nothing to resume in an idle session: the server says no (1).
    nothing = await run_cli(server, "resume", "blog")
    assert nothing.returncode == 1
    assert nothing.stderr.decode().startswith("greenroom: conflict:")

    before = (await state(server, "blog"))["name"]
    renewed = await run_cli(server, "new-chat", "blog", "--json")
    assert renewed.returncode == 0 and json.loads(renewed.stdout) == {"session": session}
    after = await state(server, "blog")
    assert after["name"] != before and after["messages"] == []

    unknown = await run_cli(server, "delete", "no-such-thing")
    assert unknown.returncode == 1
    assert unknown.stderr.decode().startswith("greenroom: not_found:")

    deleted = await run_cli(server, "delete", "blog", "--json")
    assert deleted.returncode == 0 and json.loads(deleted.stdout) == {"session": session}
    assert await sessions(server) == []
    projects = json.loads((await run_cli(server, "projects", "--json")).stdout)
    assert projects == [{"project": "blog", "session": None, "status": None}]


async def test_delete_project_needs_a_yes_off_a_terminal(server: Server) -> None:
    assert (await run_cli(server, "chat", "blog", "create file keep.txt with hi")).returncode == 0
    folder = server.data_dir / "projects" / "blog"
    assert (folder / "keep.txt").is_file()

    refused = await run_cli(server, "delete", "blog", "--project")
    assert refused.returncode == 2
    assert b"add --yes" in refused.stderr
    assert (folder / "keep.txt").is_file(), "nothing deleted without a yes"

    done = await run_cli(server, "delete", "blog", "--project", "--yes", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"project": "blog", "folder": "removed"}
    assert not folder.exists(), sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
    assert await sessions(server) == []
    gone = await run_cli(server, "delete", "blog", "--project", "--yes")
    assert gone.returncode == 1
    assert gone.stderr.decode() == "greenroom: not_found: no project 'blog'\n"


async def test_resume_continues_an_interrupted_turn(tmp_path: Path) -> None:
    """Under --resume manual a turn cut by kill -9 waits; `greenroom resume` continues it."""
    server = await start_server(tmp_path, "--resume", "manual")
    port = server.url.rsplit(":", 1)[1].split("/")[0]
    back: Server | None = None
    try:
        async with connect(server.url, server.token) as client:
            session = (await client.open_session("demo"))["session"]["session"]
            await client.subscribe(session)
            await client.send_message(session, "[[tokens:400]] [[rate:40]] go")
            async for event in client.events():
                if event["event"] == "streamingUpdate":
                    break
        await kill_server(server)
        back = await start_server(tmp_path, "--port", port, "--resume", "manual")
        (summary,) = await sessions(back)
        assert summary["status"] == "interrupted"
        done = await run_cli(back, "resume", "demo", "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"session": session}
        assert (await state(back, "demo"))["loading"] is True
        assert (await run_cli(back, "stop", "demo")).returncode == 0
    finally:
        for running in (server, back):
            if running is not None:
                await kill_server(running)
