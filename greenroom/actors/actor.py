"""What an actor is, and how one becomes a supervised child."""

from __future__ import annotations

from typing import Protocol, TypeVar

import trio

from greenroom.actors.mailbox import Inbox, Mailbox
from greenroom.supervisor import ChildSpec, Restart, RestartInfo

M = TypeVar("M")


class Actor(Protocol[M]):
    """A task that serves a mailbox, one message at a time, until the inbox ends."""

    async def run(
        self, inbox: Inbox[M], *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None: ...


def actor_child(
    mailbox: Mailbox[M],
    actor: Actor[M],
    *,
    restart: Restart = Restart.PERMANENT,
    shutdown: float = 5.0,
) -> ChildSpec:
    """A child spec that runs ``actor`` on ``mailbox``; the same actor object serves again
    after a restart (so what it holds outside its incarnation survives), and a graceful stop
    asks it to leave its message loop."""

    async def start(
        restart: RestartInfo | None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        with mailbox.serve() as inbox:
            await actor.run(inbox, task_status=task_status)

    return ChildSpec(
        id=mailbox.name, start=start, restart=restart, shutdown=shutdown, stop=mailbox.request_stop
    )
