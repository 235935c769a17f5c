"""Process-wide torch state in the trainer: the intra-op thread count (set once per process, at service or CLI
start, never by a job) and the global RNG (jobs seed their own streams without touching each other's).

    VJEPA_ROBOT_TORCH_THREADS=4 vjepa-robot serve trainer     # default: min(4, max(1, cores // 2))

Why once, and why a fixed number (issue 19): `torch.set_num_threads` is process-wide. Jobs used to set it from
their own threads -- SAC from the undocumented VJEPA_SAC_THREADS and never restored it, BC saved and restored it
while a second job worker could be training, and BC's count followed the load average -- so one job changed
another's speed, and the same command ran at a different thread count (hence different float reduction orders,
hence different weights) from one run to the next. Now the process picks one number at start and every job
runs with it.

Default: half the cores this process may use (the trainer shares its host with the encoder service in the demo
and the compose stack, and runs up to two jobs at once), at least 1, at most 4 (the policies are 256-wide MLPs:
their matmuls gain little past a few threads). Measured on the shared 2-core box (bench/TRAINER_RESULTS.md): at
load ~3, a BC step took 3.1 ms with 1 thread and 162 ms with 2 (OpenMP threads waiting on a core someone else
holds), so the 2-core default is 1. Set VJEPA_ROBOT_TORCH_THREADS on a machine you know better.
The count changes results, not only speed: a BC fit at 1 and at 2 threads gives different weights (measured,
docs/reproducibility.md), so a fixed count is also what makes a run repeatable.

RNG: torch's global generator is process-wide too, and the trainer runs up to two jobs at once in threads. A job
that seeds it (torch.manual_seed) and then draws from it interleaves with another job's draws, so each job's
numbers depend on timing. `seeded_torch(seed)` builds a job's networks under a lock with the global generator
forked and seeded, and hands back a private Generator that continues exactly that stream: a job alone draws the
same numbers as before, and two jobs side by side no longer perturb each other.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch

TORCH_THREADS_ENV = "VJEPA_ROBOT_TORCH_THREADS"
DEPRECATED_ENV = {"VJEPA_SAC_THREADS": TORCH_THREADS_ENV, "VJEPA_ROBOT_BC_THREADS": TORCH_THREADS_ENV}
MAX_DEFAULT = 4

log = logging.getLogger("vjepa_robot.trainer")


def available_cpus() -> int:
    """Cores this process may run on (respects taskset/cpusets, unlike os.cpu_count())."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover  (macOS)
        return max(1, os.cpu_count() or 1)


def torch_threads(environ: dict | None = None) -> int:
    """The trainer's intra-op thread count: $VJEPA_ROBOT_TORCH_THREADS, else min(4, max(1, cores // 2)).

    The old per-job variables (VJEPA_SAC_THREADS, VJEPA_ROBOT_BC_THREADS) are still read, with a
    FutureWarning (a deprecation users see), when the new one is unset.
    """
    env = os.environ if environ is None else environ
    value, name = env.get(TORCH_THREADS_ENV), TORCH_THREADS_ENV
    if not value:
        for old, new in DEPRECATED_ENV.items():
            if env.get(old):
                warnings.warn(
                    f"{old} is deprecated: set {new} (read once at trainer start, for every job)",
                    FutureWarning,
                    stacklevel=2,
                )  # shown to users by default
                value, name = env[old], old
                break
    if value:
        try:
            n = int(value)
        except ValueError:
            raise ValueError(f"{name} must be a whole number of threads >= 1, got {value!r}") from None
        if n < 1:
            raise ValueError(f"{name} must be >= 1, got {n}")
        return n
    return min(MAX_DEFAULT, max(1, available_cpus() // 2))


def set_torch_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads for this process (service start, CLI start); returns the number set."""
    n = n or torch_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    log.info("torch intra-op threads: %d (%s)", n, TORCH_THREADS_ENV)
    return n


_RNG_LOCK = threading.Lock()


@contextmanager
def seeded_torch(seed: int) -> Iterator[torch.Generator]:
    """Run the block (network construction) on torch's global CPU generator seeded with `seed`, alone; afterwards
    the global generator is as it was, and the yielded Generator holds the stream where the block left it."""
    gen = torch.Generator()
    with _RNG_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield gen
        gen.set_state(torch.get_rng_state())


__all__ = ["TORCH_THREADS_ENV", "torch_threads", "set_torch_threads", "seeded_torch"]
