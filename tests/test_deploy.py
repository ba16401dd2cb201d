"""deploy/: the Dockerfile and the systemd unit cannot run here (no Docker, no systemd), so
this keeps them exact against the code: every variable they set is one greenroom reads, with
a value it accepts; every command line parses; every file they copy exists."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from greenroom.cli.arguments import make_parser
from greenroom.cli.serve import SHUTDOWN_GRACE
from greenroom.settings import SETTINGS, resolve
from greenroom.transport.server import OPERATIONS_PATHS

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "deploy" / "Dockerfile").read_text()
UNIT = (ROOT / "deploy" / "greenroom.service").read_text()
READ_BY_THE_CLI = {"GREENROOM_CONFIG_DIR", "GREENROOM_LOG_FORMAT", "GREENROOM_TOKEN"}
KNOWN = {name for setting in SETTINGS for name in setting.env} | READ_BY_THE_CLI


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")))  # fmt: skip
    found = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def _docker_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in _instructions(DOCKERFILE):
        if word == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(rest))
    return env


def test_the_dockerfile_sets_only_settings_greenroom_reads_with_good_values() -> None:
    env = _docker_env()
    ours = {name: value for name, value in env.items() if name.startswith("GREENROOM_")}
    assert set(ours) <= KNOWN
    settings = resolve(file=None, env=ours, flags={})
    assert settings.address == ("0.0.0.0", 8765)
    assert str(settings.values["data_dir"]) == ours["GREENROOM_DATA_DIR"]
    volumes = next(rest for word, rest in _instructions(DOCKERFILE) if word == "VOLUME")
    for folder in (ours["GREENROOM_DATA_DIR"], ours["GREENROOM_PROJECTS_DIR"]):
        assert f'"{folder}"' in volumes
    assert "GREENROOM_TOKEN" not in env  # a secret is given at run time, never baked in


def test_the_dockerfile_runs_greenroom_serve_as_a_user_with_a_health_check() -> None:
    instructions = _instructions(DOCKERFILE)
    user = [rest for word, rest in instructions if word == "USER"]
    assert user and user[-1].split(":")[0] not in ("root", "0")
    entry = [rest for word, rest in instructions if word == "ENTRYPOINT"][-1]
    command = [rest for word, rest in instructions if word == "CMD"][-1]
    argv = [*json.loads(entry)[1:], *json.loads(command)]
    assert make_parser().parse_args(argv).command == "serve"
    health = next(rest for word, rest in instructions if word == "HEALTHCHECK")
    path = re.search(r"http://127\.0\.0\.1:8765(/\w+)", health)
    assert path is not None and path.group(1) in OPERATIONS_PATHS
    for word, rest in instructions:
        if word == "COPY" and "--from" not in rest:
            for source in rest.split()[:-1]:
                assert (ROOT / source).exists(), source


def test_the_systemd_unit_sets_only_settings_greenroom_reads() -> None:
    lines = [line.strip() for line in UNIT.splitlines() if line.strip() and line[0] != "#"]
    pairs = [line.split("=", 1) for line in lines if "=" in line]
    env = dict(value.split("=", 1) for key, value in pairs if key == "Environment")
    assert set(env) <= KNOWN
    resolve(file=None, env=env, flags={})  # raises on a bad value
    exec_start = shlex.split(next(value for key, value in pairs if key == "ExecStart"))
    args = make_parser().parse_args(exec_start[1:])
    assert (args.command, args.host, args.port) == ("serve", "127.0.0.1", 8765)
    stop = int(next(value for key, value in pairs if key == "TimeoutStopSec"))
    assert stop > SHUTDOWN_GRACE  # systemd must not kill a graceful stop
    assert ("User", "greenroom") in [tuple(pair) for pair in pairs]
    state = next(value for key, value in pairs if key == "StateDirectory")
    assert env["GREENROOM_DATA_DIR"].startswith(f"/var/lib/{state}/")
    assert env["GREENROOM_CONFIG_DIR"].startswith(f"/var/lib/{state}/")  # writable there
