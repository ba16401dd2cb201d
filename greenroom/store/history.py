"""Per-project chat history files: ``.ai/history/<name>.jsonl``.

One OpenAI chat message per line, compact JSON, the format Shakespeare writes, so that either
tool reads the other's history. greenroom adds two keys to an assistant message:
``"stopped": true`` when its generation was cut short, and ``thinking`` (Anthropic's thinking
blocks, in Anthropic's shape) when the model thought before it. Files are only ever appended
to (through :func:`greenroom.store.atomic.append_lines`), never rewritten.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast, get_args

from greenroom.protocol.chat import (
    Message,
    Role,
    ToolCall,
    message_to_json,
    thinking_from_json,
)
from greenroom.protocol.errors import GreenroomError, InvalidArgument
from greenroom.store import atomic

_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_ROLES: frozenset[str] = frozenset(get_args(Role))
_SUFFIX = ".jsonl"


class CorruptHistory(GreenroomError):
    """A history file or line is not a list of chat messages.

    ``line`` is the 1-based line number when the problem is in a file, else None.
    """

    def __init__(self, message: str, *, path: Path | None = None, line: int | None = None):
        super().__init__(message)
        self.path = path
        self.line = line


def history_name(now: float, rng: random.Random) -> str:
    """A history file name: UTC time plus three random base-36 characters, e.g.
    ``2026-11-26T11-07-00Z-x3k`` (sortable by time; the suffix keeps same-second chats apart)."""
    stamp = time.strftime("%Y-%m-%dT%H-%M-%SZ", time.gmtime(now))
    suffix = "".join(rng.choice(_BASE36) for _ in range(3))
    return f"{stamp}-{suffix}"


def history_folder(project_dir: Path) -> Path:
    """The folder that holds a project's history files."""
    return project_dir / ".ai" / "history"


def history_path(project_dir: Path, name: str) -> Path:
    """The file of history ``name`` in a project; the name must be one plain path component."""
    if not name or name.startswith(".") or "/" in name or "\\" in name or "\0" in name:
        raise InvalidArgument(f"invalid history name {name!r}")
    return history_folder(project_dir) / f"{name}{_SUFFIX}"


def newest_history(project_dir: Path) -> str | None:
    """The name of the project's newest history (names start with a UTC time), or None."""
    try:
        with os.scandir(history_folder(project_dir)) as entries:
            names = [
                entry.name[: -len(_SUFFIX)]
                for entry in entries
                if entry.name.endswith(_SUFFIX)
                and len(entry.name) > len(_SUFFIX)
                and not entry.name.startswith(".")
                and entry.is_file()
            ]
    except (FileNotFoundError, NotADirectoryError):
        return None
    return max(names, default=None)


def message_from_json(obj: object) -> Message:
    """Read one message in the OpenAI shape, tolerantly: unknown keys are ignored.

    ``content`` may be missing (None), a string, or a list of content parts whose text parts
    are joined with newlines (other parts, images say, are dropped). The role ``developer``
    (OpenAI's newer name) is read as ``system``. Raises :class:`CorruptHistory` for anything
    that is not a message.
    """
    if not isinstance(obj, dict):
        raise CorruptHistory(f"a message must be a JSON object, not {_kind(obj)}")
    role = obj.get("role")
    if role == "developer":
        role = "system"
    if not isinstance(role, str) or role not in _ROLES:
        raise CorruptHistory(f"invalid message role {role!r}")
    tool_call_id = obj.get("tool_call_id")
    if tool_call_id is not None and not isinstance(tool_call_id, str):
        raise CorruptHistory(f"tool_call_id must be a string, not {_kind(tool_call_id)}")
    return Message(
        role=cast(Role, role),
        content=_content(obj.get("content")),
        tool_calls=_tool_calls(obj.get("tool_calls")),
        tool_call_id=tool_call_id,
        stopped=obj.get("stopped") is True,
        thinking=thinking_from_json(obj.get("thinking")),
    )


def encode_lines(messages: Iterable[Message]) -> bytes:
    """The history lines of ``messages``: compact JSON, each line ending with a newline."""
    return b"".join(_encode_line(message_to_json(message)) for message in messages)


def append_histories(appends: Mapping[Path, Sequence[Message]]) -> None:
    """Append messages to history files, a whole batch at once (see atomic.append_lines).

    A last line cut short by a crash is dropped before appending, and a whole last message
    that merely lacks its newline (as other tools may write) is kept, so that the file stays
    readable line by line.
    """
    atomic.append_lines(
        {path: encode_lines(messages) for path, messages in appends.items() if messages},
        keep_tail=_is_message_line,
    )


def encode_appends(appends: Mapping[Path, Sequence[Message]]) -> dict[Path, bytes]:
    """The bytes to append to each history file (for atomic.write_batch, with
    ``keep_tail=is_message_line``)."""
    return {path: encode_lines(messages) for path, messages in appends.items() if messages}


def is_message_line(tail: bytes) -> bool:
    """Whether an unterminated last line is a whole message (kept) or a torn one (cut)."""
    return _is_message_line(tail)


def read_history(path: Path, *, limit: int | None = None) -> list[Message]:
    """Read a history file (at most its first ``limit`` messages when given).

    An unterminated last line that is not a whole message (an append cut short by a crash) is
    ignored; an unterminated last line that is a whole message is read (other tools may not
    end the file with a newline). A bad line anywhere else raises :class:`CorruptHistory`
    with its line number. Blank lines are skipped.
    """
    messages: list[Message] = []
    if limit is not None and limit <= 0:
        return messages
    with open(path, "rb") as file:
        for number, raw in enumerate(file, start=1):
            if not raw.strip():
                continue
            terminated = raw.endswith(b"\n")
            try:
                message = message_from_json(json.loads(raw))
            except (ValueError, RecursionError, CorruptHistory) as exc:
                if not terminated:
                    break  # a torn last line
                reason = exc.message if isinstance(exc, CorruptHistory) else "not valid JSON"
                raise CorruptHistory(
                    f"{path.name} line {number}: {reason}", path=path, line=number
                ) from exc
            messages.append(message)
            if limit is not None and len(messages) >= limit:
                break
    return messages


def cut_history(path: Path, count: int) -> list[Message]:
    """Read the first ``count`` messages of a history file and cut the file after them.

    For recovery from the journal: a flush that appended lines and was killed before its
    snapshots were in place left lines the snapshot does not count; the journal's events are
    then appended again from where the snapshot stands, each line once. Missing file: none.
    """
    if not path.exists():
        return []
    messages = read_history(path, limit=count)
    end = 0
    with open(path, "rb") as file:
        seen = 0
        while seen < len(messages):
            raw = file.readline()
            if not raw:
                break
            end += len(raw)
            if raw.strip():
                seen += 1
    if path.stat().st_size > end:
        os.truncate(path, end)
    return messages


def _encode_line(obj: dict[str, Any]) -> bytes:
    try:
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
        return text.encode("utf-8") + b"\n"
    except UnicodeEncodeError:
        # A lone surrogate (from a model's broken JSON escape, say) has no UTF-8 form; the
        # escaped form is still valid JSON and reads back the same.
        return json.dumps(obj, separators=(",", ":")).encode("ascii") + b"\n"


def _is_message_line(raw: bytes) -> bool:
    try:
        message_from_json(json.loads(raw))
    except (ValueError, RecursionError, CorruptHistory):
        return False
    return True


def _content(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = [
            part["text"]
            for part in value
            if isinstance(part, dict)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
        ]
        return "\n".join(texts)
    raise CorruptHistory(f"content must be a string, a list of parts or null, not {_kind(value)}")


def _tool_calls(value: object) -> tuple[ToolCall, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise CorruptHistory(f"tool_calls must be a list, not {_kind(value)}")
    calls: list[ToolCall] = []
    for item in value:
        function = item.get("function") if isinstance(item, dict) else None
        if not isinstance(item, dict) or not isinstance(function, dict):
            raise CorruptHistory("a tool call must be an object with a function object")
        call_id, name, arguments = item.get("id"), function.get("name"), function.get("arguments")
        if not isinstance(call_id, str) or not isinstance(name, str):
            raise CorruptHistory("a tool call needs a string id and function name")
        if arguments is None:
            arguments = ""
        elif not isinstance(arguments, str):
            # Some providers send the arguments as an object instead of its JSON text.
            arguments = json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))
        calls.append(ToolCall(id=call_id, name=name, arguments=arguments))
    return tuple(calls) or None


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__
