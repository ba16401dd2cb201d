"""Where each subscribed session's event stream resumes: the client's bookkeeping, sans I/O.

:class:`ResumeTracker` is told what the connection saw (an event, a ``subscribe`` reply, a
reconnect) and answers with the events to hand to the application, in order. It never
blocks and never touches a socket, so its rules are tested on their own
(tests/transport/test_resume.py) and any client, trio or not, can reuse it. The rules are the
ones docs/protocol.md gives under "Reconnect and resume":

- **No duplicate.** For a subscribed session, an event whose ``seq`` is at or below the last
  one delivered is dropped (a replayed event, or one sent again after a reconnect).
- **No gap.** While a ``subscribe`` with ``since`` is on its way, that session's events are
  held; its reply says up to which ``seq`` the replay runs, and the held events come after
  the replay (those it did not already deliver).
- **Reset.** A reply with ``reset`` (the missed events are gone) becomes a synthetic
  ``resync`` event: the application reloads that session.
- A ``sessionDeleted`` ends the subscription: nothing more comes, nothing is resubscribed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from greenroom.protocol.convert import structure
from greenroom.protocol.events import Event

JSON = dict[str, Any]


@attrs.frozen(kw_only=True)
class Reconnected:
    """The client's own event: the connection was made again; ``welcome`` is the new one's."""

    name: ClassVar[str] = "reconnected"
    welcome: Mapping[str, Any]


@attrs.frozen(kw_only=True)
class Resync:
    """The client's own event: what the client missed of ``session`` is no longer retained;
    reload the session (``openSession``). Its stream goes on after ``seq``."""

    name: ClassVar[str] = "resync"
    session: str
    project: str | None
    seq: int


def typed(event: JSON) -> Event | Reconnected | Resync | None:
    """An event as the client yields it, in the protocol's classes: an :class:`Event` (whose
    ``data`` is a ``MessageAdded``, a ``StreamingUpdate``, ...), or the client's own
    :class:`Reconnected` and :class:`Resync`. None for an event this version does not know
    (a newer server's): skip it."""
    name = event.get("event")
    if name == Reconnected.name:
        return Reconnected(welcome=event.get("data") or {})
    if name == Resync.name:
        return Resync(session=event["session"], project=event["project"], seq=event["data"]["seq"])
    try:
        return structure(event, Event)
    except KeyError:
        return None


@attrs.define(eq=False)
class Subscription:
    """What is known of one subscribed session's stream."""

    last: int | None = None
    """The last seq delivered; None until the first subscribe is answered."""
    project: str | None = None
    pending: bool = False
    """A subscribe with ``since`` is on its way: this session's events are held."""
    held: list[JSON] = attrs.Factory(list)
    replay_until: int | None = None
    """The replay after a subscribe reply runs up to this seq."""


@attrs.define(eq=False)
class ResumeTracker:
    """The subscriptions of one client, across its connections (see the module docstring)."""

    _subscriptions: dict[str, Subscription] = attrs.Factory(dict)

    @property
    def subscribed(self) -> frozenset[str]:
        return frozenset(self._subscriptions)

    def last_seq(self, session: str) -> int | None:
        """The last seq delivered for ``session`` (None: not subscribed, or not yet)."""
        subscription = self._subscriptions.get(session)
        return None if subscription is None else subscription.last

    # -- what the application does ------------------------------------------------------------

    def subscribing(self, session: str, since: int | None) -> Subscription:
        """A ``subscribe`` is about to be sent; the handle is for :meth:`subscribe_failed`."""
        subscription = self._subscriptions.setdefault(session, Subscription())
        if since is not None:
            subscription.pending = True
        return subscription

    def subscribe_failed(self, session: str, handle: Subscription) -> list[JSON]:
        """The ``subscribe`` that :meth:`subscribing` announced failed: a subscription that
        never started is dropped, and what it held is delivered."""
        if self._subscriptions.get(session) is handle and handle.last is None:
            del self._subscriptions[session]
            return _release(handle)
        return []

    def unsubscribe(self, session: str) -> list[JSON]:
        """Forget ``session``; what it held is delivered."""
        subscription = self._subscriptions.pop(session, None)
        return [] if subscription is None else _release(subscription)

    # -- what the connection sees -------------------------------------------------------------

    def event(self, event: JSON) -> list[JSON]:
        """An event read from the connection: what to deliver now (maybe nothing)."""
        session, seq = event.get("session"), event.get("seq")
        if not isinstance(session, str) or not isinstance(seq, int):
            return [event]
        subscription = self._subscriptions.get(session)
        if subscription is None:
            return [event]
        if event.get("project") is not None:
            subscription.project = event["project"]
        if subscription.pending:
            subscription.held.append(event)
            return []
        out: list[JSON] = []
        if subscription.replay_until is not None and seq > subscription.replay_until:
            out += _release(subscription)  # the replay is over: the held events come next
        if subscription.last is not None and seq <= subscription.last:
            return out  # a duplicate (replayed, or resent after a reconnect)
        subscription.last = seq
        out.append(event)
        if event.get("event") == "sessionDeleted":
            del self._subscriptions[session]  # nothing more will come: no resubscribe
        elif subscription.replay_until is not None and seq >= subscription.replay_until:
            out += _release(subscription)
        return out

    def subscribed_reply(self, session: str, since: int | None, result: JSON) -> list[JSON]:
        """A ``subscribe`` reply, in frame order: where the stream of ``session`` resumes."""
        subscription = self._subscriptions.get(session)
        if subscription is None:  # unsubscribed meanwhile
            return []
        seq = int(result.get("seq", 0))
        subscription.pending = False
        if result.get("reset"):
            subscription.last = max(seq, subscription.last or 0)
            resync = {
                "event": "resync",
                "session": session,
                "project": subscription.project,
                "seq": None,
                "data": {"seq": seq},
            }
            return [resync, *_release(subscription)]
        if since is None:
            subscription.last = max(seq, subscription.last or 0)
            return _release(subscription)
        last = subscription.last
        subscription.last = since if last is None else min(last, since)
        subscription.replay_until = seq
        return _release(subscription) if seq <= subscription.last else []

    def reconnected(self) -> dict[str, int]:
        """A new connection: the sessions to subscribe again, each with its ``since``. Their
        events are held until :meth:`subscribed_reply` says where each stream resumes. A
        session whose first subscribe is unanswered is left to that call (it is retried)."""
        resume = {s: sub.last for s, sub in self._subscriptions.items() if sub.last is not None}
        for session in resume:
            subscription = self._subscriptions[session]
            subscription.pending, subscription.replay_until = True, None
        return resume

    def resubscribe_failed(self, session: str) -> list[JSON]:
        """Subscribing again was refused (the session was deleted while we were away)."""
        return self.unsubscribe(session)


def _release(subscription: Subscription) -> list[JSON]:
    """End a replay: the held events that are newer than what was delivered."""
    subscription.replay_until = None
    subscription.pending = False
    held, subscription.held = subscription.held, []
    out: list[JSON] = []
    for event in held:
        seq = event["seq"]
        if subscription.last is None or seq > subscription.last:
            subscription.last = seq
            out.append(event)
    return out
