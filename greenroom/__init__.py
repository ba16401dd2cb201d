"""greenroom: a headless runtime for many concurrent AI agent sessions, supervised on trio."""

from __future__ import annotations

__version__ = "0.1.0"
