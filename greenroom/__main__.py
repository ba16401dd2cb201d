"""``python -m greenroom``: the same as the ``greenroom`` command."""

from __future__ import annotations

from greenroom.cli import main

raise SystemExit(main())
