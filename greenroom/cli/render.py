"""What the commands print: tables, JSON, short cells, ages and lifecycle lines.

Plain text on purpose: ``watch`` alone draws with ``rich``, when it is installed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Final

LIFECYCLE_LOGGED: Final = frozenset(
    {"sessionCreated", "loadingChanged", "sessionRestarted", "sessionFailed", "sessionDeleted"}
)


def print_err(text: str) -> None:
    """A line on stderr, flushed: status and errors never wait behind stdout."""
    print(text, file=sys.stderr, flush=True)


def print_json(value: object) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def short(value: object, limit: int) -> str:
    """``value`` as text of at most ``limit`` characters ("..." where it was cut)."""
    text = "" if value is None else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def ago(when: object, now: float) -> str:
    """How long before ``now`` a timestamp was, as "5m ago"; "-" for none."""
    if not isinstance(when, int | float):
        return "-"
    seconds = max(0, int(now - when))
    if seconds < 60:
        return f"{seconds}s ago"
    if seconds < 3600:
        return f"{seconds // 60}m ago"
    if seconds < 86400:
        return f"{seconds // 3600}h ago"
    return f"{seconds // 86400}d ago"


def format_table(rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell (the last one is not padded)."""
    if not rows:
        return ""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def sessions_table(summaries: Sequence[Mapping[str, Any]], now: float) -> str:
    """The ``greenroom sessions`` table."""
    rows = [["SESSION", "PROJECT", "STATUS", "MESSAGES", "LAST ACTIVITY", "PREVIEW"]]
    for s in sorted(summaries, key=lambda s: str(s.get("project"))):
        status = str(s.get("status"))
        approval = s.get("approval")
        if approval:
            status += f" (approve {approval.get('tool')}?)"
        if s.get("queued"):
            status += f" (+{len(s['queued'])} queued)"
        rows.append(
            [
                str(s.get("session")),
                str(s.get("project")),
                status,
                str(s.get("messageCount", 0)),
                ago(s.get("lastActivity"), now),
                short((s.get("preview") or "").replace("\n", " "), 50),
            ]
        )
    return format_table(rows)


def projects_table(projects: Sequence[Mapping[str, Any]]) -> str:
    """The ``greenroom projects`` table."""
    rows = [["PROJECT", "SESSION", "STATUS"]]
    for p in sorted(projects, key=lambda p: str(p.get("project"))):
        rows.append([str(p.get("project")), p.get("session") or "-", p.get("status") or "-"])
    return format_table(rows)


def presets_table(presets: Sequence[Mapping[str, Any]]) -> str:
    """The ``greenroom presets`` table."""
    rows = [["PRESET", "SOURCE", "MODEL", "DESCRIPTION"]]
    for p in presets:
        description = short((p.get("description") or "").replace("\n", " "), 60)
        rows.append([str(p.get("name")), str(p.get("source")), p.get("model") or "-", description])
    return format_table(rows)


def describe(event: Mapping[str, Any]) -> str | None:
    """The line of a session lifecycle event (``serve``'s log, ``watch`` in a pipe), or None
    for events not described."""
    name, data = event.get("event"), event.get("data") or {}
    if name not in LIFECYCLE_LOGGED:
        return None
    what: str
    if name == "sessionCreated":
        what = "created"
    elif name == "sessionDeleted":
        what = "deleted"
    elif name == "loadingChanged":
        if data.get("loading"):
            what = "turn started"
        else:
            what = f"turn {data.get('reason')}"
            if data.get("error"):
                what += f" ({data['error']})"
    elif name == "sessionRestarted":
        what = f"restarted ({data.get('reason')}, restart {data.get('restarts')})"
    else:
        what = f"failed: supervisor gave up ({data.get('reason')})"
    return f"session {event.get('session')} {event.get('project')}: {what}"
