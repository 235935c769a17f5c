"""Encoder service settings (pydantic-settings): every field is also an environment variable VJEPA_ROBOT_<FIELD>.

VJEPA_ROBOT_STORE=./vjepa-robot-store VJEPA_ROBOT_PRESET=tiny vjepa-robot serve encoder
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.store import default_store_uri
from services.encoder.families import FUSIONS, family_named
from services.encoder.model import PRESETS

MIB = 1024 * 1024


class EncoderSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VJEPA_ROBOT_", protected_namespaces=(), extra="ignore")

    host: str = Field("127.0.0.1", description="Interface to listen on (VJEPA_ROBOT_HOST).")
    port: int = Field(8001, ge=0, le=65535, description="Port (VJEPA_ROBOT_PORT).")
    store: str = Field(default_factory=default_store_uri, description="Feature store: directory or LanceDB URI.")
    preset: str | None = Field(None, description=f"One of {', '.join(PRESETS)}; default tiny unless `model` is set.")
    model: str | None = Field(
        None, description="Hub id or local directory of a V-JEPA 2 checkpoint (instead of preset)."
    )
    revision: str | None = Field(None, description="Hub revision (commit sha) to pin; part of the encoder id.")
    family: str | None = Field(
        None,
        description="Backbone family of `model` (vjepa2 | videomae | dinov2 | siglip); "
        "default: config.json's model_type (docs/encoders.md).",
    )
    fusion: str | None = Field(
        None,
        description="Image families: how the 8 frames' vectors fuse (mean | last | "
        "last3; default mean); part of the encoder id.",
    )
    device: str | None = Field(None, description="cpu | cuda | cuda:N; default cuda when available.")
    threads: int | None = Field(
        None, ge=1, description="torch intra-op threads on CPU; default: cores available minus one (min 1)."
    )
    max_batch: int = Field(32, ge=1, le=4096, description="Most windows per forward pass; 1 turns batching off.")
    max_wait_ms: float = Field(
        5.0, ge=0, le=10_000, description="Longest wait for a batch to fill, from its oldest request."
    )
    max_queue: int = Field(256, ge=1, description="Requests waiting for a forward pass before 503 + Retry-After.")
    max_body_bytes: int = Field(
        256 * MIB,
        ge=1,
        description="Largest accepted POST /encode or stream step body, after decompression (413 above it).",
    )
    max_json_body_bytes: int = Field(
        MIB,
        ge=1,
        description="Largest accepted JSON body (POST /streams, POST /datasets/{name}/encode; "
        "VJEPA_ROBOT_MAX_JSON_BODY_BYTES): 413 above it, before the body is read.",
    )
    max_poolings: int = Field(
        16,
        ge=1,
        le=1024,
        description="Most grid poolings with a live batcher at once (VJEPA_ROBOT_MAX_POOLINGS); a new one evicts "
        "the least recently used idle one.",
    )
    body_pool_bytes: int = Field(
        512 * MIB,
        ge=0,
        description="Most bytes of idle request-body buffers kept for "
        "reuse (VJEPA_ROBOT_BODY_POOL_BYTES; 0 turns reuse off). Buffers in use by requests "
        "are not counted: they are bounded by the requests in flight x their bodies.",
    )
    body_pool_buffers: int = Field(
        4,
        ge=0,
        description="Most idle request-body buffers kept for reuse (VJEPA_ROBOT_BODY_POOL_BUFFERS; 0 turns reuse off).",
    )
    embed_timeout_s: float = Field(
        600.0,
        gt=0,
        description="Longest wait of a dataset-embedding batch for its "
        "forward pass, queueing included (VJEPA_ROBOT_EMBED_TIMEOUT_S); the job then "
        "fails and a re-run resumes it.",
    )
    shutdown_grace_s: float = Field(
        10.0,
        ge=0,
        description="At shutdown, how long a running forward pass is waited "
        "for before the service exits without it (VJEPA_ROBOT_SHUTDOWN_GRACE_S).",
    )
    stream_ttl_s: float = Field(300.0, gt=0, description="A frame stream idle this long is dropped (then 404).")
    max_streams: int = Field(64, ge=1, description="Most open frame streams (503 + Retry-After above it).")
    max_stream_bytes: int = Field(
        2048 * MIB,
        ge=1,
        description="Most bytes of frames all streams may hold on the "
        "model's device (8 frames x envs x H x W x 3 each; 503 + Retry-After above it).",
    )
    compile: bool = Field(
        False,
        description="torch.compile the model (VJEPA_ROBOT_COMPILE=1; for GPUs): batches padded "
        "to 1, 2, 4, ..., 64 windows so a few graphs are reused; every bucket up to max_batch is "
        "compiled at startup (tens of seconds each).",
    )
    token: SecretStr | None = Field(
        None,
        description="Bearer token; when set, every path but the public ones "
        "(services.common.auth.PUBLIC_PATHS: /healthz, /docs, /openapi.json) requires it.",
    )
    token_file: Path | None = Field(None, description="File holding the bearer token (used when `token` is unset).")

    @model_validator(mode="after")
    def _check(self) -> EncoderSettings:
        if self.preset and self.model:
            raise ValueError(f"give a preset ({self.preset!r}) or a model ({self.model!r}), not both")
        if self.preset and self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}: choose one of {', '.join(PRESETS)}")
        if self.family:
            family_named(self.family)  # UnknownFamily (a ValueError) naming the supported families
        if self.fusion and self.fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {self.fusion!r}: choose one of {', '.join(FUSIONS)}")
        return self

    def resolved_token(self) -> str | None:
        from services.common.auth import load_token

        return load_token(self.token.get_secret_value() if self.token else None, self.token_file)
