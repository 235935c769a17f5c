"""What every job runs against: the feature store, the run records, and how to reach the encoder; and how a job
refuses a request before it starts (Refused: the job layer and the run kinds' hooks raise it, the service answers
its status code: records/refused.py).

The trainer service builds one at start (services/trainer/app.py); the CLI's local mode builds one per command; the
run kinds' hooks (run_kinds.py) and the studies receive it. It lives here, below both the job layer and the run-kind
registry, so neither imports the other for it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from services.common.store import DatasetNotFound, Store
from vjepa_robot_lab.records.refused import Refused
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

    def ready_dataset(self, name: str) -> dict:
        """The dataset's metadata if it is ready to train on, else Refused (400 bad name, 404 unknown, 409 not
        ready)."""
        from vjepa_robot_client.contract import validate_name
        from vjepa_robot_lab.data.datasets import dataset_info

        try:
            validate_name(name, "dataset name")
        except ValueError as exc:
            raise Refused(400, str(exc)) from None
        try:
            meta = dataset_info(self.store, name)
        except DatasetNotFound as exc:
            raise Refused(404, str(exc)) from None
        if meta["status"] != "ready":
            raise Refused(409, f"dataset {name!r} is {meta['status']}, not ready: wait for it or re-create it")
        return meta
