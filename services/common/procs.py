"""Child processes that die with their parent (issue 28 item 10).

    die_with_parent()                 # in a child: end this process when its parent dies (called by the child)
    Popen(with_pdeathsig(argv))       # the same for a command this process starts (set before it execs)

Linux: prctl(PR_SET_PDEATHSIG): the kernel signals the child when the *thread* that created it exits (so a child
should be started from a thread that lives as long as the child is wanted: the main thread, or the thread that
owns a process pool). A parent that died before the call is caught by comparing getppid() with the expected
parent. Elsewhere (macOS, Windows) there is no such kernel hook: die_with_parent starts a daemon thread that polls
the parent's pid once a second and exits the process when it changes, and with_pdeathsig leaves the command as is.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1


def _prctl():
    """libc's prctl, looked up once (never between fork and exec), or None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover: a libc without prctl
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    fn.restype = ctypes.c_int
    return fn


_PRCTL = _prctl()


def die_with_parent(parent_pid: int | None = None, sig: int = signal.SIGKILL, poll_s: float = 1.0) -> str:
    """End this process when its parent `parent_pid` (default: the current parent) dies. Returns how:
    "pdeathsig" (Linux, `sig` from the kernel) or "watchdog" (a thread that polls getppid(); os._exit(1))."""
    parent_pid = parent_pid or os.getppid()
    if _PRCTL is not None and _PRCTL(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0:
        if os.getppid() != parent_pid:  # the parent died before the call
            os.kill(os.getpid(), sig)
        return "pdeathsig"

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()
    return "watchdog"


# Run as `python -I -S -c _TRAMPOLINE PARENT_PID SIGNAL ARGV...`: set the parent-death signal, then become ARGV
# (the signal survives execve). Not a preexec_fn: that would make subprocess fork() the whole parent (torch, LanceDB
# threads) instead of vfork/posix_spawn, and fork-unsafe libraries warn about it.
_TRAMPOLINE = """
import ctypes, os, sys
parent, sig = int(sys.argv[1]), int(sys.argv[2])
try:
    ctypes.CDLL(None).prctl(1, sig, 0, 0, 0)
except (OSError, AttributeError):
    pass
if os.getppid() != parent:
    sys.exit(1)
os.execvp(sys.argv[3], sys.argv[3:])
"""


def with_pdeathsig(argv: list[str], sig: int = signal.SIGTERM) -> list[str]:
    """`argv` wrapped so that the child gets `sig` when this process (the thread that starts it) dies; on Linux
    only (elsewhere `argv` unchanged). The child keeps the pid it is started with."""
    if _PRCTL is None:
        return list(argv)
    return [sys.executable, "-I", "-S", "-c", _TRAMPOLINE, str(os.getpid()), str(int(sig)), *argv]
