"""The one cattrs converter of greenroom: value classes <-> plain, wire-shaped data.

Everything that leaves the process (websocket frames, snapshots) is first turned into plain
dicts, lists, strings and numbers here, so that JSON and msgpack see the very same objects:

- event payloads and summaries get camelCase keys (``message_count`` -> ``messageCount``);
- chat messages keep the OpenAI shape and its snake_case keys (``tool_calls``,
  ``tool_call_id``), tool calls nest as ``{"id", "type": "function", "function": {...}}``,
  ``None``-valued optional keys are left out (``content`` is always there, as in OpenAI),
  ``"stopped": true`` appears only when the message was cut short, and ``thinking`` (a
  list of Anthropic's thinking blocks, in Anthropic's shape) only when there is some;
- an :class:`~greenroom.protocol.events.Event` becomes the protocol's event object
  ``{"event", "session", "project", "seq", "data"}``;
- a :class:`~greenroom.protocol.state.SessionView` becomes the protocol's ``state``: the summary's
  fields flattened, plus ``messages``, ``streaming`` and ``seq``;
- tuples become lists.

Every hook has its inverse, so ``structure(unstructure(x), type(x)) == x`` for all of these.
The hot paths (events, messages, summaries) are plain functions picked once per type, so that a
batch of thousands of events costs one dict per event and no reflection.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.preconf.msgpack import MsgpackConverter, make_converter

from greenroom.protocol.chat import (
    Message,
    ToolCall,
    message_to_json,
    thinking_from_json,
    tool_call_to_json,
)
from greenroom.protocol.events import (
    QUEUED_PREVIEW_CHARS,
    ApprovalRequested,
    Event,
    EventData,
    LoadingChanged,
    MessageAdded,
    Notification,
    PartialToolCall,
    PendingApproval,
    SessionCreated,
    SessionDeleted,
    SessionFailed,
    SessionRestarted,
    SessionUpdated,
    StreamingUpdate,
    Summary,
    queued_preview,
)
from greenroom.protocol.state import SessionView

__all__ = [
    "EVENT_TYPES",
    "QUEUED_PREVIEW_CHARS",
    "approval_to_wire",
    "camel",
    "converter",
    "event_from_record",
    "event_to_record",
    "event_to_wire",
    "message_to_wire",
    "queued_previews",
    "structure",
    "summary_to_record",
    "summary_to_wire",
    "unstructure",
]

T = TypeVar("T")

_SNAKE = re.compile(r"_([a-z0-9])")


def camel(name: str) -> str:
    """``message_count`` -> ``messageCount``."""
    return _SNAKE.sub(lambda m: m.group(1).upper(), name)


converter: MsgpackConverter = make_converter()
"""The converter itself, for code that needs more than :func:`unstructure`/:func:`structure`."""


def _register_camel(cls: type[Any]) -> None:
    """Generate (once) camelCase unstructure and structure hooks for an attrs class."""
    renames: dict[str, Any] = {
        a.name: override(rename=camel(a.name)) for a in attrs.fields(cls) if "_" in a.name
    }
    converter.register_unstructure_hook(cls, make_dict_unstructure_fn(cls, converter, **renames))
    converter.register_structure_hook(cls, make_dict_structure_fn(cls, converter, **renames))


# -- messages: the OpenAI shape, written by hand (hot path, and not a rename) -----------------


def _tool_call_from_wire(obj: Mapping[str, Any], _: object = None) -> ToolCall:
    function = obj["function"]
    return ToolCall(id=obj["id"], name=function["name"], arguments=function["arguments"])


def message_to_wire(message: Message) -> dict[str, Any]:
    """One chat message in the OpenAI shape, with greenroom's ``stopped`` and ``thinking``."""
    return message_to_json(message)


def _message_from_wire(obj: Mapping[str, Any], _: object = None) -> Message:
    calls = obj.get("tool_calls")
    return Message(
        role=obj["role"],
        content=obj.get("content"),
        tool_calls=None if calls is None else tuple(_tool_call_from_wire(c) for c in calls),
        tool_call_id=obj.get("tool_call_id"),
        stopped=bool(obj.get("stopped", False)),
        thinking=thinking_from_json(obj.get("thinking")),
    )


converter.register_unstructure_hook(ToolCall, tool_call_to_json)
converter.register_structure_hook(ToolCall, _tool_call_from_wire)
converter.register_unstructure_hook(Message, message_to_wire)
converter.register_structure_hook(Message, _message_from_wire)

# Generated after the message hooks above, which they embed.
for _cls in (
    PendingApproval,
    Summary,
    PartialToolCall,
    MessageAdded,
    LoadingChanged,
    ApprovalRequested,
    SessionRestarted,
    SessionFailed,
    Notification,
):
    _register_camel(_cls)


# -- summaries and session state ----------------------------------------------------------


def queued_previews(queued: tuple[str, ...]) -> list[str]:
    """The queued texts as a summary on the wire shows them: each cut to its first
    :data:`QUEUED_PREVIEW_CHARS` characters."""
    return [queued_preview(text) for text in queued]


def summary_to_wire(summary: Summary) -> dict[str, Any]:
    """The protocol's ``summary`` (camelCase keys), queued texts cut to previews, without what
    only the session's state shows (``systemPrompt``, ``mcpServers``, ``tools``)."""
    return _summary_fields(summary, queued_previews(summary.queued))


def summary_to_record(summary: Summary) -> dict[str, Any]:
    """A summary as it is stored (the journal, snapshots): the wire's shape, queued texts whole.

    Written out rather than generated: the welcome and every session event build one, and a
    listing of 100,000 sessions builds 100,000. It must stay exactly what the generated camelCase
    hook makes (same keys, same order, same values); tests/test_convert.py compares the two.
    """
    out = _summary_fields(summary, list(summary.queued))
    out["systemPrompt"] = summary.system_prompt
    out["mcpServers"] = None if summary.mcp_servers is None else list(summary.mcp_servers)
    out["tools"] = dict(summary.tools)
    return out


def _summary_fields(summary: Summary, queued: list[str]) -> dict[str, Any]:
    return {
        "session": summary.session,
        "project": summary.project,
        "name": summary.name,
        "status": summary.status,
        "loading": summary.loading,
        "messageCount": summary.message_count,
        "lastActivity": summary.last_activity,
        "preview": summary.preview,
        "queued": queued,
        "error": summary.error,
        "waiting": summary.waiting,
        "model": summary.model,
        "temperature": summary.temperature,
        "maxTokens": summary.max_tokens,
        "preset": summary.preset,
        "approval": approval_to_wire(summary.approval),
    }


def approval_to_wire(approval: PendingApproval | None) -> dict[str, str] | None:
    """A summary's ``approval``: ``{"call", "tool"}``, or None."""
    return None if approval is None else {"call": approval.call, "tool": approval.tool}


converter.register_unstructure_hook(Summary, summary_to_record)
_summary_from_wire: Callable[[Any, type[Summary]], Summary] = converter.get_structure_hook(Summary)


def _view_to_wire(view: SessionView) -> dict[str, Any]:
    out = summary_to_record(view.summary)  # the state is asked for: its queue whole
    out["messages"] = [message_to_wire(m) for m in view.messages]
    out["streaming"] = None if view.streaming is None else message_to_wire(view.streaming)
    out["seq"] = view.seq
    return out


def _view_from_wire(obj: Mapping[str, Any], _: object = None) -> SessionView:
    streaming = obj.get("streaming")
    return SessionView(
        summary=_summary_from_wire(obj, Summary),
        messages=tuple(_message_from_wire(m) for m in obj["messages"]),
        streaming=None if streaming is None else _message_from_wire(streaming),
        seq=obj["seq"],
    )


converter.register_unstructure_hook(SessionView, _view_to_wire)
converter.register_structure_hook(SessionView, _view_from_wire)

# -- events --------------------------------------------------------------------------------


def _streaming_to_wire(data: StreamingUpdate) -> dict[str, Any]:
    # The hottest path of all: written out rather than generated.
    calls = data.tool_calls
    return {
        "offset": data.offset,
        "delta": data.delta,
        "toolCalls": None
        if calls is None
        else [
            {"index": c.index, "id": c.id, "name": c.name, "arguments": c.arguments} for c in calls
        ],
    }


def _streaming_from_wire(obj: Mapping[str, Any], _: object = None) -> StreamingUpdate:
    calls = obj.get("toolCalls")
    return StreamingUpdate(
        offset=obj["offset"],
        delta=obj["delta"],
        tool_calls=None
        if calls is None
        else tuple(converter.structure(c, PartialToolCall) for c in calls),
    )


converter.register_unstructure_hook(StreamingUpdate, _streaming_to_wire)
converter.register_structure_hook(StreamingUpdate, _streaming_from_wire)

EVENT_TYPES: dict[str, type[EventData]] = {
    cls.name: cls
    for cls in (
        SessionCreated,
        SessionUpdated,
        SessionDeleted,
        MessageAdded,
        StreamingUpdate,
        LoadingChanged,
        ApprovalRequested,
        SessionRestarted,
        SessionFailed,
        Notification,
    )
}
"""Event payload classes by their wire name."""


def _data_to_wire(
    cls: type[Any], summary: Callable[[Summary], dict[str, Any]] = summary_to_wire
) -> Callable[[Any], dict[str, Any]]:
    if cls in (SessionCreated, SessionUpdated):
        return lambda data: summary(data.summary)
    if cls is SessionDeleted:
        return lambda _: {}
    hook: Callable[[Any], dict[str, Any]] = converter.get_unstructure_hook(cls)
    return hook


def _data_from_wire(cls: type[Any]) -> Callable[[Any], Any]:
    if cls in (SessionCreated, SessionUpdated):
        return lambda obj: cls(summary=_summary_from_wire(obj, Summary))
    if cls is SessionDeleted:
        return lambda _: SessionDeleted()
    hook = converter.get_structure_hook(cls)
    return lambda obj: hook(obj, cls)


# Picked once per payload class: encoding an event is one dict lookup and one call.
_DATA_TO_WIRE: dict[type[Any], Callable[[Any], dict[str, Any]]] = {
    cls: _data_to_wire(cls) for cls in EVENT_TYPES.values()
}
_DATA_TO_RECORD: dict[type[Any], Callable[[Any], dict[str, Any]]] = {
    cls: _data_to_wire(cls, summary_to_record) for cls in EVENT_TYPES.values()
}
_DATA_FROM_WIRE: dict[str, Callable[[Any], Any]] = {
    name: _data_from_wire(cls) for name, cls in EVENT_TYPES.items()
}


def event_to_wire(event: Event) -> dict[str, Any]:
    """The protocol's event object: ``{"event", "session", "project", "seq", "data"}``."""
    return _envelope(event, _DATA_TO_WIRE)


def _envelope(
    event: Event, payloads: Mapping[type[Any], Callable[[Any], dict[str, Any]]]
) -> dict[str, Any]:
    data = event.data
    return {
        "event": data.name,
        "session": event.session,
        "project": event.project,
        "seq": event.seq,
        "data": payloads[type(data)](data),
    }


def event_to_record(event: Event) -> dict[str, Any]:
    """An event as the journal stores it: :func:`event_to_wire`'s shape, queued texts whole."""
    return _envelope(event, _DATA_TO_RECORD)


def event_from_record(obj: Mapping[str, Any]) -> Event:
    """The inverse of :func:`event_to_record` (and of :func:`event_to_wire`)."""
    return _event_from_wire(obj)


def _event_from_wire(obj: Mapping[str, Any], _: object = None) -> Event:
    return Event(
        session=obj["session"],
        project=obj["project"],
        seq=obj["seq"],
        data=_DATA_FROM_WIRE[obj["event"]](obj["data"]),
    )


converter.register_unstructure_hook(Event, event_to_record)
converter.register_structure_hook(Event, _event_from_wire)


def unstructure(obj: Any) -> Any:
    """``obj`` as plain, wire-shaped data (dicts, lists, str, numbers, bool, None)."""
    return converter.unstructure(obj)


def structure(obj: Any, cls: type[T]) -> T:
    """The inverse of :func:`unstructure`: rebuild a ``cls`` from plain data."""
    return converter.structure(obj, cls)
