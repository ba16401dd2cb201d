"""Tool policies: which tool calls run at once (``allow``), wait for a user (``ask``) or are
refused (``deny``).

A :class:`ToolPolicy` maps tool names, or patterns of them, to a decision. Three of them apply
to a session's call. The global one (config.toml's ``[tool_policy]`` table, the operator's)
decides, by the first of these to match the tool's name:

1. an entry that names the tool exactly;
2. a pattern (``*`` matches any run of characters, ``?`` one character), the longest first, as
   the more specific (``mcp__github__delete_*`` before ``mcp__github__*`` before ``*``);
3. the default: ``ask`` for ``delete_file`` and for MCP tools that their server marks
   destructive (``destructiveHint: true`` among the tool's annotations), ``allow`` for the rest.

Then the session's preset's ``tools`` table and the project's ``.ai/tools.toml`` (the same
table) may make that decision stricter, by their entry for the tool found the same way, never
looser (:func:`tightened`): both may come from whoever could write the project folder. The
project's file lives in ``.ai/``, which the file tools may read but never write: a model
cannot loosen its own policy. Parsing is pure; :func:`read_project_policy` touches the disk, so
call it from a worker thread.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Final, Literal, cast

import attrs

from greenroom.protocol.errors import InvalidArgument

Decision = Literal["allow", "ask", "deny"]
DECISIONS: Final[tuple[Decision, ...]] = ("allow", "ask", "deny")
TABLE: Final = "tool_policy"
PROJECT_POLICY_FILE: Final = ".ai/tools.toml"
"""The project's policy, relative to its folder (a ``[tool_policy]`` table)."""
MAX_POLICY_FILE_BYTES: Final = 64 * 1024
MAX_RULES: Final = 1000
ASK_BY_DEFAULT: Final = frozenset({"delete_file"})
"""The built-in tools that ask unless a policy says otherwise."""

_KEY = re.compile(r"[A-Za-z0-9_.*?-]{1,128}")


class PolicyError(InvalidArgument):
    """A policy table is malformed; the message says where and why."""


@attrs.frozen(kw_only=True)
class ToolPolicy:
    """Decisions by tool name or pattern (see the module docstring for how one is found)."""

    rules: Mapping[str, Decision] = attrs.field(factory=dict)

    def decide(self, tool: str, *, destructive: bool = False) -> Decision:
        """The decision for a call of ``tool``; ``destructive`` when its MCP server marks it
        so."""
        found = self.match(tool)
        if found is not None:
            return found
        return "ask" if destructive or tool in ASK_BY_DEFAULT else "allow"

    def match(self, tool: str) -> Decision | None:
        """The decision of the entry that applies to ``tool``, None when none does."""
        exact = self.rules.get(tool)
        if exact is not None:
            return exact
        patterns = sorted(
            (key for key in self.rules if _is_pattern(key)), key=lambda key: (-len(key), key)
        )
        for pattern in patterns:
            if fnmatch.fnmatchcase(tool, pattern):
                return self.rules[pattern]
        return None

    def stricter(self) -> ToolPolicy:
        """This policy with every ``allow`` made ``ask`` (defaults included): what applies
        while a project's policy file cannot be read, so that nothing it denies or asks about
        runs unasked."""
        asked: dict[str, Decision] = {
            key: "ask" if value == "allow" else value for key, value in self.rules.items()
        }
        asked.setdefault("*", "ask")
        return ToolPolicy(rules=asked)

    def describe(self) -> dict[str, str]:
        """The entries, as ``greenroom config`` shows them."""
        return dict(self.rules)


def _is_pattern(key: str) -> bool:
    return "*" in key or "?" in key


def strictest(*decisions: Decision) -> Decision:
    """``deny`` over ``ask`` over ``allow``."""
    return max(decisions, key=DECISIONS.index)


def tightened(decision: Decision, tool: str, *policies: ToolPolicy) -> Decision:
    """``decision``, made stricter by the entries of ``policies`` that apply to ``tool``; they
    never make it looser (a preset's table and a project's file may come from anyone who
    could write a project folder, a cloned repository for one)."""
    for policy in policies:
        found = policy.match(tool)
        if found is not None:
            decision = strictest(decision, found)
    return decision


def parse_policy(raw: object, *, where: str) -> ToolPolicy:
    """A policy from a TOML table of ``name = "allow" | "ask" | "deny"``; PolicyError naming
    ``where`` when it is not one."""
    if not isinstance(raw, dict):
        raise PolicyError(f"{where}: give a table of tool names to allow, ask or deny")
    if len(raw) > MAX_RULES:
        raise PolicyError(f"{where}: more than {MAX_RULES} entries")
    rules: dict[str, Decision] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise PolicyError(
                f"{where}: bad tool name {str(key)[:60]!r}: use 1 to 128 of A-Z a-z 0-9 _ . - "
                "and the wildcards * and ?"
            )
        if value not in DECISIONS:
            raise PolicyError(
                f"{where}: bad decision {str(value)[:40]!r} for {key!r}: give allow, ask or deny"
            )
        rules[key] = cast(Decision, value)
    return ToolPolicy(rules=rules)


def read_project_policy(project_dir: Path) -> ToolPolicy:
    """The project's ``.ai/tools.toml`` (an empty policy when there is none); PolicyError when
    it cannot be read or is malformed. Blocking: call it from a worker thread."""
    path = project_dir / PROJECT_POLICY_FILE
    try:
        with path.open("rb") as file:
            data = file.read(MAX_POLICY_FILE_BYTES + 1)
    except FileNotFoundError:
        return ToolPolicy()
    except OSError as error:
        raise PolicyError(f"{PROJECT_POLICY_FILE}: cannot read it: {error.strerror}") from None
    if len(data) > MAX_POLICY_FILE_BYTES:
        raise PolicyError(f"{PROJECT_POLICY_FILE}: larger than {MAX_POLICY_FILE_BYTES} bytes")
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise PolicyError(f"{PROJECT_POLICY_FILE}: not valid TOML: {error}") from None
    unknown = sorted(set(document) - {TABLE})
    if unknown:
        raise PolicyError(
            f"{PROJECT_POLICY_FILE}: unknown key {unknown[0]!r}: the file holds a "
            f"[{TABLE}] table"
        )
    if TABLE not in document:
        return ToolPolicy()
    return parse_policy(document[TABLE], where=f"{PROJECT_POLICY_FILE} [{TABLE}]")
