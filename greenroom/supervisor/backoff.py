"""Jittered exponential backoff between a crash and the restart that follows it.

OTP restarts at once; greenroom waits a little, growing with each quick crash, so that a child
failing on a resource that is briefly down (a provider, a disk) does not spin, and jitter keeps
many sessions that failed together from restarting in lockstep.
"""

from __future__ import annotations

import random

import attrs


@attrs.frozen(kw_only=True)
class Backoff:
    """Delay ``initial * factor ** (attempt - 1)``, capped at ``maximum``, times a random factor
    in ``[1 - jitter, 1]``."""

    initial: float = attrs.field(default=0.01, validator=attrs.validators.ge(0.0))
    factor: float = attrs.field(default=2.0, validator=attrs.validators.ge(1.0))
    maximum: float = attrs.field(default=5.0, validator=attrs.validators.ge(0.0))
    jitter: float = attrs.field(
        default=0.5, validator=[attrs.validators.ge(0.0), attrs.validators.le(1.0)]
    )

    def __attrs_post_init__(self) -> None:
        if self.maximum < self.initial:
            raise ValueError(f"maximum ({self.maximum}) is below initial ({self.initial})")

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before restart number ``attempt`` (1-based); one draw from ``rng``."""
        if attempt < 1:
            raise ValueError(f"attempt must be at least 1, not {attempt}")
        try:
            base = min(self.maximum, self.initial * self.factor ** (attempt - 1))
        except OverflowError:
            # A child that has crashed a thousand times in a row is long past the cap.
            base = self.maximum
        return base * rng.uniform(1.0 - self.jitter, 1.0)
