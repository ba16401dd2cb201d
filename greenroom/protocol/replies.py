"""What the server sends, as plain objects: each command's result, and the replies, errors,
events and welcome that a frame holds (the codec serializes them).

A result is built by the ``*_result`` function of its command (:data:`RESULTS`, one per
command class, which :func:`result_to_wire` applies). A listing of summaries stays as
:class:`Summaries` objects until the codec writes them, so that each summary's memoized
encoding can be joined in rather than built again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from greenroom.protocol import commands as c
from greenroom.protocol.commands import Command
from greenroom.protocol.convert import converter, event_to_wire, summary_to_wire
from greenroom.protocol.events import Event, Summary
from greenroom.protocol.frames import ErrorReply, Outgoing, Reply, Welcome
from greenroom.protocol.results import (
    McpStatusLike,
    OpenedSession,
    PresetListingLike,
    ProjectInfo,
    Subscribed,
)
from greenroom.protocol.state import SessionView

# -- results --------------------------------------------------------------------------------


def state_to_wire(view: SessionView) -> dict[str, Any]:
    """The protocol's ``state``: summary fields, ``messages``, ``streaming``, ``seq``."""
    result: dict[str, Any] = converter.unstructure(view, SessionView)
    return result


def projects_result(projects: Iterable[ProjectInfo]) -> dict[str, Any]:
    """``listProjects``."""
    return {
        "projects": [
            {"project": p.project, "session": p.session, "status": p.status} for p in projects
        ]
    }


def project_result(project: str) -> dict[str, Any]:
    """``createProject``."""
    return {"project": project}


class Summaries(list[Summary]):
    """The summaries of a listing, kept as objects in a result until the codec writes them.

    With 100,000 sessions, building and serializing a dict per summary was most of what a
    ``listSessions`` cost; the codec instead joins each summary's memoized encoding (see
    :class:`~greenroom.protocol.encodings.SummaryMemo`). A list, so that what sizes a result
    by its lists (the outbox's estimate) still counts the summaries.
    """

    __slots__ = ()


def sessions_result(summaries: Iterable[Summary]) -> dict[str, Any]:
    """``listSessions`` (the summaries as :class:`Summaries`, written by the codec)."""
    return {"sessions": Summaries(summaries)}


def session_result(view: SessionView, mcp: McpStatusLike) -> dict[str, Any]:
    """``openSession``: the state, and the project's MCP configuration."""
    return {"session": state_to_wire(view), **mcp_result(mcp)}


def mcp_result(status: McpStatusLike) -> dict[str, Any]:
    """``mcpConfig`` and ``trustMcpConfig``: the project's ``.mcp.json`` and its approval."""
    return {
        "mcp": {
            "file": ".mcp.json",
            "state": status.state,
            "hash": status.hash,
            "servers": [server.describe() for server in status.servers],
            "error": status.error,
        }
    }


def presets_result(listing: PresetListingLike) -> dict[str, Any]:
    """``listPresets``: the presets (system prompts cut short), and why the project's own
    presets file is unusable (null when it is fine or absent)."""
    return {
        "presets": [preset.describe() for preset in listing.presets],
        "error": listing.error,
    }


def subscribe_result(seq: int) -> dict[str, Any]:
    """``subscribe``: the session's current seq."""
    return {"seq": seq}


def send_message_result(queued: bool) -> dict[str, Any]:
    """``sendMessage``: whether the message waits behind a running turn."""
    return {"queued": queued}


def stop_generation_result(discarded: Iterable[str]) -> dict[str, Any]:
    """``stopGeneration``: the queued texts that were dropped."""
    return {"discarded": list(discarded)}


def cancel_queued_result(removed: str) -> dict[str, Any]:
    """``cancelQueued``: the whole text that was removed from the queue."""
    return {"removed": removed}


def stop_all_result(stopped: int) -> dict[str, Any]:
    """``stopAll``: how many sessions were stopped."""
    return {"stopped": stopped}


def stats_result(counters: Mapping[str, Any]) -> dict[str, Any]:
    """``stats``: the counters as given (plain values only)."""
    return dict(counters)


def empty_result(_: object = None) -> dict[str, Any]:
    """The ``{}`` of every command that returns nothing."""
    return {}


def _opened_result(opened: OpenedSession) -> dict[str, Any]:
    return session_result(opened, opened.mcp)


def _subscribed_result(subscribed: Subscribed) -> dict[str, Any]:
    result = subscribe_result(subscribed.seq)
    if subscribed.replay is None:
        result["reset"] = True  # what was missed is gone: reload with openSession
    return result


R = TypeVar("R")

RESULTS: dict[type[Command[Any]], Callable[[Any], dict[str, Any]]] = {}
"""Per command class, what turns its result (see :mod:`~greenroom.protocol.commands`) into the
reply's ``result``."""


def _result(cls: type[Command[R]], to_wire: Callable[[R], dict[str, Any]]) -> None:
    # One call per command, so that mypy checks each function against the command's result.
    RESULTS[cls] = to_wire


_result(c.ListProjects, projects_result)
_result(c.CreateProject, lambda info: project_result(info.project))
_result(c.DeleteProject, empty_result)
_result(c.ListSessions, sessions_result)
_result(c.OpenSession, _opened_result)
_result(c.Subscribe, _subscribed_result)
_result(c.Unsubscribe, empty_result)
_result(c.SendMessage, send_message_result)
_result(c.StopGeneration, stop_generation_result)
_result(c.CancelQueued, cancel_queued_result)
_result(c.ResumeSession, empty_result)
_result(c.ApproveToolCall, empty_result)
_result(c.NewChat, empty_result)
_result(c.DeleteSession, empty_result)
_result(c.FocusProject, empty_result)
_result(c.McpConfig, mcp_result)
_result(c.TrustMcpConfig, mcp_result)
_result(c.ListPresets, presets_result)
_result(c.StopAll, stop_all_result)
_result(c.Stats, stats_result)
_result(c.Ping, empty_result)


def result_to_wire(command: Command[R], result: R) -> dict[str, Any]:
    """The reply's ``result`` for ``command``, executed with ``result``."""
    return RESULTS[type(command)](result)


# -- what goes into a frame ------------------------------------------------------------------


def _plain_listing(summaries: Iterable[Summary]) -> list[dict[str, Any]]:
    return [summary_to_wire(s) for s in summaries]


Listing = Callable[[Iterable[Summary]], Any]
"""How a listing of summaries goes into a frame: as plain dicts (:func:`to_wire`), or as the
joined encodings that the codec copies in (:meth:`~greenroom.protocol.codec.Codec._listing`)."""


def reply_to_wire(reply: Reply, listing: Listing = _plain_listing) -> dict[str, Any]:
    """A successful reply as the plain object of a frame, its listings written by ``listing``."""
    result = reply.result
    if any(type(value) is Summaries for value in result.values()):
        result = {k: listing(v) if type(v) is Summaries else v for k, v in result.items()}
    return {"re": reply.re, "ok": True, "result": result}


def _error_to_wire(reply: ErrorReply) -> dict[str, Any]:
    return {"re": reply.re, "ok": False, "error": {"code": reply.code, "message": reply.message}}


def welcome_to_wire(welcome: Welcome, listing: Listing = _plain_listing) -> dict[str, Any]:
    """The welcome as the plain object of a frame, its listing written by ``listing``."""
    return {
        "event": Welcome.name,
        "session": None,
        "project": None,
        "seq": None,
        "data": {
            "server": welcome.server,
            "version": welcome.version,
            "protocol": welcome.protocol,
            "connection": welcome.connection,
            "provider": welcome.provider,
            "sessions": listing(welcome.sessions),
            "notifications": [event_to_wire(e) for e in welcome.notifications],
        },
    }


_TO_WIRE: dict[type[Any], Any] = {
    Event: event_to_wire,
    Reply: reply_to_wire,
    ErrorReply: _error_to_wire,
    Welcome: welcome_to_wire,
}


def to_wire(item: Outgoing) -> dict[str, Any]:
    """One reply or event as the plain object that goes into a frame."""
    obj: dict[str, Any] = _TO_WIRE[type(item)](item)
    return obj
