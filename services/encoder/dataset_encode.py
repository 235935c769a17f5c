"""Client side of `vjepa-robot datasets encode NAME --encoder-url URL`: start the job, poll it with a progress bar.

Uses the SDK (vjepa_robot_client.EncoderClient): its typed errors (NotFound, Unauthorized, ...) carry the
server's detail, so the CLI prints e.g. "unknown dataset 'x': create it first (...)".
"""

from __future__ import annotations

from vjepa_robot_client import EncoderClient
from vjepa_robot_client.contract import DatasetEncodeStatus, validate_name

POLL_S = 0.5


class DatasetEncodeError(RuntimeError):
    """The encoding job failed on the service; the message carries its error."""


def encode_dataset_via_service(
    name: str,
    encoder_url: str,
    batch_size: int = 32,
    token: str | None = None,
    progress: bool = False,
    poll_s: float = POLL_S,
    timeout_s: float | None = None,
) -> DatasetEncodeStatus:
    """POST /datasets/{name}/encode, then poll GET until done; returns the final status.

    Raises the SDK's typed errors when the service refuses (404 unknown dataset, 401, ...), WaitTimeout after
    timeout_s, and DatasetEncodeError when the job itself failed.
    """
    validate_name(name, "dataset name")
    with EncoderClient(encoder_url, token=token) as client:
        status = client.encode_dataset(name, batch_size=batch_size)
        if status.status == "running":
            status = client.wait_dataset_encode(name, progress=progress, timeout=timeout_s, poll_interval=poll_s)
    if status.status == "failed":
        raise DatasetEncodeError(f"encoding dataset {name!r} failed on the encoder: {status.error}")
    return status
