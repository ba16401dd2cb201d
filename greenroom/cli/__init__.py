"""The ``greenroom`` command: run the server, and talk to it from a terminal.

``main`` parses the arguments (:mod:`~greenroom.cli.arguments`), sets up logging and runs the
command: ``serve`` (:mod:`~greenroom.cli.serve`), ``config`` and ``token`` here, and the
commands that talk to a running server from :mod:`~greenroom.cli.commands`. ``serve`` and the
client commands are imported only when they run, so that neither loads the other. What went
wrong becomes one line on stderr and an exit code (:mod:`~greenroom.cli.exits`, docs/cli.md).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

import trio

from greenroom.cli.arguments import make_parser
from greenroom.cli.environment import config_dir, configure_logging, load_settings
from greenroom.cli.exits import EXIT_OK, UsageError, only_leaf, report
from greenroom.protocol.errors import GreenroomError
from greenroom.settings import render, render_json
from greenroom.transport.auth import load_or_create_token

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """The ``greenroom`` entry point; returns the exit code."""
    args = make_parser().parse_args(argv)
    try:
        configure_logging(args)
        return _run(args)
    except BaseExceptionGroup as group:
        cause = only_leaf(group)
        if not isinstance(cause, KeyboardInterrupt | UsageError | GreenroomError):
            raise
        return report(cause)
    except (KeyboardInterrupt, UsageError, GreenroomError) as error:
        return report(error)


def _run(args: argparse.Namespace) -> int:
    if args.command == "token":
        print(load_or_create_token(config_dir(args)))
        return EXIT_OK
    if args.command == "config":
        settings = load_settings(args)
        print(render_json(settings) if args.json else render(settings))
        return EXIT_OK
    if args.command == "serve":
        from greenroom.cli.serve import serve

        return serve(args)
    from greenroom.cli.commands import COMMANDS, prepare

    if not args.verbose:
        # Only warnings, so that nothing but a problem lands between the lines of a reply.
        logging.getLogger().setLevel(logging.WARNING)
    prepare(args)
    try:
        result: int = trio.run(COMMANDS[args.command], args)
    except BaseException as error:
        if isinstance(error, BaseExceptionGroup):
            error = only_leaf(error) or error
        if isinstance(error, KeyboardInterrupt) and args.command == "watch":
            return EXIT_OK  # Ctrl-C is how one leaves watch
        raise
    return result
