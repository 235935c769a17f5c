"""Who owns a piece of live work (a `running` dataset, run or bake-off, the trainer's lease on a store), and whether
that owner is still alive.

A pid alone cannot say: in a container the trainer is always PID 1, so a trainer restarted there has its dead
predecessor's pid. The owner token is unique per process start (pid, the process's start time as the kernel reports
it, and a random part). On the owner's host the process table decides: the owner is gone when its pid is gone or is
now another process (another start time). From another host (or a host whose processes this one cannot see) only a
heartbeat can tell: an owner that renewed nothing for `lease_s` seconds is gone.

    OWNER                      {"pid", "host", "token"} of this process
    owner_gone(owner, heartbeat_at, lease_s)  -> a reason (str) when that owner is gone, else None
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timezone


def start_time(pid: int) -> float | None:
    """The process's start time (psutil, rounded to 10 ms), None when there is no such (living) process."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:  # dead, not yet reaped by its parent
            return None
        return round(proc.create_time(), 2)
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


HOST = os.uname().nodename
OWNER_TOKEN = f"{os.getpid()}-{start_time(os.getpid())}-{uuid.uuid4().hex[:12]}"
OWNER = {"pid": os.getpid(), "host": HOST, "token": OWNER_TOKEN}


def is_mine(owner: dict | None) -> bool:
    return bool(owner) and owner.get("token") == OWNER_TOKEN


def owner_gone(owner: dict | None, heartbeat_at: str | None = None, lease_s: float | None = None) -> str | None:
    """Why `owner` ({"pid", "host", "token"}) is gone, or None while it may be alive (this process: always alive).

    An owner on another host is gone once `heartbeat_at` (ISO time) is older than `lease_s`; without a heartbeat
    rule (lease_s None) such an owner counts as alive."""
    if not owner:
        return "no owner is recorded"
    token, pid = owner.get("token"), owner.get("pid")
    if token == OWNER_TOKEN:
        return None
    if owner.get("host") == HOST and pid:
        pid = int(pid)
        started = start_time(pid)
        if started is None:
            return f"process {pid} is gone"
        if token is not None and str(token).split("-")[:2] != [str(pid), str(started)]:
            return f"process {pid} is not the one that claimed it (the pid was reused, e.g. by a restarted container)"
        return None
    if lease_s is not None and heartbeat_at:
        age = (datetime.now(timezone.utc) - datetime.fromisoformat(heartbeat_at)).total_seconds()
        if age > lease_s:
            return f"its owner on {owner.get('host')} renewed nothing for {age:.0f} s (lease {lease_s:.0f} s)"
    return None


def owned_by_live_process(record) -> bool:
    """A record (a run or bake-off model with an `owner` extra field) that belongs to another live process on this
    host: a restarting trainer and a read both leave it alone."""
    owner = (getattr(record, "model_extra", None) or {}).get("owner")
    return bool(owner) and not is_mine(owner) and owner.get("host") == HOST and owner_gone(owner) is None
