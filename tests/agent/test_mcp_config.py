"""The MCP server lists (config.toml and .mcp.json), tool names, and the approval record."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import trio

from greenroom.agent.mcp.config import (
    McpConfigError,
    McpServer,
    parse_project_file,
    parse_servers,
    read_project_file,
    server_of,
    tool_name,
)
from greenroom.agent.mcp.hub import McpRegistry
from greenroom.settings import SettingsError, render, render_json, resolve
from greenroom.store.trust import read_trust, set_trust, trusted_hash


def test_claude_code_format() -> None:
    data = (
        b'{"mcpServers": {'
        b'"files": {"command": "npx", "args": ["-y", "fs"], "env": {"K": "v"}},'
        b'"web": {"type": "http", "url": "https://example.com/mcp", "headers": {"A": "b"}}}}'
    )
    found = parse_project_file(data)
    assert found.error is None
    assert found.hash == hashlib.sha256(data).hexdigest()
    files, web = found.servers
    assert files == McpServer(
        name="files", transport="stdio", command="npx", args=("-y", "fs"), env=(("K", "v"),),
        source="project",
    )  # fmt: skip
    assert (web.transport, web.url, web.headers) == (
        "http",
        "https://example.com/mcp",
        (("A", "b"),),
    )
    assert web.describe() == {
        "name": "web",
        "type": "http",
        "url": "https://example.com/mcp",
        "headers": ["A"],
    }


@pytest.mark.parametrize(
    ("servers", "expected"),
    [
        ({"a b": {"command": "x"}}, "bad server name"),
        ({"a__b": {"command": "x"}}, "no '__'"),
        ({"a": {"command": ""}}, "'command' must be a non-empty string"),
        ({"a": {"command": "x", "args": "y"}}, "'args' must be a list of strings"),
        ({"a": {"command": "x", "env": {"K": 1}}}, "'env' must map names to strings"),
        ({"a": {"type": "http", "url": "ftp://x"}}, "http:// or https://"),
        ({"a": {"type": "sse", "url": "http://x"}}, "unsupported type 'sse'"),
        ({"a": {"url": "http://x"}}, "give a 'command'"),
        ({"a": {"command": "x", "cwd": "/"}}, "unknown field 'cwd'"),
        ({"a": []}, "must be an object"),
        ({str(n): {"command": "x"} for n in range(40)}, "more than 32 servers"),
    ],
)
def test_bad_servers(servers: dict[str, object], expected: str) -> None:
    with pytest.raises(McpConfigError, match=expected):
        parse_servers(servers, where="t", source="global")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"{nope", "not valid JSON"),
        (b"\xff", "not valid JSON"),
        (b"[]", 'expected {"mcpServers"'),
        (b'{"mcpServers": []}', 'expected {"mcpServers"'),
        (b'{"mcpServers": {"a": {}}}', "give a 'command'"),
    ],
)
def test_bad_project_files_are_reported_not_raised(data: bytes, expected: str) -> None:
    found = parse_project_file(data)
    assert found.servers == () and expected in (found.error or "")


def test_read_project_file(tmp_path: Path) -> None:
    assert read_project_file(tmp_path) is None
    (tmp_path / ".mcp.json").write_bytes(b'{"mcpServers": {}}')
    found = read_project_file(tmp_path)
    assert found is not None and found.servers == () and found.error is None
    (tmp_path / ".mcp.json").write_bytes(b" " * (300 * 1024))
    found = read_project_file(tmp_path)
    assert found is not None and "over" in (found.error or "")


def test_tool_names() -> None:
    assert tool_name("demo", "add") == "mcp__demo__add"
    odd = tool_name("demo", "read.file/v2")
    assert odd.startswith("mcp__demo__read_file_v2_") and len(odd) <= 64
    assert odd != tool_name("demo", "read_file_v2")
    long = tool_name("demo", "x" * 100)
    assert len(long) == 64 and long != tool_name("demo", "x" * 99)
    assert server_of("mcp__demo__add") == "demo"
    assert server_of("mcp__demo") is None
    assert server_of("read_file") is None


def test_trust_record(tmp_path: Path) -> None:
    assert read_trust(tmp_path) == {}
    set_trust(tmp_path, "blog", "a" * 64)
    set_trust(tmp_path, "site", "b" * 64)
    assert trusted_hash(tmp_path, "blog") == "a" * 64
    set_trust(tmp_path, "blog", None)
    assert read_trust(tmp_path) == {"site": "b" * 64}
    (tmp_path / "mcp-trust.json").write_text("{broken")
    assert read_trust(tmp_path) == {}  # approves nothing
    set_trust(tmp_path, "blog", "c" * 64)  # and the next approval rewrites it whole
    assert read_trust(tmp_path) == {"blog": "c" * 64}


def test_global_servers_in_config_toml(tmp_path: Path) -> None:
    file = tmp_path / "config.toml"
    file.write_text(
        '[mcp_servers.demo]\ncommand = "python3"\nargs = ["s.py"]\nenv = { TOKEN = "s3cret" }\n'
        '[mcp_servers.web]\ntype = "http"\nurl = "http://127.0.0.1:9/mcp"\n'
    )
    settings = resolve(file=file, env={}, flags={})
    demo, web = settings.config().mcp_servers
    assert (demo.name, demo.command, demo.env, demo.source) == (
        "demo",
        "python3",
        (("TOKEN", "s3cret"),),
        "global",
    )
    assert web.transport == "http"
    shown = render(settings) + render_json(settings)
    assert "TOKEN" in shown and "s3cret" not in shown


def test_bad_global_servers(tmp_path: Path) -> None:
    file = tmp_path / "config.toml"
    file.write_text('[mcp_servers.demo]\ntype = "sse"\nurl = "http://x"\n')
    with pytest.raises(SettingsError, match="unsupported type 'sse'"):
        resolve(file=file, env={}, flags={})
    file.write_text('mcp_servers = "nope"\n')
    with pytest.raises(SettingsError, match="must be an object"):
        resolve(file=file, env={}, flags={})


async def test_the_registry_reads_a_projects_file_as_it_is_now(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = McpRegistry(data_dir=tmp_path / "data", projects_root=tmp_path / "projects")
    # A project with no file (most): told without a worker thread, every turn.
    monkeypatch.setattr(trio.to_thread, "run_sync", _no_thread)
    assert (await registry.status("blog")).state == "none"  # no folder yet
    (tmp_path / "projects" / "blog").mkdir(parents=True)
    assert (await registry.status("blog")).state == "none"
    monkeypatch.undo()
    # The file comes, goes, and is unreadable: each time as it is now.
    data = b'{"mcpServers": {"files": {"command": "npx"}}}'
    (tmp_path / "projects" / "blog" / ".mcp.json").write_bytes(data)
    status = await registry.status("blog")
    assert (status.state, status.hash) == ("untrusted", hashlib.sha256(data).hexdigest())
    (tmp_path / "projects" / "blog" / ".mcp.json").unlink()
    assert (await registry.status("blog")).state == "none"
    (tmp_path / "projects" / "blog" / ".mcp.json").mkdir()
    status = await registry.status("blog")
    assert status.state == "invalid" and "cannot read .mcp.json" in (status.error or "")


async def _no_thread(*args: object, **kwargs: object) -> None:
    raise AssertionError("a worker thread was used")
