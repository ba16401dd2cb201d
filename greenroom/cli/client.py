"""How a client command reaches the server: which server and token, the connection, and
what its failures mean.

The server is ``--url``, else ``GREENROOM_URL``, else the local server's ``server.json``; the
token is ``--token``, else ``GREENROOM_TOKEN``, else the token file. A refused token is a
usage error (exit 2), a server that is not there is :class:`~greenroom.cli.exits.NoServer`
(exit 3). Wherever a command takes a session, a project name works too (its session).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Coroutine
from typing import Any, Final

from greenroom.cli.discovery import discover, read_token
from greenroom.cli.environment import config_dir, setting
from greenroom.cli.exits import NO_SERVER, NoServer, UsageError
from greenroom.transport.client import (
    CommandError,
    ConnectFailed,
    GreenroomClient,
    HandshakeRefused,
    connect,
    websocket_url,
)

RECONNECT_TIMEOUT: Final = 10.0
"""Seconds a short command keeps reconnecting to a server that went away."""

Body = Callable[[GreenroomClient], Coroutine[Any, Any, int]]
"""What a command does once connected; returns its exit code."""


def client_target(args: argparse.Namespace) -> tuple[str, str | None]:
    """The server's websocket URL and the token to show it."""
    directory = config_dir(args)
    given = setting(args.url, os.environ, "GREENROOM_URL")
    if given is not None:
        try:
            url = websocket_url(given)
        except ValueError as error:
            raise UsageError(f"--url: {error}") from None
    else:
        found = discover(directory)
        if found is None:
            raise NoServer(NO_SERVER)
        url = found
    token = setting(args.token, os.environ, "GREENROOM_TOKEN") or read_token(directory)
    return url, token


async def with_client(
    args: argparse.Namespace, body: Body, *, reconnect_timeout: float = RECONNECT_TIMEOUT
) -> int:
    """Connect to the server and run ``body``; a failed connection is a one-line error."""
    url, token = client_target(args)
    try:
        async with connect(url, token, reconnect_timeout=reconnect_timeout) as client:
            return await body(client)
    except HandshakeRefused as refused:
        if refused.status == 401:
            raise UsageError(
                "the server refused the token; check `greenroom token` or pass --token"
            ) from None
        raise UsageError(refused.message) from None
    except ConnectFailed as failed:
        if args.url is None and os.environ.get("GREENROOM_URL") in (None, ""):
            raise NoServer(NO_SERVER) from None
        raise NoServer(failed.message) from None


async def session_of(client: GreenroomClient, target: str) -> str:
    """The session a user named: a session id, or a project name (its session)."""
    sessions = (await client.list_sessions())["sessions"]
    if any(s["session"] == target for s in sessions):
        return target
    for s in sessions:
        if s["project"] == target:
            return str(s["session"])
    raise CommandError("not_found", f"no session or project {target!r} with a session")
