"""vjepa-robot SDK: typed sync + async clients of the encoder and trainer services.

Depends on httpx, pydantic and numpy only (no torch, no dm_control), so any experiment can use the services.

    from vjepa_robot_client import EncoderClient, TrainerClient
    emb = EncoderClient("http://127.0.0.1:8001").encode(frames)   # (B, 8, H, W, 3) uint8 -> (B, D) float32
"""

from .contract import (
    DatasetEncodeStatus,
    DatasetInfo,
    EncodeResponse,
    EncoderInfo,
    EvalResult,
    FeatureSource,
    RunRecord,
    RunStatus,
    from_npy_bytes,
    to_npy_bytes,
)
from .encoder import AsyncEncoderClient, EncoderClient
from .errors import (
    BadRequest,
    ConnectionFailed,
    DatasetEncodeFailed,
    NotFound,
    RequestTimeout,
    ServerError,
    ServiceUnavailable,
    Unauthorized,
    VjepaRobotError,
    WaitTimeout,
)
from .stream import AsyncFrameStream, FrameStream
from .trainer import AsyncTrainerClient, TrainerClient

__version__ = "0.1.0"

__all__ = [
    "EncoderClient",
    "AsyncEncoderClient",
    "TrainerClient",
    "AsyncTrainerClient",
    "FrameStream",
    "AsyncFrameStream",
    "VjepaRobotError",
    "BadRequest",
    "Unauthorized",
    "NotFound",
    "ServerError",
    "ServiceUnavailable",
    "ConnectionFailed",
    "RequestTimeout",
    "WaitTimeout",
    "DatasetEncodeFailed",
    "EncoderInfo",
    "EncodeResponse",
    "DatasetEncodeStatus",
    "DatasetInfo",
    "RunRecord",
    "RunStatus",
    "EvalResult",
    "FeatureSource",
    "from_npy_bytes",
    "to_npy_bytes",
]
