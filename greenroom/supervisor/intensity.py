"""Restart intensity: how many restarts in how long means a child cannot be kept alive."""

from __future__ import annotations

from collections import deque

import attrs


@attrs.frozen(kw_only=True)
class Intensity:
    """More than ``max_restarts`` restarts within ``period`` seconds (trio clock): give up.

    Restarting forever hides a broken child and burns resources; giving up hands the failure to
    whoever owns the supervisor.
    """

    max_restarts: int = attrs.field(default=3, validator=attrs.validators.ge(0))
    period: float = attrs.field(default=5.0, validator=attrs.validators.gt(0.0))


@attrs.define(eq=False)
class RestartWindow:
    """The restarts of the last ``period`` seconds, to check them against an :class:`Intensity`."""

    intensity: Intensity
    _times: deque[float] = attrs.field(init=False, factory=deque)

    def admit(self, now: float) -> bool:
        """Count a restart at ``now`` and return True, or return False if it is one too many.

        The window is ``(now - period, now]``: a restart exactly ``period`` seconds old has
        left it.
        """
        while self._times and now - self._times[0] >= self.intensity.period:
            self._times.popleft()
        if len(self._times) >= self.intensity.max_restarts:
            return False
        self._times.append(now)
        return True
