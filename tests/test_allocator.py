"""The allocator setting of ``greenroom serve`` (its effect is measured by bench/flood.py)."""

from __future__ import annotations

import platform

from greenroom.allocator import pin_mmap_threshold


def test_the_mmap_threshold_is_pinned_where_there_is_glibc() -> None:
    assert pin_mmap_threshold() is (platform.libc_ver()[0] == "glibc")
