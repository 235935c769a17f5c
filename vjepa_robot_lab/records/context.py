"""What every job runs against: the feature store, the run records, and how to reach the encoder.

The trainer service builds one at start (services/trainer/app.py); the CLI's local mode builds one per command; the
run kinds' hooks (run_kinds.py) and the studies receive it. It lives here, below both the job layer and the run-kind
registry, so neither imports the other for it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from services.common.store import Store
from vjepa_robot_lab.records.runs import RunStore


@dataclass
class TrainerContext:
    store: Store
    runs: RunStore
    encoder_url: str | None
    token: str | None = None
    on_eval: Callable[[dict], None] | None = None  # sees every finished evaluation record (service metrics)
    compress: str = "auto"  # auto | zstd | gzip | none: request bodies of every encoder client made here
    # set when the trainer shuts down: every encoder client made here stops retrying at once (jobs end interrupted)
    stopping: threading.Event = field(default_factory=threading.Event)

    def features(self, name: str, task: str | None = None):
        """The feature source `name`; `task` (a run's lineage.task; None: reacher's easy) sizes state features."""
        from vjepa_robot_lab.perception.features import make_feature_source

        return make_feature_source(
            name,
            encoder_url=self.encoder_url,
            token=self.token,
            compress=self.compress,
            task=task or "easy",
            cancel=self.stopping,
        )
