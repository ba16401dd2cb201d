"""How a command ends: the exit codes, and the one line on stderr that says why.

0 success, 1 the server said no or the turn failed, 2 usage errors, 3 no server, 130 Ctrl-C
(``watch`` exits 0 on Ctrl-C: that is how one leaves it). docs/cli.md has the details.
"""

from __future__ import annotations

from typing import Final

from greenroom.cli.render import print_err
from greenroom.protocol.errors import GreenroomError
from greenroom.transport.client import ClientError, CommandError

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_NO_SERVER: Final = 3
EXIT_INTERRUPTED: Final = 130

NO_SERVER: Final = "no greenroom server found; start one with `greenroom serve`"


class UsageError(Exception):
    """A problem the user fixes (a bad setting, a bad URL): one line on stderr, exit 2."""


class NoServer(UsageError):
    """No server to talk to: exit 3, so that a script can tell it from a usage error."""


def only_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The single exception inside (nested) groups, or None when there are several."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        error = pending.pop()
        if isinstance(error, BaseExceptionGroup):
            pending.extend(error.exceptions)
        else:
            leaves.append(error)
    return leaves[0] if len(leaves) == 1 else None


def report(error: BaseException) -> int:
    """One line on stderr, and the exit code for ``error``."""
    if isinstance(error, KeyboardInterrupt):
        print_err("interrupted")
        return EXIT_INTERRUPTED
    if isinstance(error, UsageError):
        print_err(f"greenroom: {error}")
        return EXIT_NO_SERVER if isinstance(error, NoServer) else EXIT_USAGE
    if isinstance(error, CommandError):
        print_err(f"greenroom: {error}")
        return EXIT_FAILED
    if isinstance(error, ClientError):  # the server went away, and reconnecting gave up
        print_err(f"greenroom: {error.message}")
        return EXIT_NO_SERVER
    assert isinstance(error, GreenroomError)
    print_err(f"greenroom: {error.message}")  # a bad setting found at start (the provider)
    return EXIT_USAGE
