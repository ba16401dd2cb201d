"""The notifier: tells clients when a session finishes a turn in a project they are not viewing,
and when one waits for a user to approve a tool call there (``approvalRequested``).

Clients say what they view with ``focusProject``. When a session's ``loadingChanged`` turns false
(completed, stopped or failed; not interrupted, which is the server going down), every connected
client whose focus is another project gets a ``notification``. When no connected client got it
or saw the turn end in its own view (nobody connected, or only clients that left without a
close frame), it is kept (the newest :data:`MAX_PENDING`), and the next client to connect
receives them all in its ``welcome``; they are then cleared, as a toast is once shown. A kept
approval notification is dropped once that call is answered or its turn ends: it would ask for
something no longer asked.

Only clients of the websocket transport register here (``Connect``); an observer inside the
server, such as the serve command's log, is no receiver. A client counts until its connection
ends, with or without a close frame: its subscription is closed then.
"""

from __future__ import annotations

from collections import deque
from typing import Final

import attrs
import trio

from greenroom.actors.bus import Subscription
from greenroom.actors.mailbox import Inbox, Reply
from greenroom.protocol.events import (
    ApprovalRequested,
    Event,
    LoadingChanged,
    MessageAdded,
    Notification,
    NotificationKind,
    SessionDeleted,
)

MAX_PENDING = 100
BODY_CHARS = 120


@attrs.frozen(kw_only=True)
class Connect:
    """Register a client; replies with the notifications that were waiting for one."""

    client: str
    subscription: Subscription
    reply: Reply[tuple[Event, ...]] = attrs.field(factory=Reply, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class Disconnect:
    client: str


@attrs.frozen(kw_only=True)
class Focus:
    """What ``client`` views now (None: nothing)."""

    client: str
    project: str | None


NotifierMessage = Event | Connect | Disconnect | Focus


_TOLD: Final = frozenset({LoadingChanged.name, SessionDeleted.name, ApprovalRequested.name})


def wants(event: Event) -> bool:
    """The events the notifier is attached to the bus for. (Asked of every event, every token
    included: a name looked up in a set, not an isinstance of a union, which took 3x as
    long.)"""
    data = event.data
    return data.name in _TOLD or (
        type(data) is MessageAdded and data.message.role in ("assistant", "tool")
    )


@attrs.define(eq=False)
class _Client:
    subscription: Subscription
    focus: str | None = None


@attrs.define(eq=False)
class NotifierActor:
    """Turns the end of a turn into notifications for the clients not viewing it."""

    _clients: dict[str, _Client] = attrs.Factory(dict)
    _pending: deque[Event] = attrs.Factory(lambda: deque(maxlen=MAX_PENDING))
    _last_reply: dict[str, str] = attrs.Factory(dict)
    sent: int = 0

    async def run(
        self,
        inbox: Inbox[NotifierMessage],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        task_status.started()
        while batch := await inbox.receive_batch():
            for message in batch:
                self._handle(message)

    def _handle(self, message: NotifierMessage) -> None:
        match message:
            case Event():
                self._on_event(message)
            case Connect(client=client, subscription=subscription, reply=reply):
                self._clients[client] = _Client(subscription)
                reply.send(tuple(self._pending))
                self._pending.clear()
            case Disconnect(client=client):
                self._clients.pop(client, None)
            case Focus(client=client, project=project):
                if client in self._clients:
                    self._clients[client].focus = project

    def _on_event(self, event: Event) -> None:
        session, project = event.session, event.project
        if session is None or project is None:
            return
        match event.data:
            case MessageAdded(message=message) if message.role == "tool":
                self._drop_approvals(session)
            case MessageAdded(message=message):
                if message.content:
                    self._last_reply[session] = message.content
            case SessionDeleted():
                self._last_reply.pop(session, None)
                self._drop_approvals(session)
            case ApprovalRequested(tool=tool, arguments=arguments):
                self._notify(_notification("approval", session, project, f"{tool} {arguments}"))
            case LoadingChanged(loading=False, reason=reason, error=error) if reason in (
                "completed",
                "truncated",
                "stopped",
                "failed",
            ):
                kind: NotificationKind = reason
                self._drop_approvals(session)
                body = error if kind == "failed" and error else self._last_reply.get(session, "")
                self._notify(_notification(kind, session, project, body))

    def _drop_approvals(self, session: str) -> None:
        if any(_asks(kept, session) for kept in self._pending):
            kept = [event for event in self._pending if not _asks(event, session)]
            self._pending.clear()
            self._pending.extend(kept)

    @property
    def clients(self) -> int:
        """Clients connected now."""
        return sum(1 for c in self._clients.values() if not c.subscription.closed)

    def _notify(self, notification: Event) -> None:
        live = {name: c for name, c in self._clients.items() if not c.subscription.closed}
        self._clients = live
        seen = False
        for client in live.values():
            if client.focus == notification.project:
                seen = True  # it watched the turn end
            elif client.subscription.offer(notification):
                self.sent += 1
                seen = True
        if not seen:
            self._pending.append(notification)


def _notification(kind: NotificationKind, session: str, project: str, body: str) -> Event:
    """The event that tells of ``kind`` in ``session``; it belongs to no session's stream."""
    return Event(
        session=None,
        project=project,
        seq=None,
        data=Notification(
            kind=kind,
            title=_TITLES[kind].format(project=project),
            body=body[:BODY_CHARS],
            session=session,
            project=project,
        ),
    )


def _asks(event: Event, session: str) -> bool:
    data = event.data
    return isinstance(data, Notification) and data.kind == "approval" and data.session == session


_TITLES: dict[NotificationKind, str] = {
    "completed": "{project}: session complete",
    "truncated": "{project}: reply cut off at the length limit",
    "stopped": "{project}: session stopped",
    "failed": "{project}: session failed",
    "approval": "{project}: a tool call waits for approval",
}
