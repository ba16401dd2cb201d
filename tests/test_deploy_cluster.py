"""deploy/cluster/: the compose file and HAProxy's config cannot run here (no Docker), so this
keeps them exact against the code, as tests/test_deploy.py does the Dockerfile: every variable
the nodes get is one greenroom reads, with a value it accepts; every command line parses; the
files they mount and build from exist; the load balancer's backends are the nodes, on their
port, checked on an operations path.

The compose file is read by :func:`read_yaml`, a reader of the plain subset of YAML it is
written in (no YAML library is a dependency): it refuses anything outside that subset, so the
file stays simple.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import pytest

from greenroom.cli.arguments import make_parser
from greenroom.cli.serve import SHUTDOWN_GRACE, token_from_env
from greenroom.settings import resolve
from greenroom.transport.server import OPERATIONS_PATHS, ServerSettings
from tests.test_deploy import KNOWN, _docker_env, _instructions

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "deploy" / "cluster"
NODES = ("node-a", "node-b", "node-c")
SAMPLES = {"GREENROOM_TOKEN": "t" * 43, "POSTGRES_PASSWORD": "p" * 32}
"""What the operator exports before `docker compose up` (docs/cluster.md)."""


# -- a reader of plain YAML -------------------------------------------------------------------


class NotPlainYaml(ValueError):
    pass


def read_yaml(text: str) -> Any:
    """Block mappings, block sequences and scalars (plain, double-quoted, or a JSON flow
    sequence), with comments; anything else (anchors, aliases, merge keys, flow mappings,
    block scalars, single quotes) raises NotPlainYaml."""
    lines = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if line.strip():
            if "\t" in line[: len(line) - len(line.lstrip())]:
                raise NotPlainYaml(f"line {number}: a tab in the indentation")
            lines.append((number, len(line) - len(line.lstrip(" ")), line.strip()))
    value, end = _block(lines, 0, 0)
    if end != len(lines):
        raise NotPlainYaml(f"line {lines[end][0]}: unexpected indentation")
    return value


def _block(lines: list[tuple[int, int, str]], start: int, indent: int) -> tuple[Any, int]:
    if start >= len(lines) or lines[start][1] < indent:
        return None, start
    indent = lines[start][1]
    is_list = lines[start][2].startswith("- ")
    out: Any = [] if is_list else {}
    i = start
    while i < len(lines) and lines[i][1] == indent:
        number, _, text = lines[i]
        if is_list:
            if not text.startswith("- "):
                raise NotPlainYaml(f"line {number}: a mapping key among list items")
            out.append(_scalar(text[2:].strip(), number))
            i += 1
            continue
        key, colon, rest = text.partition(":")
        if not colon or (rest and not rest.startswith(" ")) or not re.fullmatch(r"[\w.-]+", key):
            raise NotPlainYaml(f"line {number}: not a plain `key: value`")
        if key in out:
            raise NotPlainYaml(f"line {number}: {key} twice")
        rest = rest.strip()
        if rest:
            out[key] = _scalar(rest, number)
            i += 1
        else:
            out[key], i = _block(lines, i + 1, indent + 1)
    if i < len(lines) and lines[i][1] > indent:
        raise NotPlainYaml(f"line {lines[i][0]}: unexpected indentation")
    return out, i


def _scalar(text: str, number: int) -> Any:
    if text[0] in "&*!{|>'" or text.startswith("<<"):
        raise NotPlainYaml(f"line {number}: {text!r} is outside plain YAML")
    if text[0] in '"[':
        try:
            return json.loads(text)
        except ValueError:
            raise NotPlainYaml(f"line {number}: {text!r} is not JSON-quoted") from None
    if ": " in text or text.endswith(":"):
        raise NotPlainYaml(f"line {number}: a nested mapping on one line")
    return text


def test_the_reader_reads_plain_yaml_and_refuses_the_rest() -> None:
    text = 'a:\n  b: 1  # note\n  c:\n    - "x y"\n    - z\nd: ["e", "f"]\ng: h:i\n'
    assert read_yaml(text) == {"a": {"b": "1", "c": ["x y", "z"]}, "d": ["e", "f"], "g": "h:i"}
    for bad in ("a: &x 1\n", "a: *x\n", "a:\n  <<: *x\n", "a: {b: 1}\n", "a: |\n  b\n",
                "a: 1\n   b: 2\n", "a: 1\na: 2\n", "a: b: c\n", "- a\nb: c\n"):  # fmt: skip
        with pytest.raises(NotPlainYaml):
            read_yaml(bad)


# -- the compose file -------------------------------------------------------------------------

COMPOSE = read_yaml((CLUSTER / "compose.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
HAPROXY = (CLUSTER / "haproxy.cfg").read_text()


def _interpolated(value: str) -> str:
    """``value`` as compose makes it, with the operator's variables set to SAMPLES."""

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in SAMPLES, f"{name} is not among the variables docs/cluster.md exports"
        return SAMPLES[name]

    done = re.sub(r"\$\{(\w+)(?::\?[^}]*)?\}", one, value)
    assert "$" not in done, value
    return done


def _node_env(service: str) -> dict[str, str]:
    """The environment of a node's container: the image's, then the compose file's."""
    ours = {k: _interpolated(v) for k, v in SERVICES[service]["environment"].items()}
    image = {k: v for k, v in _docker_env().items() if k.startswith("GREENROOM_")}
    return {**image, **ours}


def test_the_compose_file_has_the_engines_three_nodes_and_a_load_balancer() -> None:
    assert set(SERVICES) == {"db", "bus", *NODES, "lb"}
    declared = set(COMPOSE["volumes"])
    for service in SERVICES.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (CLUSTER / source).exists(), source  # a bind mount's file is here
            else:
                assert source in declared, source


@pytest.mark.parametrize("service", NODES)
def test_each_node_is_the_image_with_the_cluster_extra(service: str) -> None:
    build = SERVICES[service]["build"]
    context = (CLUSTER / build["context"]).resolve()
    assert context == ROOT
    dockerfile = context / build["dockerfile"]
    assert dockerfile == ROOT / "deploy" / "Dockerfile"
    extras = build["args"]["EXTRAS"].split(",")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "cluster" in extras
    assert set(extras) <= set(pyproject["project"]["optional-dependencies"])
    # The Dockerfile takes EXTRAS, and builds the image it always built without it.
    args = [rest for word, rest in _instructions(dockerfile.read_text()) if word == "ARG"]
    assert 'EXTRAS=""' in args
    # What the node runs: the image's entrypoint with the compose file's command.
    entry = next(rest for word, rest in _instructions(dockerfile.read_text())
                 if word == "ENTRYPOINT")  # fmt: skip
    assert json.loads(entry) == ["greenroom"]
    assert make_parser().parse_args(SERVICES[service]["command"]).command == "serve"
    grace = float(SERVICES[service]["stop_grace_period"].removesuffix("s"))
    assert grace > SHUTDOWN_GRACE  # docker must not kill a graceful stop


@pytest.mark.parametrize("service", NODES)
def test_each_node_sets_only_settings_greenroom_reads_with_good_values(service: str) -> None:
    env = _node_env(service)
    assert set(SERVICES[service]["environment"]) <= KNOWN
    settings = resolve(file=None, env=env, flags={})
    cluster = settings.config().cluster
    assert cluster is not None  # both engines given: this server is a node
    assert cluster.node_id == service.removeprefix("node-")
    assert token_from_env(env) == SAMPLES["GREENROOM_TOKEN"]  # accepted as the shared token
    assert settings.address == ("0.0.0.0", 8765)
    # The engines are the compose file's services, and the database is the one it makes.
    database, bus = urlsplit(cluster.database_url), urlsplit(cluster.bus_url)
    assert (database.hostname, bus.hostname) == ("db", "bus")
    db_env = {k: _interpolated(v) for k, v in SERVICES["db"]["environment"].items()}
    assert database.username == db_env["POSTGRES_USER"]
    assert database.password == db_env["POSTGRES_PASSWORD"]
    assert database.path == "/" + db_env["POSTGRES_DB"]
    assert {"db", "bus"} <= set(SERVICES[service]["depends_on"])


def test_the_nodes_share_the_projects_folder_and_keep_their_own_data() -> None:
    mounts: dict[str, dict[str, str]] = {}
    for service in NODES:
        env = _node_env(service)
        values = resolve(file=None, env=env, flags={}).values
        by_target = {v.split(":")[1]: v.split(":")[0] for v in SERVICES[service]["volumes"]}
        mounts[service] = {
            "projects": by_target[str(values["projects_dir"])],
            "data": by_target[str(values["data_dir"])],
        }
    assert len({m["projects"] for m in mounts.values()}) == 1
    assert len({m["data"] for m in mounts.values()}) == len(NODES)
    ids = {_node_env(service)["GREENROOM_NODE_ID"] for service in NODES}
    assert len(ids) == len(NODES)


# -- the load balancer ------------------------------------------------------------------------


def _section(name: str) -> list[str]:
    """The lines of one section of haproxy.cfg (``backend nodes``), comments dropped."""
    lines, inside = [], False
    for raw in HAPROXY.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if line and not line[0].isspace():
            inside = line.strip() == name
        elif inside and line.strip():
            lines.append(line.strip())
    assert lines, name
    return lines


def test_the_load_balancer_sends_to_every_node_and_checks_readyz() -> None:
    lb = SERVICES["lb"]
    target = "/usr/local/etc/haproxy/haproxy.cfg"
    assert any(v.split(":")[:2] == ["./haproxy.cfg", target] for v in lb["volumes"])
    backend = _section("backend nodes")
    servers = {line.split()[1]: line.split()[2] for line in backend if line.startswith("server ")}
    port = resolve(file=None, env=_node_env(NODES[0]), flags={}).address[1]
    assert servers == {service: f"{service}:{port}" for service in NODES}
    assert set(lb["depends_on"]) == set(NODES)
    assert "option httpchk" in backend
    send = next(line for line in backend if line.startswith("http-check send"))
    uri = send.split(" uri ", 1)[1].split()[0]
    assert uri == "/readyz" and uri in OPERATIONS_PATHS
    assert "hdr Host localhost" in send  # passes a loopback node's Host check too
    assert "http-check expect status 200" in backend
    assert any(line.startswith("default-server") and " check" in line for line in backend)
    # The frontend's port is the one published on the host.
    bind = next(line for line in _section("frontend greenroom") if line.startswith("bind "))
    published = {p.rsplit(":", 1)[1] for p in lb["ports"]}
    assert bind.rsplit(":", 1)[1] in published
    # A quiet websocket outlives the nodes' pings.
    defaults = _section("defaults")
    tunnel = next(line for line in defaults if line.startswith("timeout tunnel"))
    assert "mode http" in defaults  # HTTP mode: /readyz checks, websocket upgrades passed on
    ping = attrs.fields(ServerSettings).ping_interval.default
    assert float(tunnel.split()[-1].removesuffix("s")) > ping


def test_the_docs_show_the_compose_file_in_use() -> None:
    docs = (ROOT / "docs" / "cluster.md").read_text()
    assert "docker compose -f deploy/cluster/compose.yaml up" in docs
    for name in SAMPLES:
        assert f"export {name}=" in docs
