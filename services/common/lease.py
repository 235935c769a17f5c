"""One trainer per store: a lease file with a heartbeat.

LanceDB allows one writer per table, and a trainer writes datasets, run records and bake-offs that it alone may
recover after a crash, so two trainers on one store would mark each other's live work `interrupted` and write the same
tables at once. A trainer takes the store's lease when it starts and gives it back when it stops:

    <store>/trainer.lease     {"pid", "host", "token", "url", "store", "started_at", "heartbeat_at"}

A second trainer finds the lease held by a live trainer and refuses to start (StoreInUse, naming the store and the
live trainer; `vjepa-robot serve trainer` exits with code 2). A dead trainer's lease is taken over: on the same host
its process is gone (pid and start time: services/common/owner.py); from another host its heartbeat (renewed every
HEARTBEAT_S) is older than LEASE_S. Contenders on one host are serialised by an flock on `trainer.lease.lock`.

Where the lease lives: next to a local store. A store given as a URI (s3://...) has no local directory: its lease
lives in the trainer's runs directory, so it keeps out a second trainer on the same machine (or one sharing that
runs directory) but NOT one on another machine pointed at the same bucket; run one trainer per s3 store.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from services.common.owner import OWNER, is_mine, owner_gone

log = logging.getLogger("vjepa_robot.trainer")

LEASE_FILE = "trainer.lease"
HEARTBEAT_S = 10.0
LEASE_S = 6 * HEARTBEAT_S  # a lease from another host not renewed for this long belongs to a dead trainer


class StoreInUse(RuntimeError):
    """Another live trainer holds this store's lease."""


def lease_path(store_uri: str, runs_dir: str | Path) -> Path:
    """<store>/trainer.lease for a local store; <runs_dir>/trainer.lease for a URI store (see the module doc)."""
    base = Path(runs_dir) if "://" in store_uri else Path(store_uri)
    return base / LEASE_FILE


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_lease(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def holder_gone(lease: dict) -> str | None:
    """Why the lease's trainer is gone, or None while it may be alive."""
    return owner_gone(lease, lease.get("heartbeat_at"), LEASE_S)


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class StoreLease:
    """This process's hold on a store (re-entrant: a second acquire in the same process only counts)."""

    def __init__(self, path: Path, store_uri: str, url: str | None = None):
        self.path, self.store_uri, self.url = Path(path), store_uri, url
        self._count = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _write(self, started_at: str) -> None:
        data = {**OWNER, "url": self.url, "store": self.store_uri, "started_at": started_at, "heartbeat_at": _now()}
        tmp = self.path.with_name(f"{self.path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.path)

    def acquire(self) -> StoreLease:
        with self._lock:
            if self._count == 0:
                with _locked(self.path):
                    held = read_lease(self.path)
                    if held and not is_mine(held) and holder_gone(held) is None:
                        raise StoreInUse(describe_refusal(self.store_uri, self.path, held))
                    if held and not is_mine(held):
                        log.warning("taking over the store's lease from a dead trainer (%s)", holder_gone(held))
                    self._started_at = _now()
                    self._write(self._started_at)
                self._stop.clear()
                self._thread = threading.Thread(target=self._beat, name="store-lease", daemon=True)
                self._thread.start()
            self._count += 1
        return self

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                with _locked(self.path):
                    held = read_lease(self.path)
                    if held is not None and not is_mine(held):
                        log.error(
                            "the store's lease %s was taken over by pid %s: stop this trainer",
                            self.path,
                            held.get("pid"),
                        )
                        return
                    self._write(self._started_at)
            except OSError as exc:  # a full disk, a vanished directory: say so, keep trying
                log.error("could not renew the store's lease %s: %s", self.path, exc)

    def release(self, all_holds: bool = False) -> None:
        """Give back one hold (all_holds: every hold of this process, as a trainer stopping does: uvicorn re-raises
        SIGTERM after its shutdown, so nothing after the app's lifespan may run); the last one removes the file."""
        with self._lock:
            if self._count == 0:
                return
            self._count = 0 if all_holds else self._count - 1
            if self._count:
                return
            self._stop.set()
            if self._thread is not None:
                self._thread.join(timeout=5)
            try:
                with _locked(self.path):
                    if is_mine(read_lease(self.path)):
                        self.path.unlink(missing_ok=True)
            except OSError:
                pass


def describe_refusal(store_uri: str, path: Path, held: dict) -> str:
    beat = held.get("heartbeat_at")
    age = ""
    if beat:
        try:
            seconds = (datetime.now(timezone.utc) - datetime.fromisoformat(beat)).total_seconds()
            age = f", lease renewed {seconds:.0f} s ago"
        except ValueError:
            pass
    where = f" serving {held['url']}" if held.get("url") else ""
    return (
        f"store {store_uri} is in use by a live trainer: pid {held.get('pid')} on {held.get('host')}{where}, started "
        f"{held.get('started_at')}{age} (lease {path}). One trainer per store: stop that trainer first, or give this "
        "one another --store"
    )


_LEASES: dict[Path, StoreLease] = {}
_REGISTRY_LOCK = threading.Lock()


def store_lease(store_uri: str, runs_dir: str | Path, url: str | None = None) -> StoreLease:
    """The process-wide lease object of a store (one per lease path), not yet acquired."""
    path = lease_path(store_uri, runs_dir).absolute()
    with _REGISTRY_LOCK:
        if path not in _LEASES:
            _LEASES[path] = StoreLease(path, store_uri, url)
        return _LEASES[path]
