"""The driver's stderr without Ray's known false alarms.

Ray's C++ core writes some messages straight to file descriptor 2, past Python's logging, so they can
only be dropped at the descriptor: a thread reads fd 2 through a pipe and passes on every other line.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

# Logged at ERROR for every actor pool with restarts: Ray Data hands its actors a reference to a detached
# location tracker, which cannot go out of scope (ray-project/ray#57733), so the warning does not apply.
KNOWN_FALSE_ALARMS = (b"has constructor arguments in the object store and max_restarts > 0",)


@contextlib.contextmanager
def without_false_alarms(patterns: tuple[bytes, ...] = KNOWN_FALSE_ALARMS):
    """Within the block, lines of fd 2 containing any of `patterns` are dropped; the rest pass unchanged."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable stderr (a closed descriptor): nothing to filter
        yield
        return
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump():
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            pending = b""
            while chunk := pipe.read(65536):
                *lines, pending = (pending + chunk).split(b"\n")
                out = b"".join(line + b"\n" for line in lines if not any(p in line for p in patterns))
                if out:
                    os.write(saved, out)
            if pending and not any(p in pending for p in patterns):
                os.write(saved, pending)

    thread = threading.Thread(target=pump, name="stderr-filter", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)          # closes the pipe's last write end held by fd 2: the pump sees EOF
        thread.join(timeout=5)
        os.close(saved)
