"""State that belongs to one trio run: one value per run, made on first use.

For what many tasks of a process share but that must not outlive its run (a parking lot
from an earlier run would hold tasks that no longer exist): the simulated streams' pacer, the
crash traceback budget. Tests run many trio runs in one process; each gets its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import trio

__all__ = ["PerRun"]

T = TypeVar("T")


class PerRun(Generic[T]):
    """One ``T`` per trio run, made by ``make`` the first time :meth:`get` is called in it."""

    def __init__(self, name: str, make: Callable[[], T]) -> None:
        self._var: trio.lowlevel.RunVar[T] = trio.lowlevel.RunVar(name)
        self._make = make

    def get(self) -> T:
        try:
            return self._var.get()
        except LookupError:
            value = self._make()
            self._var.set(value)
            return value
