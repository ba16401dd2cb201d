"""Settings: defaults < config.toml < environment < flags, checked, shown with their sources."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from greenroom import cli
from greenroom.agent.openai import OpenAIProvider
from greenroom.cli.arguments import make_parser
from greenroom.cli.environment import load_settings
from greenroom.config import Config, Limits, default_data_dir
from greenroom.protocol.errors import InvalidArgument
from greenroom.runtime import make_provider
from greenroom.settings import SettingsError, load_file, mask, render, resolve

KEY = "sk-proj-abcdefghijklmnop1234"


def write(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.toml"
    path.write_text(text)
    return path


FILE = """
provider = "openai"
base_url = "http://file.example/v1"
model = "file-model"
max_steps = 7
flush_interval = 2
resume = "manual"
port = 9001

[limits]
max_sessions = 5
max_concurrent_turns = 3

[simulated]
tokens_per_second = inf
"""


def test_precedence_file_env_flags(tmp_path: Path) -> None:
    directory = tmp_path / "cfg"
    write(directory, FILE)
    parser = make_parser()
    bare = parser.parse_args(["serve", "--config-dir", str(directory)])

    settings = load_settings(bare, {})
    config = settings.config()
    assert (config.provider, config.base_url, config.model) == (
        "openai", "http://file.example/v1", "file-model",
    )  # fmt: skip
    assert (config.max_steps, config.flush_interval, config.resume) == (7, 2.0, "manual")
    assert config.limits == Limits(max_sessions=5, max_concurrent_turns=3)
    assert math.isinf(config.simulated.tokens_per_second)
    assert settings.address == ("127.0.0.1", 9001)
    assert settings.sources["model"] == "file"
    assert settings.sources["system_prompt"] == "default"

    env = {
        "GREENROOM_MODEL": "env-model",
        "GREENROOM_MAX_SESSIONS": "6",
        "GREENROOM_PORT": "9002",
        "OPENAI_API_KEY": KEY,
    }
    settings = load_settings(bare, env)
    config = settings.config()
    assert config.model == "env-model" and config.limits.max_sessions == 6
    assert config.api_key == KEY
    assert settings.sources["api_key"] == "env OPENAI_API_KEY"
    assert settings.address == ("127.0.0.1", 9002)

    flags = parser.parse_args(
        ["serve", "--config-dir", str(directory), "--model", "flag-model", "--port", "0",
         "--max-sessions", "8", "--provider", "simulated"]
    )  # fmt: skip
    settings = load_settings(flags, {**env, "GREENROOM_API_KEY": "sk-greenroom-wins-0000"})
    config = settings.config()
    assert (config.model, config.limits.max_sessions, config.provider) == (
        "flag-model", 8, "simulated",
    )  # fmt: skip
    assert config.api_key == "sk-greenroom-wins-0000"
    assert settings.sources["model"] == "flag --model"
    assert settings.sources["base_url"] == "file"
    assert settings.address == ("127.0.0.1", 0)


def test_the_key_is_never_in_a_repr() -> None:
    config = Config(api_key=KEY)
    assert KEY not in repr(config)
    settings = resolve(file=None, env={"GREENROOM_API_KEY": KEY}, flags={})
    assert KEY not in repr(settings)


def test_mask() -> None:
    assert mask(KEY) == "...1234"
    assert mask("short-key") == "***"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("modle = 'x'\n", "unknown setting 'modle' (did you mean 'model'?)"),
        ("[limits]\nmax_session = 3\n", "unknown setting 'limits.max_session'"),
        ("[server]\nport = 1\n", "unknown setting 'server'"),
        ("max_steps = 'ten'\n", "bad max_steps 'ten': give a whole number from 1 up"),
        ("max_steps = true\n", "bad max_steps True"),
        ("port = 70000\n", "bad port 70000: give a whole number from 0 to 65535"),
        ("provider = 'claude'\n", "bad provider 'claude': give one of simulated, openai"),
        ("flush_interval = 0\n", "bad flush_interval 0"),
        ("model = 3\n", "bad model 3: give a string"),
        ("api_key = 3\n", "bad api_key ***"),
        ("model = \n", "not valid TOML"),
        ("data_dir = '~no-such-user-here/x'\n", "bad data_dir"),
    ],
)
def test_bad_files(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SettingsError) as caught:
        load_file(path)
    assert str(path) in caught.value.message and message in caught.value.message


def test_a_file_nested_past_the_parser_is_named(tmp_path: Path) -> None:
    """Arrays nested deeper than Python's recursion limit (its default here: a test run may
    have raised it) are a settings error, not a traceback."""
    path = write(tmp_path, "extra_body = " + "[" * 5000 + "]" * 5000 + "\n")
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        with pytest.raises(SettingsError, match="not valid TOML: nested too deeply"):
            load_file(path)
    finally:
        sys.setrecursionlimit(limit)


def test_a_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    path.write_bytes("model = 'café'\n".encode("latin-1"))
    with pytest.raises(SettingsError, match="not valid TOML: not UTF-8 text"):
        load_file(path)


def test_a_missing_file_is_no_settings(tmp_path: Path) -> None:
    assert load_file(tmp_path / "config.toml") == {}


def test_bad_environment_value(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="GREENROOM_MAX_STEPS: bad max_steps 'lots'"):
        resolve(file=None, env={"GREENROOM_MAX_STEPS": "lots"}, flags={})
    for name, value in (
        ("GREENROOM_DATA_DIR", "~no-such-user-here/x"),
        ("GREENROOM_DATA_DIR", "a\0b"),
        ("GREENROOM_EXTRA_BODY", "[" * 5000),
    ):
        with pytest.raises(SettingsError, match=f"{name}: bad "):
            resolve(file=None, env={name: value}, flags={})


def test_bad_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, "colour = 'green'\n")
    for command in ("config", "serve"):
        assert cli.main([command, "--config-dir", str(tmp_path)]) == 2
        assert "unknown setting 'colour'" in capsys.readouterr().err


def test_bad_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["serve", "--max-sessions", "0"])
    assert exited.value.code == 2
    assert "give a whole number from 1 up" in capsys.readouterr().err


def test_config_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("GREENROOM_API_KEY", "OPENAI_API_KEY", "GREENROOM_MODEL", "GREENROOM_PORT"):
        monkeypatch.delenv(name, raising=False)
    path = write(tmp_path, 'api_key = "' + KEY + '"\n' + FILE)
    monkeypatch.setenv("GREENROOM_MODEL", "env-model")
    assert cli.main(["config", "--config-dir", str(tmp_path), "--port", "0"]) == 0
    out = capsys.readouterr().out
    assert KEY not in out
    assert f"# file: {path}\n" in out
    assert 'api_key = "...1234"  # file' in out
    assert "GREENROOM_API_KEY than in the file" in out
    assert 'model = "env-model"  # env GREENROOM_MODEL' in out
    assert 'base_url = "http://file.example/v1"  # file' in out
    assert "port = 0  # flag --port" in out
    assert "max_steps = 7  # file" in out
    assert "# system_prompt is not set  # default" in out
    # The projects folder in effect, not "not set".
    data_dir = json.dumps(str(default_data_dir() / "projects"))
    assert f"projects_dir = {data_dir}  # default: inside data_dir" in out
    assert "[limits]\nmax_sessions = 5  # file" in out
    assert "tokens_per_second = inf  # file" in out

    assert cli.main(["config", "--config-dir", str(tmp_path), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["api_key"] == {"value": "...1234", "source": "file"}
    assert shown["limits.max_concurrent_turns"] == {"value": 3, "source": "file"}
    assert shown["projects_dir"] == {
        "value": str(default_data_dir() / "projects"),
        "source": "default: inside data_dir",
    }
    assert shown["simulated.tokens_per_second"] == {"value": "inf", "source": "file"}


def test_make_provider_openai() -> None:
    with pytest.raises(InvalidArgument, match="needs a model"):
        make_provider(Config(provider="openai"))
    provider = make_provider(Config(provider="openai", model="gpt-test", api_key=KEY))
    assert isinstance(provider, OpenAIProvider)
    assert provider.name == "openai" and provider.model == "gpt-test"
    assert "https://api.openai.com/v1" in repr(provider) and KEY not in repr(provider)
    local = make_provider(Config(provider="openai", model="m", base_url="http://127.0.0.1:1/v1"))
    assert "127.0.0.1:1" in repr(local)
    with pytest.raises(InvalidArgument, match="unknown provider"):
        make_provider(Config(provider="nope"))


def test_tool_policy_from_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[tool_policy]\ndelete_file = "allow"\n"mcp__github__*" = "ask"\n')
    settings = resolve(file=path, env={}, flags={})
    policy = settings.config().tool_policy
    assert policy.decide("delete_file") == "allow"
    assert policy.decide("mcp__github__create_issue") == "ask"
    assert policy.decide("write_file") == "allow"
    shown = 'tool_policy = { "delete_file" = "allow", "mcp__github__*" = "ask" }  # file'
    assert shown in render(settings)
    assert resolve(file=None, env={}, flags={}).config().tool_policy.decide("delete_file") == "ask"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[tool_policy]\nread_file = "sometimes"\n', "bad decision 'sometimes' for 'read_file'"),
        ('[tool_policy]\n"bad name!" = "ask"\n', "bad tool name 'bad name!'"),
        ('tool_policy = "ask"\n', "tool_policy: give a table of tool names"),
    ],
)
def test_bad_tool_policies(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SettingsError) as caught:
        load_file(path)
    assert str(path) in caught.value.message and message in caught.value.message


def test_cluster_settings_from_file_environment_and_flags(tmp_path: Path) -> None:
    directory = tmp_path / "cfg"
    write(directory, 'database_url = "postgresql://gr:secret@db/greenroom"\nlease_seconds = 4\n')
    parser = make_parser()
    args = parser.parse_args(["serve", "--config-dir", str(directory), "--node-id", "a"])
    settings = load_settings(args, {"GREENROOM_BUS_URL": "redis://:hush@bus:6379/0"})
    cluster = settings.config().cluster
    assert cluster is not None
    assert (cluster.database_url, cluster.bus_url) == (
        "postgresql://gr:secret@db/greenroom", "redis://:hush@bus:6379/0",
    )  # fmt: skip
    assert (cluster.node_id, cluster.lease_seconds) == ("a", 4.0)
    # Shown without the passwords, in `greenroom config` and in a repr.
    shown = render(settings) + repr(cluster)
    assert "secret" not in shown and "hush" not in shown
    assert "postgresql://gr:***@db/greenroom" in shown


def test_one_engine_alone_is_no_cluster(tmp_path: Path) -> None:
    parser = make_parser()
    args = parser.parse_args(["serve", "--config-dir", str(tmp_path), "--bus-url", "redis://b"])
    with pytest.raises(SettingsError, match="database_url is not set"):
        load_settings(args, {}).config()
    alone = parser.parse_args(["serve", "--config-dir", str(tmp_path)])
    assert load_settings(alone, {}).config().cluster is None
