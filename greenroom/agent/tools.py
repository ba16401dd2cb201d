"""The file tools a model may call, confined to one project folder.

:func:`resolve_in_project` is the single place that turns a path the model wrote into a host
path, and the only one that decides whether it stays inside the project. :func:`run_tool`
parses a call's JSON arguments, then does all of the call's disk work (confinement checks
included) in one ``trio.to_thread.run_sync`` call, so the event loop never blocks on the disk.

Decisions:

- Every failure is a :class:`~greenroom.protocol.errors.ToolError` whose message is meant for
  the model: it names paths as the model wrote them (relative to the project) and never shows
  the host path of the project folder; OS errors are reduced to their ``strerror``, which has
  no path in it.
- Paths are resolved with ``os.path.realpath``, which follows symbolic links and applies ``..``
  after them the way the OS does; the resolved path must stay under the resolved root. A path
  that leaves the root even lexically (``../x``, ``a/../../x``) is refused before that, so a
  path that goes out and comes back is refused too. The tools act on the resolved path, so the
  check and the use agree. (A link swapped between the check and the use could still escape; the
  tools cannot create links, so only someone with shell access to the project could do that.)
- ``.ai/`` at the top of the project is greenroom's (chat history): reading and listing it are
  allowed, writing, editing and deleting in it are refused, also through a link that leads there.
- ``read_file`` refuses files over :data:`MAX_FILE_BYTES` (1 MiB) and files that are not UTF-8;
  ``write_file`` refuses content over the same limit, so what a tool writes it can read back.
  Files are opened non-blocking and must be regular files (a FIFO would hang the thread).
- ``write_file`` writes in place (not temp-and-rename): it keeps the file's mode and links, and
  a model's file is not greenroom's state, which is what STYLE's atomic-write rule is about.
- ``list_files`` lists, recursively and in tree order, every entry under the folder, with paths
  relative to the project (so they can be passed straight to ``read_file``); folders end in
  ``/``. It does not descend into ``.git`` or ``.ai`` folders (they are listed, not expanded) or
  into linked folders. At most :data:`MAX_LIST_ENTRIES` lines, then ``... N more``.
- ``delete_file`` deletes files only; a symbolic link is removed itself, never its target.
- ``.mcp.json`` at the top of the project names programs that greenroom starts (MCP servers):
  the tools may read it but never write, edit or delete it, like ``.ai/``. That is defence in
  depth: what really guards it is that its servers start only once a client has approved the
  file's exact contents (see :mod:`greenroom.agent.mcp`), so a changed file stops them.
- ``search_files`` matches a Python regular expression against each line of the UTF-8 files
  under a folder (in tree order, with the walk rules of ``list_files``), and answers
  ``path:line: text`` lines. It skips files over :data:`MAX_FILE_BYTES` and files that are not
  UTF-8 text, cuts each shown line to :data:`MAX_SHOWN_LINE` characters, stops at
  :data:`MAX_SEARCH_RESULTS` matches and after :data:`SEARCH_BUDGET_SECONDS` of work (checked
  between lines, in the worker thread, against the process's monotonic clock: a CPU budget,
  not a turn's time). A pathological pattern can still take long on one line: Python's ``re``
  cannot be interrupted, and lines are cut to :data:`MAX_SEARCH_LINE` characters to bound it.
- ``glob`` matches a pattern against the paths under a folder (same walk): ``*`` and ``?``
  never cross a ``/``, ``**`` as a whole segment matches any number of folders, ``[...]`` is a
  character class. Paths are relative to the project; folders end in ``/``; at most
  :data:`MAX_LIST_ENTRIES` lines. Patterns are relative and may not contain ``..``.
- Arguments: an empty string means ``{}`` (some models send that for calls without arguments);
  unknown fields are ignored; the schemas' ``required`` fields must be present and be strings.
- This module parses JSON itself: the arguments are JSON text written by the model, not a wire
  frame or a snapshot, so the codec is not the place for it.

(One file of some 700 lines: every tool relies on the confinement rules above, and a reviewer
checks them against each tool in one read.)
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import trio

from greenroom.agent.provider import ToolSchema
from greenroom.protocol.errors import ToolError
from greenroom.store.reading import read_up_to

MAX_FILE_BYTES = 1024 * 1024
"""The largest file ``read_file`` and ``edit_file`` read, and the most ``write_file`` writes."""
MAX_PATH_CHARS = 4096
MAX_NAME_BYTES = 255
MAX_LIST_ENTRIES = 1000
MAX_LIST_SCAN = 100_000
"""``list_files`` stops walking after this many entries, so a huge tree cannot stall a thread."""
HISTORY_FOLDER = ".ai"
MCP_CONFIG_FILE = ".mcp.json"
"""The project's MCP server list (Claude Code's format); the tools may not change it."""
MAX_SEARCH_RESULTS = 200
MAX_SEARCH_LINE = 4096
"""``search_files`` matches at most this many characters of a line (see the module docs)."""
MAX_SHOWN_LINE = 300
MAX_PATTERN_CHARS = 1000
SEARCH_BUDGET_SECONDS = 10.0
_NOT_EXPANDED = frozenset({".ai", ".git"})
_SHOWN_CHARS = 200


def _schema(
    name: str, description: str, fields: dict[str, str], required: tuple[str, ...]
) -> ToolSchema:
    properties = {field: {"type": "string", "description": text} for field, text in fields.items()}
    return ToolSchema(
        name=name,
        description=description,
        parameters={
            "type": "object",
            "properties": properties,
            "required": list(required),
            "additionalProperties": False,
        },
    )


_PATH_FIELD = "Path of the file, relative to the project folder."

TOOLS: tuple[ToolSchema, ...] = (
    _schema(
        "read_file",
        "Read a UTF-8 text file of the project (at most 1 MiB) and return its content.",
        {"path": _PATH_FIELD},
        ("path",),
    ),
    _schema(
        "write_file",
        "Create or overwrite a text file of the project with the given content; "
        "missing parent folders are created.",
        {"path": _PATH_FIELD, "content": "The complete new content of the file."},
        ("path", "content"),
    ),
    _schema(
        "edit_file",
        "Replace one piece of text in a file of the project. `old` must occur exactly once in "
        "the file; include enough surrounding text to make it unique.",
        {
            "path": _PATH_FIELD,
            "old": "The exact text to replace; it must occur exactly once.",
            "new": "The text to put in its place.",
        },
        ("path", "old", "new"),
    ),
    _schema(
        "list_files",
        "List the files and folders under a folder of the project, recursively, one path per "
        "line relative to the project; folders end with '/'.",
        {"path": "Folder to list, relative to the project folder; '.' (the default) for all."},
        (),
    ),
    _schema(
        "delete_file",
        "Delete one file of the project (not a folder).",
        {"path": _PATH_FIELD},
        ("path",),
    ),
    _schema(
        "search_files",
        "Search the text files under a folder of the project for a regular expression (Python "
        "syntax), line by line; answers 'path:line: text' for each matching line, at most "
        f"{MAX_SEARCH_RESULTS}. Skips .git and .ai folders, binary files and files over 1 MiB.",
        {
            "pattern": "The regular expression to look for in each line.",
            "path": "Folder (or file) to search, relative to the project folder; '.' (the "
            "default) for all.",
            "include": "Only search files whose path matches this glob, e.g. '**/*.py'.",
        },
        ("pattern",),
    ),
    _schema(
        "glob",
        "Find the files and folders of the project whose path matches a glob pattern, e.g. "
        "'**/*.py' or 'docs/*.md'; '*' stays within one folder, '**' spans folders. One path "
        "per line relative to the project; folders end with '/'.",
        {
            "pattern": "The glob pattern, relative to the folder searched.",
            "path": "Folder to search from, relative to the project folder; '.' (the default).",
        },
        ("pattern",),
    ),
)
_SCHEMAS = {schema.name: schema for schema in TOOLS}


def _show(path: str) -> str:
    """The path as the model wrote it, quoted and shortened, for an error message."""
    if len(path) > _SHOWN_CHARS:
        path = path[:_SHOWN_CHARS] + "..."
    return repr(path)


def resolve_in_project(root: Path, path: str, *, for_write: bool = False) -> Path:
    """Return the real host path of ``path`` inside the project at ``root``, or raise ToolError.

    The one place that confines the model to the project: refuses empty, absolute, over-long
    and NUL-containing paths, paths that leave the project (by ``..`` or through a symbolic link)
    and, with ``for_write``, paths into greenroom's ``.ai/`` folder. Touches the disk (it
    resolves links), so call it from a worker thread.
    """
    if not path:
        raise ToolError("path is empty")
    if "\0" in path:
        raise ToolError(f"path {_show(path.replace(chr(0), '?'))} contains a NUL byte")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise ToolError(f"path {_show(path)} is not valid Unicode") from None
    if len(path) > MAX_PATH_CHARS:
        raise ToolError(f"path is too long ({len(path)} characters; the limit is {MAX_PATH_CHARS})")
    for name in path.split("/"):
        if len(name.encode("utf-8")) > MAX_NAME_BYTES:
            raise ToolError(f"path {_show(path)} has a name longer than {MAX_NAME_BYTES} bytes")
    if posixpath.isabs(path):
        # Not echoed: an absolute path may well name the project's place on the host.
        raise ToolError("the path is absolute; give a path relative to the project folder")
    normal = posixpath.normpath(path)
    if normal == ".." or normal.startswith("../"):
        raise ToolError(f"path {_show(path)} leads outside the project folder")
    root_real = Path(os.path.realpath(root))
    real = Path(os.path.realpath(root_real / path))
    if not real.is_relative_to(root_real):
        raise ToolError(
            f"path {_show(path)} leads outside the project folder through a symbolic link"
        )
    if for_write and _in_history(real, root_real):
        raise ToolError(
            f"path {_show(path)} is in {HISTORY_FOLDER}/, where greenroom keeps the chat "
            "history; tools may not change it"
        )
    if for_write and _is_mcp_config(real, root_real):
        raise ToolError(
            f"path {_show(path)} is the project's {MCP_CONFIG_FILE}, which starts programs; "
            "tools may not change it (ask the user to edit it)"
        )
    return real


def _is_mcp_config(real: Path, root_real: Path) -> bool:
    parts = real.relative_to(root_real).parts
    return len(parts) == 1 and parts[0].casefold() == MCP_CONFIG_FILE


def _in_history(real: Path, root_real: Path) -> bool:
    parts = real.relative_to(root_real).parts
    # casefold: on a case-insensitive file system `.AI` is the same folder.
    return bool(parts) and parts[0].casefold() == HISTORY_FOLDER


async def run_tool(root: Path, name: str, arguments: str) -> str:
    """Run the tool ``name`` with the JSON ``arguments`` in the project at ``root``.

    Returns the tool's textual result; raises ToolError (meant for the model) on any failure.
    """
    operation = _OPERATIONS.get(name)
    if operation is None:
        known = ", ".join(_SCHEMAS)
        raise ToolError(f"unknown tool {name!r}; the tools are: {known}")
    fields = _parse_arguments(_SCHEMAS[name], arguments)
    return await trio.to_thread.run_sync(operation, root, fields)


def _json_type(value: object) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null"


def _parse_arguments(schema: ToolSchema, arguments: str) -> dict[str, str]:
    """The call's arguments as checked strings, by field name."""
    name = schema.name
    text = arguments.strip()
    value: object
    if not text:
        value = {}
    else:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ToolError(
                f"the arguments of {name} are not valid JSON: {exc.msg} at character {exc.pos}"
            ) from None
        except (ValueError, RecursionError):
            raise ToolError(f"the arguments of {name} are not valid JSON") from None
    if not isinstance(value, dict):
        raise ToolError(f"the arguments of {name} must be a JSON object, not {_json_type(value)}")
    fields: dict[str, str] = {}
    for field in schema.parameters["properties"]:
        if field not in value:
            if field in schema.parameters["required"]:
                raise ToolError(f"{name} needs the argument {field!r}")
            continue
        given = value[field]
        if not isinstance(given, str):
            raise ToolError(
                f"the argument {field!r} of {name} must be a string, not {_json_type(given)}"
            )
        fields[field] = given
    return fields


def _os_error(exc: OSError, verb: str, shown: str) -> ToolError:
    """A ToolError for an OSError; never ``str(exc)``, which holds the host path."""
    if isinstance(exc, FileNotFoundError):
        return ToolError(f"cannot {verb} {shown}: no such file or folder")
    if isinstance(exc, IsADirectoryError):
        return ToolError(f"cannot {verb} {shown}: it is a folder, not a file")
    if isinstance(exc, NotADirectoryError):
        return ToolError(f"cannot {verb} {shown}: a part of the path is a file, not a folder")
    if isinstance(exc, FileExistsError):
        return ToolError(f"cannot {verb} {shown}: a file is in the way of a folder")
    if isinstance(exc, PermissionError):
        return ToolError(f"cannot {verb} {shown}: permission denied")
    return ToolError(f"cannot {verb} {shown}: {exc.strerror or 'operating system error'}")


def _display(path: str) -> str:
    """The path as results show it: normalised, relative to the project."""
    return posixpath.normpath(path)


def _read_text(real: Path, shown: str) -> str:
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(real, flags)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise ToolError(f"{shown} is a folder, not a file (list_files lists folders)")
        if not stat.S_ISREG(mode):
            raise ToolError(f"{shown} is not a regular file")
        data = read_up_to(fd, MAX_FILE_BYTES)
    finally:
        os.close(fd)
    if len(data) > MAX_FILE_BYTES:
        raise ToolError(f"{shown} is too large to read (the limit is {MAX_FILE_BYTES} bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ToolError(f"{shown} is not UTF-8 text") from None


def _encode(content: str, shown: str) -> bytes:
    try:
        data = content.encode("utf-8")
    except UnicodeEncodeError:
        raise ToolError(f"the content for {shown} is not valid Unicode") from None
    if len(data) > MAX_FILE_BYTES:
        raise ToolError(
            f"the content for {shown} is too large ({len(data)} bytes; the limit is "
            f"{MAX_FILE_BYTES})"
        )
    return data


def _write_bytes(real: Path, data: bytes, shown: str) -> None:
    if real.is_dir():
        raise ToolError(f"{shown} is a folder, not a file")
    if real.exists() and not real.is_file():
        raise ToolError(f"{shown} is not a regular file")
    real.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    with os.fdopen(os.open(real, flags, 0o666), "wb") as file:
        file.write(data)


def _read_file(root: Path, fields: dict[str, str]) -> str:
    path = fields["path"]
    shown = _show(path)
    real = resolve_in_project(root, path)
    try:
        return _read_text(real, shown)
    except OSError as exc:
        raise _os_error(exc, "read", shown) from None


def _write_file(root: Path, fields: dict[str, str]) -> str:
    path = fields["path"]
    shown = _show(path)
    data = _encode(fields["content"], shown)
    real = resolve_in_project(root, path, for_write=True)
    try:
        _write_bytes(real, data, shown)
    except OSError as exc:
        raise _os_error(exc, "write", shown) from None
    return f"wrote {len(data)} bytes to {_display(path)}"


def _edit_file(root: Path, fields: dict[str, str]) -> str:
    path, old, new = fields["path"], fields["old"], fields["new"]
    shown = _show(path)
    if not old:
        raise ToolError("the argument 'old' of edit_file is empty; give the text to replace")
    real = resolve_in_project(root, path, for_write=True)
    try:
        text = _read_text(real, shown)
        first = text.find(old)
        if first < 0:
            raise ToolError(f"the text to replace was not found in {shown}")
        if text.find(old, first + 1) >= 0:
            # str.count misses overlapping matches ("aa" in "aaa"), which are ambiguous too.
            times = max(text.count(old), 2)
            raise ToolError(
                f"the text to replace occurs {times} times in {shown}; it must occur exactly "
                "once, so include more of the surrounding text"
            )
        edited = text[:first] + new + text[first + len(old) :]
        _write_bytes(real, _encode(edited, shown), shown)
    except OSError as exc:
        raise _os_error(exc, "edit", shown) from None
    return f"edited {_display(path)}: replaced 1 occurrence"


def _printable(name: str) -> str:
    """A listed name as valid Unicode (names that are not UTF-8 get replacement characters)."""
    return os.fsencode(name).decode("utf-8", "replace")


def _list_files(root: Path, fields: dict[str, str]) -> str:
    path = fields.get("path", ".")
    shown = _show(path)
    real = resolve_in_project(root, path)
    root_real = Path(os.path.realpath(root))
    try:
        if not real.is_dir():
            if real.exists():
                raise ToolError(f"{shown} is a file, not a folder (read_file reads files)")
            raise ToolError(f"cannot list {shown}: no such folder")
        entries: list[tuple[tuple[str, ...], bool]] = []
        complete = True
        for folder, folders, files in os.walk(real):
            base = Path(folder).relative_to(root_real).parts
            expand = []
            for name in folders:
                is_link = os.path.islink(os.path.join(folder, name))
                entries.append(((*base, name), not is_link))
                if not is_link and name not in _NOT_EXPANDED:
                    expand.append(name)
            folders[:] = expand
            entries.extend(((*base, name), False) for name in files)
            if len(entries) >= MAX_LIST_SCAN:
                complete = False
                break
    except OSError as exc:
        raise _os_error(exc, "list", shown) from None
    if not entries:
        return "(no files)"
    lines = _listing(entries, complete)
    return "\n".join(lines)


def _listing(entries: list[tuple[tuple[str, ...], bool]], complete: bool) -> list[str]:
    """The lines that show ``entries`` (path parts, is a folder), sorted, the first
    :data:`MAX_LIST_ENTRIES` of them and a line that counts the rest."""
    entries = sorted(entries)
    lines = [
        _printable("/".join(parts)) + ("/" if is_folder else "")
        for parts, is_folder in entries[:MAX_LIST_ENTRIES]
    ]
    more = len(entries) - MAX_LIST_ENTRIES
    if more > 0:
        lines.append(f"... {more} more" if complete else f"... more than {more} more")
    return lines


def _delete_file(root: Path, fields: dict[str, str]) -> str:
    path = fields["path"]
    shown = _show(path)
    real = resolve_in_project(root, path, for_write=True)
    root_real = Path(os.path.realpath(root))
    head, name = posixpath.split(path)
    try:
        if name not in ("", ".", ".."):
            parent = Path(os.path.realpath(root_real / head))
            link = parent / name
            if link.is_symlink():
                # The link itself goes, never its target; it must be ours to delete.
                if (
                    not parent.is_relative_to(root_real)
                    or _in_history(link, root_real)
                    or _is_mcp_config(link, root_real)
                ):
                    raise ToolError(f"cannot delete {shown}: it is not in the project's files")
                link.unlink()
                return f"deleted {_display(path)} (a symbolic link)"
        if real == root_real or real.is_dir():
            raise ToolError(f"{shown} is a folder; delete_file deletes files only")
        real.unlink()
    except OSError as exc:
        raise _os_error(exc, "delete", shown) from None
    return f"deleted {_display(path)}"


def _walk(real: Path, root_real: Path) -> Iterator[tuple[tuple[str, ...], bool]]:
    """Every entry under the folder ``real`` as (parts relative to the root, is a folder), in
    tree order, with ``list_files``' rules: linked folders and ``.git``/``.ai`` are not
    entered. Stops after :data:`MAX_LIST_SCAN` entries (raises ``_TooMany``)."""
    seen = 0
    for folder, folders, files in os.walk(real):
        folders.sort()
        base = Path(folder).relative_to(root_real).parts
        entries = [(name, not os.path.islink(os.path.join(folder, name))) for name in folders]
        entries += [(name, False) for name in files]
        entries.sort()
        folders[:] = [name for name, is_dir in entries if is_dir and name not in _NOT_EXPANDED]
        for name, is_folder in entries:
            seen += 1
            if seen > MAX_LIST_SCAN:
                raise _TooMany
            yield (*base, name), is_folder


class _TooMany(Exception):
    """The walk reached :data:`MAX_LIST_SCAN` entries."""


def _folder_to_walk(root: Path, path: str, verb: str) -> tuple[Path, Path]:
    shown = _show(path)
    real = resolve_in_project(root, path)
    root_real = Path(os.path.realpath(root))
    if not real.is_dir():
        if real.exists():
            raise ToolError(f"{shown} is a file, not a folder")
        raise ToolError(f"cannot {verb} {shown}: no such folder")
    return real, root_real


def _glob_regex(pattern: str, argument: str) -> re.Pattern[str]:
    """The regular expression of a glob over '/'-separated relative paths."""
    if not pattern:
        raise ToolError(f"the argument {argument!r} is empty")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ToolError(f"the pattern is too long (the limit is {MAX_PATTERN_CHARS} characters)")
    if posixpath.isabs(pattern):
        raise ToolError("the pattern is absolute; give one relative to the folder searched")
    segments = pattern.split("/")
    if ".." in segments:
        raise ToolError(f"the pattern {_show(pattern)} contains '..'; it may not leave the folder")
    parts: list[str] = []
    for number, segment in enumerate(segments):
        last = number == len(segments) - 1
        if segment == "**":
            # Any number of folders (none included), or anything at all at the end.
            parts.append(".*" if last else "(?:[^/]*/)*")
            continue
        parts.append(_glob_segment(segment, pattern) + ("" if last else "/"))
    return re.compile("".join(parts), re.DOTALL)


def _glob_segment(segment: str, pattern: str) -> str:
    out: list[str] = []
    index = 0
    while index < len(segment):
        char = segment[index]
        index += 1
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            negate = segment.startswith("!", index)
            start = index + negate
            # A ']' first in the class is one of its characters, as in fnmatch.
            end = segment.find("]", start + 1 if segment.startswith("]", start) else start)
            if end < 0:
                raise ToolError(f"the pattern {_show(pattern)} has a '[' with no ']'")
            body = "".join(c if c == "-" else re.escape(c) for c in segment[start:end])
            index = end + 1
            out.append(f"[^/{body}]" if negate else f"[{body}]")
        else:
            out.append(re.escape(char))
    return "".join(out)


def _glob(root: Path, fields: dict[str, str]) -> str:
    matcher = _glob_regex(fields["pattern"], "pattern")
    path = fields.get("path", ".")
    try:
        real, root_real = _folder_to_walk(root, path, "search")
        start = real.relative_to(root_real).parts
        found: list[tuple[tuple[str, ...], bool]] = []
        complete = True
        try:
            for parts, is_folder in _walk(real, root_real):
                relative = "/".join(parts[len(start) :])
                if matcher.fullmatch(relative):
                    found.append((parts, is_folder))
        except _TooMany:
            complete = False
    except OSError as exc:
        raise _os_error(exc, "search", _show(path)) from None
    if not found:
        return "(no matches)" if complete else f"(no matches in the first {MAX_LIST_SCAN} entries)"
    lines = _listing(found, complete)
    if not complete and len(found) <= MAX_LIST_ENTRIES:
        lines.append(f"... (stopped after {MAX_LIST_SCAN} entries)")
    return "\n".join(lines)


def _search_files(root: Path, fields: dict[str, str]) -> str:
    pattern = fields["pattern"]
    if not pattern:
        raise ToolError("the argument 'pattern' of search_files is empty")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ToolError(f"the pattern is too long (the limit is {MAX_PATTERN_CHARS} characters)")
    try:
        regex = re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        where = f" at position {exc.pos}" if isinstance(exc, re.error) and exc.pos else ""
        reason = exc.msg if isinstance(exc, re.error) else "it is too complex"
        raise ToolError(f"the pattern is not a valid regular expression: {reason}{where}") from None
    include = fields.get("include")
    matcher = _glob_regex(include, "include") if include is not None else None
    path = fields.get("path", ".")
    shown = _show(path)
    real = resolve_in_project(root, path)
    root_real = Path(os.path.realpath(root))
    deadline = time.monotonic() + SEARCH_BUDGET_SECONDS
    results: list[str] = []
    notes: list[str] = []
    try:
        files: Iterator[tuple[str, ...]]
        if real.is_dir():
            files = (parts for parts, is_folder in _walk(real, root_real) if not is_folder)
        elif real.exists():
            files = iter([real.relative_to(root_real).parts])
        else:
            raise ToolError(f"cannot search {shown}: no such file or folder")
        for parts in files:
            relative = "/".join(parts)
            if matcher is not None and not matcher.fullmatch(relative):
                continue
            # A link may lead out of the project: what it leads to is read only when inside.
            target = Path(os.path.realpath(root_real.joinpath(*parts)))
            if not target.is_relative_to(root_real):
                continue
            text = _searchable(target)
            if text is None:
                continue
            shown_path = _printable(relative)
            for number, line in enumerate(text.splitlines(), 1):
                if time.monotonic() > deadline:
                    raise _OutOfTime
                if regex.search(line, 0, MAX_SEARCH_LINE) is None:
                    continue
                if len(results) == MAX_SEARCH_RESULTS:
                    notes.append(f"... stopped at {MAX_SEARCH_RESULTS} matches")
                    raise _OutOfTime
                if len(line) > MAX_SHOWN_LINE:
                    line = line[:MAX_SHOWN_LINE] + "..."
                results.append(f"{shown_path}:{number}: {line}")
    except _OutOfTime:
        if not notes:
            notes.append(
                f"... stopped after {SEARCH_BUDGET_SECONDS:g} s of searching; narrow the path "
                "or simplify the pattern"
            )
    except _TooMany:
        notes.append(f"... stopped after {MAX_LIST_SCAN} entries")
    except OSError as exc:
        raise _os_error(exc, "search", shown) from None
    if not results and not notes:
        return "(no matches)"
    return "\n".join(results + notes)


class _OutOfTime(Exception):
    """The search reached its result count or its time budget."""


def _searchable(real: Path) -> str | None:
    """A file's text, or None when it is not searched (too large, not UTF-8, not regular,
    gone or unreadable: a search skips such files rather than failing on one of them)."""
    try:
        return _read_text(real, "")
    except (ToolError, OSError):
        return None


_OPERATIONS: dict[str, Callable[[Path, dict[str, str]], str]] = {
    "read_file": _read_file,
    "write_file": _write_file,
    "edit_file": _edit_file,
    "list_files": _list_files,
    "delete_file": _delete_file,
    "search_files": _search_files,
    "glob": _glob,
}
