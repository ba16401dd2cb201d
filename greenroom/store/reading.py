"""Reading a file that may be far larger than its reader accepts, without reading it all."""

from __future__ import annotations

import os


def read_up_to(fd: int, limit: int) -> bytes:
    """The bytes of the open file ``fd``, but no more than ``limit + 1`` of them: one byte over
    the limit is enough to tell that the file is too large. Blocking: call it from a thread."""
    data = bytearray()
    while len(data) <= limit:
        chunk = os.read(fd, limit + 1 - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)
