"""The wire contract: request/response models and the .npy convention, defined once.

Both services import these models (so their OpenAPI schemas are generated from them) and the SDK
parses responses with them. Nothing here imports torch or dm_control.

Shapes at the boundary:
    frames:     (B, T, H, W, 3) uint8, or one window (T, H, W, 3) uint8   -> body of POST /encode (.npy)
    embeddings: (B, D) float32                                           <- JSON lists or .npy (pool=mean)
    token grids: (B, G, D') float16 (default) or float32, G = g*g        <- pool=grid (PoolingSpec)
"""

from __future__ import annotations

import io
import math
import re
from enum import Enum
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_serializer, model_validator

from .window import WINDOW_FRAMES  # noqa: F401  (re-exported: part of the wire contract)

NPY_MEDIA_TYPE = "application/x-npy"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
RUN_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
_NAME_RE = re.compile(NAME_PATTERN)
_RUN_ID_RE = re.compile(RUN_ID_PATTERN)


class FeatureSource(str, Enum):
    """Where a policy's input features come from (one interface for all three: BC, SAC, evaluation, probe)."""

    vjepa2 = "vjepa2"  # frozen V-JEPA 2 embedding of the last 8 frames, from the encoder over HTTP
    state = "state"  # oracle: cos/sin of joint angles, to_target, velocity
    random = "random"  # lower bound: a fixed random vector per step, independent of the frames
    # learning from scratch (issue 27): the step's last PIXEL_FRAMES rendered frames, read by a conv encoder trained
    # end to end with the policy (DrQ-v2's encoder, random-shift augmentation; vjepa_robot_lab/perception/pixels.py)
    pixels = "pixels"


# Feature sources that read the rendered frames (their runs record the frame size; evaluation renders at it)
FRAME_FEATURES: tuple[str, ...] = ("vjepa2", "pixels")
PIXEL_FRAMES = 3  # frames stacked for features=pixels: DrQ-v2's frame_stack and CortexBench's history window


def needs_frames(features) -> bool:
    """Whether a feature source reads rendered frames (vjepa2 through the encoder, pixels through its own conv)."""
    return str(getattr(features, "value", features)) in FRAME_FEATURES


class ExpertName(str, Enum):
    jacobian = "jacobian"
    p_controller = "p-controller"
    random = "random"


class Task(str, Enum):
    """dm_control suite tasks (settings per task: vjepa_robot_lab/envs/tasks.py). Reacher's keep their short names
    `easy`/`hard`; `reacher-easy`/`reacher-hard` are accepted as aliases of them (TASK_ALIASES)."""

    easy = "easy"
    hard = "hard"
    walker_stand = "walker-stand"
    walker_walk = "walker-walk"
    cheetah_run = "cheetah-run"
    finger_spin = "finger-spin"
    cartpole_balance = "cartpole-balance"
    cartpole_swingup = "cartpole-swingup"

    @classmethod
    def _missing_(cls, value):  # pydantic's enum validation calls this too: the aliases validate as their task
        alias = TASK_ALIASES.get(value) if isinstance(value, str) else None
        return cls(alias) if alias else None


TASK_ALIASES: dict[str, str] = {"reacher-easy": "easy", "reacher-hard": "hard"}
RUN_EXPERT_PREFIX = "run:"  # an expert named "run:<run id>" is that trained run's deterministic policy


class Pooling(str, Enum):
    """How the encoder reduces a window's last hidden state (part of the encoder id: rows never mix)."""

    mean = "mean"  # mean over every token: one (D,) vector per window (the default; today's answers byte for byte)
    grid = "grid"  # the (T', h, w, D) token grid reduced over time and average-pooled to g x g: (g*g, D) per window


class Readout(str, Enum):
    """How a policy reads its features (BC and SAC)."""

    mean = "mean"  # the MLP on the mean-pooled embedding (or on state / random vectors)
    attentive = "attentive"  # a cross-attention pooler with learned queries over the stored token grid, then the MLP
    flare = "flare"  # CortexBench's fusion of the last 3 windows' embeddings: latest plus consecutive differences


class Compression(str, Enum):
    """Request-body compression the trainer's encoder clients use (VJEPA_ROBOT_COMPRESS / serve trainer --compress)."""

    auto = "auto"  # zstd for a non-loopback encoder URL, none on loopback
    zstd = "zstd"
    gzip = "gzip"
    none = "none"


DEFAULT_GRID_SIZE = 4  # g: a grid answer has g*g tokens per window
TIME_REDUCTIONS = ("mean", "last")  # how a grid folds V-JEPA 2's T' = 8/2 = 4 temporal token slices into one
EMBEDDING_DTYPES = ("float16", "float32")
EMBEDDING_DTYPE_HEADER = "X-Embedding-Dtype"  # on every .npy answer of /encode and stream steps
MAX_GRID_LAYERS = 8

# The vocabularies as plain strings, for the services, the CLI and messages; the enums above are their one source.
EXPERTS: tuple[str, ...] = tuple(e.value for e in ExpertName)  # also the baseline policies of an evaluation
TASKS: tuple[str, ...] = tuple(t.value for t in Task)
FEATURE_SOURCES: tuple[str, ...] = tuple(f.value for f in FeatureSource)
POOLINGS: tuple[str, ...] = tuple(p.value for p in Pooling)
READOUTS: tuple[str, ...] = tuple(r.value for r in Readout)
COMPRESSIONS: tuple[str, ...] = tuple(c.value for c in Compression)
ExpertPolicy = Literal[EXPERTS]  # a JSON-schema enum of the expert names, for request fields
ACTION_DIM = 2  # reacher's two joint torques, each in [-1, 1]; other tasks: vjepa_robot_lab/envs/tasks.py (action_dim)


def check_action_repeat(episode_steps: int, action_repeat: int, what: str = "episode_steps") -> int:
    """THE episode-length rule: episode_steps counts simulator steps and must be a positive multiple of
    action_repeat. Returns the agent (policy) steps per episode; raises ValueError naming both numbers."""
    if action_repeat < 1 or episode_steps < 1 or episode_steps % action_repeat:
        raise ValueError(
            f"{what} ({episode_steps}) counts simulator steps and must be a positive multiple "
            f"of action_repeat ({action_repeat}), e.g. {what}=1000, action_repeat=4"
        )
    return episode_steps // action_repeat


class RunStatus(str, Enum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    interrupted = "interrupted"


class DatasetState(str, Enum):
    running = "running"
    ready = "ready"
    failed = "failed"


def validate_name(name: str, what: str = "name") -> str:
    """Dataset names are table-name and path safe: letters, digits, '_' and '-', at most 64."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(
            f"invalid {what} {name!r}: use 1-64 letters, digits, '_' or '-', starting with a letter or digit "
            f"(e.g. 'jacobian-easy-500')"
        )
    return name


def validate_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not _RUN_ID_RE.fullmatch(run_id):
        raise ValueError(
            f"invalid run id {run_id!r}: run ids are lowercase letters, digits and '-' (e.g. 'bc-1a2b3c4d')"
        )
    return run_id


# ----------------------------------------------------------------------------------------------------------------
# .npy on the wire
# ----------------------------------------------------------------------------------------------------------------


class NpyError(ValueError):
    """A body that is not a valid, non-object .npy array."""


def npy_header(array: np.ndarray) -> bytes:
    """The .npy (v1) header of a C-contiguous `array`: header + array.data is exactly np.save's output."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, np.lib.format.header_data_from_array_1_0(array))
    return buf.getvalue()


def to_npy_bytes(array: np.ndarray) -> bytes:
    """np.save's bytes of `array`, built with one copy (np.save through BytesIO makes several)."""
    array = np.ascontiguousarray(array)
    return npy_header(array) + array.tobytes()


_NPY_MAGIC = b"\x93NUMPY"
_NPY_HEAD = 64 * 1024 + 16  # a v1 .npy header is at most 65535 + 10 bytes; longer v2 headers are refused
NPY_DTYPE_KINDS = "biuf"  # bool, signed and unsigned ints, floats: what frames and embeddings are (no void, str)
NPY_MAX_NDIM = 32  # numpy's own limit; checked so an over-long shape is a clear error, not numpy's
_HEADERS: dict[bytes, tuple[tuple[int, ...], bool, np.dtype]] = {}  # exact header bytes -> parsed (good ones only)
_MAX_HEADERS = 256


def from_npy_bytes(data: bytes | bytearray | memoryview) -> np.ndarray:
    """Parse a .npy body (any bytes-like) without ever unpickling and without copying the payload: the array is a
    view of `data`. Raises NpyError naming the problem.

    Headers seen before are looked up, not parsed again: numpy's header parser takes ~0.25 ms (measured on the dev
    box), a quarter of a one-window request's server time, and a client sends the same few shapes over and over.
    """
    view = memoryview(data).cast("B")
    if len(view) == 0:
        raise NpyError("empty body: send a .npy array (np.save) with Content-Type: application/x-npy")
    if bytes(view[: len(_NPY_MAGIC)]) != _NPY_MAGIC:
        raise NpyError("body is not a .npy array (missing the \\x93NUMPY magic): serialise frames with np.save")
    shape, fortran, dtype, offset = _known_npy_header(view) or _parse_npy_header(view)
    count = math.prod(shape)  # Python ints: a huge shape cannot overflow into a small or negative count
    expected = count * dtype.itemsize
    payload = view[offset:]
    if len(payload) < expected:
        raise NpyError(
            f"truncated .npy body: header promises {expected} bytes of data (shape {shape}, {dtype.name}), "
            f"got {len(payload)}"
        )
    if len(payload) > expected:
        raise NpyError(
            f".npy body longer than its header says: shape {shape} of {dtype.name} is {expected} bytes of data, "
            f"got {len(payload)}"
        )
    return np.frombuffer(payload, dtype=dtype, count=count).reshape(shape, order="F" if fortran else "C")


def _known_npy_header(view: memoryview):
    size_bytes = {1: 2, 2: 4}.get(view[6]) if len(view) > 7 else None
    if size_bytes is None or len(view) < 8 + size_bytes:
        return None
    offset = 8 + size_bytes + int.from_bytes(view[8 : 8 + size_bytes], "little")
    hit = _HEADERS.get(bytes(view[:offset])) if offset <= len(view) else None
    return None if hit is None else (*hit, offset)


def _parse_npy_header(view: memoryview):
    head = io.BytesIO(bytes(view[:_NPY_HEAD]))
    try:
        version = np.lib.format.read_magic(head)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(head)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(head)
        else:
            raise NpyError(f"unsupported .npy version {version}")
    except NpyError:
        raise
    except Exception as exc:  # malformed (or, for v2, over-long) header
        raise NpyError(f"malformed .npy header: {exc}") from None
    if dtype.hasobject:
        raise NpyError("object arrays are refused (they would need unpickling): send a uint8 array")
    if dtype.kind not in NPY_DTYPE_KINDS or dtype.itemsize not in (1, 2, 4, 8) or dtype.fields or dtype.subdtype:
        raise NpyError(
            f".npy dtype {dtype.str!r} is not accepted: send a plain numeric array "
            f"(bool, int8-64, uint8-64, float16-64; frames are uint8)"
        )
    if not isinstance(shape, tuple) or any(not isinstance(d, int) or d < 0 for d in shape):
        raise NpyError(f"malformed .npy header: shape {shape!r} must be a tuple of ints >= 0")
    if len(shape) > NPY_MAX_NDIM:
        raise NpyError(f".npy array has {len(shape)} dimensions: at most {NPY_MAX_NDIM} are accepted")
    offset = head.tell()
    if len(_HEADERS) < _MAX_HEADERS:
        _HEADERS[bytes(view[:offset])] = (shape, fortran, dtype)
    return shape, fortran, dtype, offset


# ----------------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class _Open(BaseModel):
    """Responses may grow fields; clients must not break on them."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())


class ErrorResponse(_Open):
    detail: Any = Field(description="What went wrong and how to fix it.")


class HealthResponse(_Open):
    status: Literal["ok"] = "ok"


class PoolingSpec(_Model):
    """How the encoder reduces a window's tokens; part of the encoder id (`encoder_id(base_id)`), so embeddings
    tables keyed by encoder id never mix mean rows with grid rows, or grids of different sizes, layers or dtypes.

    pool=mean (the default): the mean over every token of the last hidden state, (D,) float32 per window: the
        base encoder id, today's answers byte for byte.
    pool=grid: the (T', h, w, D) token grid (V-JEPA 2 orders tokens t, h, w: tubelet 2, patch 16), folded over
        time (`time`: mean over the T' slices, the default, or the last slice only), then adaptive-average-pooled
        to grid_size x grid_size: (g*g, D) per window, tokens in row-major (row, column) order. With `layers`
        (0-based block indices, e.g. 17,19,21,23 as V-JEPA 2's probes read ViT-L) each block's output goes through
        the final LayerNorm (as facebookresearch/vjepa2 does for out_layers) and they are concatenated on D.
        Answered and stored as float16 unless dtype=float32.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    pool: Pooling = Field(Pooling.mean, description="mean: one (D,) vector per window; grid: (g*g, D) tokens.")
    grid_size: int = Field(DEFAULT_GRID_SIZE, ge=1, le=64, description="g (pool=grid): g x g tokens per window.")
    time: Literal[TIME_REDUCTIONS] = Field(
        "mean", description="pool=grid: fold the T' temporal slices by their mean, or keep the last slice."
    )
    layers: tuple[int, ...] | None = Field(
        None,
        min_length=1,
        max_length=MAX_GRID_LAYERS,
        description="pool=grid: 0-based transformer blocks whose (LayerNorm'd) outputs are concatenated on D; "
        "default: the last hidden state.",
    )
    dtype: Literal[EMBEDDING_DTYPES] | None = Field(
        None, description="Answer and storage dtype: float16 (grid default) or float32 (mean: always float32)."
    )

    @model_validator(mode="after")
    def _consistent(self):
        if self.layers is not None:
            if any(i < 0 for i in self.layers) or len(set(self.layers)) != len(self.layers):
                raise ValueError(f"layers must be distinct block indices >= 0, got {list(self.layers)}")
            if self.pool is Pooling.mean:
                raise ValueError("layers apply to pool=grid only (pool=mean is the last hidden state's mean)")
        if self.pool is Pooling.mean and self.dtype == "float16":
            raise ValueError("pool=mean answers float32 only; float16 is for pool=grid")
        return self

    @classmethod
    def of(
        cls,
        pool: str | Pooling = Pooling.mean,
        grid_size: int = DEFAULT_GRID_SIZE,
        time: str = "mean",
        layers: str | list[int] | tuple[int, ...] | None = None,
        dtype: str | None = None,
    ) -> PoolingSpec:
        """From loose arguments (a query string's layers '17,19,21,23' too); raises pydantic's ValidationError."""
        if isinstance(layers, str):
            layers = parse_layers(layers)
        return cls(pool=pool, grid_size=grid_size, time=time, layers=layers, dtype=dtype)

    @property
    def is_grid(self) -> bool:
        return self.pool is Pooling.grid

    @property
    def wire_dtype(self) -> str:
        return self.dtype or ("float16" if self.is_grid else "float32")

    @property
    def tokens(self) -> int:
        """G: tokens per window (1 for mean)."""
        return self.grid_size**2 if self.is_grid else 1

    def tag(self) -> str:
        """'' for mean; 'grid4-tmean', 'grid8-tlast-l17_19_21_23', 'grid4-tmean-f32' for grids (id-safe)."""
        if not self.is_grid:
            return ""
        out = f"grid{self.grid_size}-t{self.time}"
        if self.layers:
            out += "-l" + "_".join(map(str, self.layers))
        return out + ("-f32" if self.wire_dtype == "float32" else "")

    def encoder_id(self, base_id: str) -> str:
        """The id rows of this pooling are keyed by: the base id for mean (unchanged), `<base>-<tag>` for grids."""
        return f"{base_id}-{self.tag()}" if self.is_grid else base_id

    def lineage(self) -> dict[str, Any]:
        """Recorded next to every embedding and in run lineages."""
        return {
            "pooling": self.pool.value,
            "grid_size": self.grid_size if self.is_grid else None,
            "time_reduction": self.time if self.is_grid else None,
            "layers": list(self.layers) if self.layers else None,
            "embedding_dtype": self.wire_dtype,
        }

    def query(self) -> dict[str, str]:
        """Query parameters for POST /encode (empty for the default, so a mean request is unchanged)."""
        if not self.is_grid:
            return {}
        q = {"pool": self.pool.value, "grid_size": str(self.grid_size)}
        if self.time != "mean":
            q["time"] = self.time
        if self.layers:
            q["layers"] = ",".join(map(str, self.layers))
        if self.dtype:
            q["dtype"] = self.dtype
        return q

    def fields(self) -> dict[str, Any]:
        """Request-body fields (POST /streams, /datasets/{name}/encode); empty for the default (old servers)."""
        return {} if not self.is_grid else self.model_dump(mode="json", exclude_none=True)


MEAN_POOLING = PoolingSpec()


def _check_pooling(request):
    """A request's pool fields must form a valid PoolingSpec (its message, not pydantic's nested one)."""
    from pydantic import ValidationError

    try:
        _ = request.pooling  # building the spec validates it
    except ValidationError as exc:
        raise ValueError("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())) from None
    return request


def parse_layers(value: str) -> tuple[int, ...]:
    """'17,19,21,23' -> (17, 19, 21, 23); raises ValueError naming the bad token."""
    out = []
    for token in value.split(","):
        token = token.strip()
        if not token:
            continue
        try:
            out.append(int(token))
        except ValueError:
            raise ValueError(
                f"layers: {token!r} is not a block index; give comma-separated integers, e.g. layers=17,19,21,23"
            ) from None
    if not out:
        raise ValueError("layers: give at least one block index, e.g. layers=17,19,21,23")
    return tuple(out)


def pooled_encoder_id(
    base_id: str,
    pool: str = "mean",
    grid_size: int = DEFAULT_GRID_SIZE,
    time: str = "mean",
    layers: list[int] | tuple[int, ...] | str | None = None,
    dtype: str | None = None,
) -> str:
    """The encoder id a pooling's embeddings are stored under (Store.read_embeddings' key), from GET /info's id."""
    return PoolingSpec.of(pool, grid_size, time, layers, dtype).encoder_id(base_id)


class EncoderInfo(_Open):
    encoder_id: str = Field(
        description="Hash of model source + revision + preprocessing + dtype (pool=mean rows; "
        "grids: PoolingSpec.encoder_id(encoder_id))."
    )
    model: str
    dim: int
    frames: int
    image_size: int
    dtype: str
    device: str
    max_batch: int
    random_init: bool | None = Field(
        None,
        description="True for random-init weights (a stand-in, e.g. presets "
        "tiny and vitl-random); set where the encoder is loaded.",
    )
    poolings: list[str] = Field(default_factory=lambda: ["mean"], description="The `pool` values served.")
    token_grid: list[int] | None = Field(None, description="[T', h, w]: a window's token grid (grid_size <= h).")
    layers: int | None = Field(None, description="Transformer blocks (valid `layers` indices: 0 .. layers-1).")
    # issue 18: the pinned weights and the backbone family (None from servers older than these fields)
    weights: str | None = Field(
        None,
        description="The loaded weights, pinned: the hub commit sha the revision "
        "resolved to, 'sha256:<hex>' of a local directory's files, or 'random-init:...'.",
    )
    revision: str | None = Field(
        None,
        description="The hub revision asked for (e.g. 'main'); `weights` is what it "
        "resolved to. None for directories and presets.",
    )
    family: str | None = Field(
        None, description="Backbone family: vjepa2 | videomae | dinov2 | siglip | efficientnet-lite."
    )
    token_pooling: str | None = Field(
        None, description="How one forward's tokens become a vector (mean, cls, map, gap: global average pool)."
    )
    fusion: str | None = Field(
        None,
        description="How an image family's per-frame vectors fuse over the window "
        "(mean, last, last3); 'video' for video families.",
    )
    family_label: str | None = Field(
        None, description="How reports name the family (e.g. 'V-JEPA 2'); None from servers older than this field."
    )


class EncodeResponse(_Open):
    encoder_id: str
    dim: int
    embeddings: list[list[float]] | list[list[list[float]]] = Field(
        description="(B, D) for pool=mean; (B, G, D) for pool=grid."
    )


class DatasetEncodeRequest(_Model):
    batch_size: int = Field(32, ge=1, le=1024, description="Windows per forward pass.")
    pool: Pooling = Field(Pooling.mean, description="mean (default) or grid: see PoolingSpec.")
    grid_size: int = Field(DEFAULT_GRID_SIZE, ge=1, le=64, description="g for pool=grid: g*g tokens per window.")
    time: Literal[TIME_REDUCTIONS] = "mean"
    layers: list[int] | None = Field(None, min_length=1, max_length=MAX_GRID_LAYERS)
    dtype: Literal[EMBEDDING_DTYPES] | None = None

    @property
    def pooling(self) -> PoolingSpec:
        return PoolingSpec.of(self.pool, self.grid_size, self.time, self.layers, self.dtype)

    _pooling_ok = model_validator(mode="after")(lambda self: _check_pooling(self))


class DatasetEncodeStatus(_Open):
    dataset: str
    encoder_id: str | None = None
    status: Literal["idle", "running", "done", "failed"]
    done: int = 0
    total: int = 0
    error: str | None = None


# -- frame streams: POST /streams, POST /streams/{id}/step (one .npy frame per env), DELETE /streams/{id} ----------

# THE request-body encodings (Content-Encoding) the encoder decompresses and the SDK sends; "identity" (or no header)
# means uncompressed. services/encoder/streams.decompress and the SDK's compress_body both read this tuple.
CONTENT_ENCODINGS: tuple[str, ...] = ("zstd", "gzip")

# Every request of a frame stream carries this header with the stream's own key, so a router with header affinity
# keeps the stream on one encoder replica (Modal's name for the header; any load balancer can hash on it).
STREAM_SESSION_HEADER = "Modal-Session-ID"


class StreamCreateRequest(_Model):
    envs: int = Field(ge=1, le=4096, description="Envs stepping in lockstep; each step sends one frame per env.")
    height: int = Field(ge=1, le=4096, description="Frame height in pixels (every step's frames must match).")
    width: int = Field(ge=1, le=4096, description="Frame width in pixels.")
    pool: Pooling = Field(Pooling.mean, description="mean: steps answer (N, D); grid: (N, g*g, D) (PoolingSpec).")
    grid_size: int = Field(DEFAULT_GRID_SIZE, ge=1, le=64, description="g for pool=grid.")
    time: Literal[TIME_REDUCTIONS] = "mean"
    layers: list[int] | None = Field(None, min_length=1, max_length=MAX_GRID_LAYERS)
    dtype: Literal[EMBEDDING_DTYPES] | None = None

    @property
    def pooling(self) -> PoolingSpec:
        return PoolingSpec.of(self.pool, self.grid_size, self.time, self.layers, self.dtype)

    _pooling_ok = model_validator(mode="after")(lambda self: _check_pooling(self))


class StreamCreated(_Open):
    stream_id: str
    envs: int
    ttl_s: float = Field(description="The stream is dropped after this many idle seconds (then 404).")
    encoder_id: str = Field(description="The id of the stream's pooling (PoolingSpec.encoder_id).")


def validate_expert(value: str) -> str:
    """A scripted expert's name, or `run:<run id>` (a trained run's policy as the demonstrator)."""
    if isinstance(value, ExpertName):
        return value.value
    if isinstance(value, str) and value.startswith(RUN_EXPERT_PREFIX):
        validate_run_id(value[len(RUN_EXPERT_PREFIX) :])
        return value
    if value in EXPERTS:
        return value
    raise ValueError(f"unknown expert {value!r}: choose one of {', '.join(EXPERTS)} or run:RUN_ID (a trained run)")


class CreateDatasetRequest(_Model):
    name: str = Field(description="Dataset name: letters, digits, '_' or '-'.", examples=["jacobian-easy-150"])
    expert: str = Field(
        ExpertName.jacobian.value,
        description=f"A scripted expert ({', '.join(EXPERTS)}; reacher only) or run:RUN_ID: a trained run's "
        "deterministic policy (state-feature SAC or BC runs; the run's task must be the dataset's).",
        examples=["jacobian", "run:sac-1a2b3c4d"],
    )
    task: Task = Task.easy
    episodes: int = Field(100, ge=1, le=100_000)
    steps: int = Field(200, ge=1, le=10_000)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    image_size: int = Field(256, ge=0, le=1024, description="Frame size; 0 stores no frames (state-only datasets).")
    workers: int = Field(2, ge=1, le=64)
    overwrite: StrictBool = False  # strict: "yes" or 1 is a 422, never an overwrite
    resume: StrictBool = Field(
        False,
        description="Complete an interrupted or failed dataset of this name with the same arguments (the CLI's "
        "--resume); 409 while its generator is alive.",
    )

    _name = field_validator("name")(lambda cls, v: validate_name(v, "dataset name"))
    _expert = field_validator("expert", mode="before")(lambda cls, v: validate_expert(v))

    @model_validator(mode="after")
    def _one_of_overwrite_resume(self):
        if self.overwrite and self.resume:
            raise ValueError("send overwrite (replace the dataset) or resume (complete it), not both")
        return self


class DatasetInfo(_Open):
    name: str
    status: DatasetState
    expert: str | None = None
    task: str | None = None
    episodes: int = 0
    episodes_done: int = 0
    steps: int = 0
    seed: int | None = None
    image_size: int | None = None
    success_rate: float | None = None
    mean_return: float | None = None
    created_at: str | None = None
    version: str | None = None
    error: str | None = None


MAX_SEEDS = 32


class _Seeded(_Model):
    """Seeds as an axis: `seeds` (or `n_seeds`) starts one run per seed under a shared study id."""

    seeds: list[int] | None = Field(
        None,
        min_length=1,
        max_length=MAX_SEEDS,
        description="One run per training seed, under one study (GET /studies/{id}).",
    )
    n_seeds: int | None = Field(None, ge=1, le=MAX_SEEDS, description="Shorthand for seeds = seed .. seed+n_seeds-1.")
    study_id: str | None = Field(None, description="Set by the trainer on each run of a study; leave it out.")

    @model_validator(mode="after")
    def _one_seed_axis(self):
        if self.seeds is not None and self.n_seeds is not None:
            raise ValueError("give seeds or n_seeds, not both")
        if self.seeds is not None:
            if len(set(self.seeds)) != len(self.seeds):
                raise ValueError(f"seeds must be distinct, got {self.seeds}")
            if any(s < 0 or s > 2**31 - 1 for s in self.seeds):
                raise ValueError(f"seeds must be in [0, 2^31-1], got {self.seeds}")
        if self.study_id is not None:
            validate_run_id(self.study_id)
        return self

    @property
    def is_study(self) -> bool:
        return self.seeds is not None or self.n_seeds is not None

    def run_seeds(self) -> list[int]:
        if self.seeds is not None:
            return list(self.seeds)
        if self.n_seeds is not None:
            return [self.seed + k for k in range(self.n_seeds)]  # type: ignore[attr-defined]
        return [self.seed]  # type: ignore[attr-defined]

    def for_seed(self, seed: int, study_id: str | None):
        """The config of one run: this request at one seed, with the study it belongs to."""
        return self.model_copy(update={"seed": seed, "seeds": None, "n_seeds": None, "study_id": study_id})


class _ReadoutChoice(_Model):
    """How the policy reads its features (BC and SAC alike); vjepa_robot_lab/perception/readouts.py and
    docs/readouts.md."""

    readout: Readout = Field(
        Readout.mean,
        description="mean: the MLP on the mean-pooled embedding; attentive: a "
        "cross-attention pooler over the stored token grid (V-JEPA 2's attentive probe), then "
        "the MLP; flare: the MLP on CortexBench's fusion of the last 3 windows' embeddings.",
    )
    grid_size: int = Field(
        DEFAULT_GRID_SIZE,
        ge=1,
        le=64,
        description="attentive only: the token grid is g x g (g*g tokens per window); ignored by mean and flare.",
    )


class Protocol(str, Enum):
    """A named evaluation recipe (vjepa_robot_lab/experiments/protocols.py)."""

    cortexbench = "cortexbench"  # facebookresearch/eai-vc cortexbench/mujoco_vc, DMC_BC_config.yaml + train_loop.py


PROTOCOLS: tuple[str, ...] = tuple(p.value for p in Protocol)


class TrainBCRequest(_Seeded, _ReadoutChoice):
    dataset: str
    features: FeatureSource = FeatureSource.vjepa2
    epochs: int = Field(100, ge=1, le=10_000)
    batch_size: int = Field(256, ge=1, le=65_536)
    lr: float = Field(1e-3, gt=0, le=1.0)
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    select: Literal["best_val", "last"] = Field(
        "best_val", description="Which epoch's weights the run keeps: lowest validation MSE, or the last epoch."
    )
    # issue 18 item 5: the head CortexBench's DMC recipe trains, and the preset that sets it (protocols.py)
    head: Literal["findings", "batchnorm"] = Field(
        "findings",
        description="findings: Linear-LayerNorm-ReLU (256, 64) + Tanh (the first "
        "study's MLP); batchnorm: BatchNorm1d on the input features, then ReLU layers of hidden_sizes and a linear "
        "output (mjrl's BatchNormMLP, as CortexBench trains it).",
    )
    hidden_sizes: list[int] | None = Field(
        None, min_length=1, max_length=8, description="Hidden widths; None: the head's own ((256, 64) or (256,)*3)."
    )
    lr_schedule: Literal["cosine", "constant"] = Field(
        "cosine", description="cosine decay over the epochs (the findings), or Adam at a constant lr (CortexBench)."
    )
    protocol: Protocol | None = Field(
        None,
        description="A named recipe (vjepa_robot_lab/experiments/protocols.py): its values fill every field the "
        "request leaves out; cortexbench = eai-vc's DMC BC recipe (docs/bakeoff.md).",
    )

    _name = field_validator("dataset")(lambda cls, v: validate_name(v, "dataset name"))

    @field_validator("hidden_sizes")
    @classmethod
    def _widths(cls, v):
        if v is not None and any(w < 1 or w > 8192 for w in v):
            raise ValueError(f"hidden_sizes must be widths in [1, 8192], got {v}")
        return v

    @model_validator(mode="after")
    def _pixels_read_mean(self):
        if self.features == FeatureSource.pixels and self.readout != Readout.mean:
            raise ValueError(
                f"features 'pixels' train their own conv encoder on the frames: readout must be 'mean' (the "
                f"encoder's flattened output into the MLP), not {self.readout.value!r}"
            )
        return self


class EvalTargets(str, Enum):
    """Where evaluation episodes put the reacher target (vjepa_robot_lab/evaluation/evaluate.py, issue 22)."""

    uniform = "uniform"  # dm_control's own draw from each episode's seed (radius 0.05-0.20 m, any angle)
    stratified = "stratified"  # equal episodes near / middle / far from the base, angles spread: episodes % 3 == 0


STRATIFIED_EPISODES = {"episodes": 99, "final_eval_episodes": 30}  # defaults where targets=stratified: 33 / 10 a bin


def stratified_default(data: Any, targets: str, episodes: str) -> Any:
    """Before validation: with stratified targets and no episode count given, the count that fills the 3 bins."""
    if isinstance(data, dict) and str(getattr(data.get(targets), "value", data.get(targets))) == "stratified":
        if data.get(episodes) is None:
            data = {**data, episodes: STRATIFIED_EPISODES[episodes]}
    return data


def check_stratified(targets: EvalTargets, episodes: int, what: str = "episodes", task: Task = Task.easy) -> None:
    if targets == EvalTargets.stratified and task not in (Task.easy, Task.hard):
        raise ValueError(f"targets=stratified places reacher targets: task {task.value} has none (use uniform)")
    if targets == EvalTargets.stratified and episodes % 3:
        raise ValueError(
            f"targets=stratified spreads episodes evenly over 3 distance bins (near 0.05-0.10, middle 0.10-0.15, "
            f"far 0.15-0.20 m): {what} must be a multiple of 3 (e.g. 30 or 99), got {episodes}"
        )


class SACNetworks(str, Enum):
    """Named SAC network configurations (vjepa_robot_lab/learning/sac.py NETWORKS; bench/SAC_RESULTS.md measures
    them)."""

    findings = "findings"  # the first study's [256, 64] MLP actor and critics (the seed's Phase 2 plan)
    ln = "ln"  # the findings' sizes, critics with a LayerNorm after each hidden layer (RLPD, Ball et al. 2023)
    bro = "bro"  # [256, 64] actor; critic of LayerNorm'd residual blocks (BRO, Nauman et al. 2024), width 128


# The SAC defaults of `state` features: issue 22's 5-seed winner on the stratified evaluation (bench/SAC_RESULTS.md,
# "Issue 22"): LayerNorm'd critics (`ln`) on every task, and on reacher 200-step training episodes (five times the
# targets and starts of 1000-step ones in the same budget; evaluation keeps episode_steps). vjepa2 and random keep
# the findings' networks and training episodes of episode_steps (the seed's Phase 2 plan); any run can name either.
SAC_DEFAULT_NETWORKS: dict[str, str] = {"state": "ln"}  # features -> SACNetworks value; others: findings
SAC_STATE_REACHER_TRAIN_EPISODE_STEPS = 200


def sac_default_networks(features: Any) -> str:
    """The networks a SAC request on `features` (a FeatureSource or its value) gets when it names none."""
    return SAC_DEFAULT_NETWORKS.get(str(getattr(features, "value", features)), "findings")


def sac_feature_defaults(data: Any) -> Any:
    """Before validation: fill `networks` and (state on reacher) `train_episode_steps` where the request leaves them
    out, so the run record names what the run used."""
    if not isinstance(data, dict):
        return data
    features = str(getattr(data.get("features"), "value", data.get("features") or "state"))
    out = dict(data)
    if out.get("networks") is None:
        out["networks"] = sac_default_networks(features)
    task = str(getattr(out.get("task"), "value", out.get("task") or "easy"))
    if features == "state" and TASK_ALIASES.get(task, task) in ("easy", "hard") and not out.get("train_episode_steps"):
        steps, repeat = out.get("episode_steps", 1000), out.get("action_repeat", 4)
        if isinstance(steps, int) and isinstance(repeat, int) and steps > 0 and repeat > 0:
            short = min(SAC_STATE_REACHER_TRAIN_EPISODE_STEPS, steps)
            if short - short % repeat > 0:  # whole agent steps, so the default never fails validation itself
                out["train_episode_steps"] = short - short % repeat
    return out


class TrainSACRequest(_Seeded, _ReadoutChoice):
    features: FeatureSource = FeatureSource.state
    task: Task = Task.easy
    total_steps: int = Field(100_000, ge=1, le=100_000_000, description="Simulator steps (action repeats counted).")
    parallel_envs: int = Field(16, ge=1, le=256)
    episode_steps: int = Field(1000, ge=1, le=10_000, description="Simulator steps per evaluation episode.")
    train_episode_steps: int | None = Field(
        None,
        ge=1,
        le=10_000,
        description="Simulator steps per training episode. Omitted: 200 for state features on reacher (issue 22's "
        "5-seed result: more targets and starts in the same total_steps), else episode_steps.",
    )
    action_repeat: int = Field(4, ge=1, le=16)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    learning_starts: int = Field(4000, ge=0, description="Env steps of uniform random actions before updates.")
    batch_size: int = Field(256, ge=1, le=65_536)
    lr: float = Field(1e-3, gt=0, le=1.0)
    lr_final: float | None = Field(
        None,
        gt=0,
        le=1.0,
        description="Decay every optimiser's learning rate linearly from lr (when updates start) to lr_final (at "
        "total_steps), as SimbaV2 does; omitted: lr throughout.",
    )
    gamma: float = Field(0.99, gt=0, le=1.0)
    tau: float = Field(0.01, gt=0, le=1.0)
    buffer_size: int = Field(1_000_000, ge=1)
    gradient_steps: int = Field(
        -1, ge=-1, description="Updates per vector step; -1 = updates_per_transition x parallel_envs."
    )
    updates_per_transition: int = Field(
        2,
        ge=1,
        le=32,
        description="Update-to-data ratio when gradient_steps=-1 "
        "(per agent transition; 2 reached the 900 bar on state features).",
    )
    checkpoint_every: int = Field(20_000, ge=1, description="Env steps between checkpoints.")
    eval_every: int = Field(10_000, ge=1, description="Env steps between learning-curve points.")
    image_size: int = Field(256, ge=16, le=1024, description="Render size for vjepa2 features.")
    n_step: int = Field(3, ge=1, le=20, description="n-step returns in the critic target (1 = plain SAC).")
    init_entropy_coef: float = Field(0.1, gt=0, le=10.0, description="Initial entropy coefficient (auto-tuned).")
    eval_episodes: int = Field(5, ge=1, le=1000, description="Deterministic evaluation episodes per curve point.")
    final_eval_episodes: int = Field(10, ge=1, le=10_000, description="Episodes of the final evaluation.")
    eval_seed: int = Field(0, ge=0, le=2**31 - 1, description="Evaluation seeds: env.eval_episode_seed(eval_seed, k).")
    checkpoint_replay: StrictBool = Field(
        True,
        description="Save the replay buffer (.npy) with each checkpoint, so a "
        "resumed run keeps its data; off: resume refills learning_starts first.",
    )
    final_eval_targets: EvalTargets = Field(
        EvalTargets.uniform, description="Targets of the final evaluation (stratified: final_eval_episodes % 3 == 0)."
    )
    networks: SACNetworks | None = Field(
        None,
        description="Network configuration (sac.NETWORKS). Omitted: the features' default (SAC_DEFAULT_NETWORKS): "
        "ln on state (LayerNorm'd critics, issue 22's 5-seed result), findings on vjepa2 and random.",
    )

    _stratified_default = model_validator(mode="before")(
        classmethod(lambda cls, d: stratified_default(d, "final_eval_targets", "final_eval_episodes"))
    )
    _feature_defaults = model_validator(mode="before")(classmethod(lambda cls, d: sac_feature_defaults(d)))

    @model_validator(mode="after")
    def _episode_steps_multiple(self):
        if self.features == FeatureSource.pixels:  # issue 27: the pixels control is BC only (SAC did not fit)
            raise ValueError(
                "features 'pixels' (a conv encoder trained end to end) is built for BC only (POST /train/bc): "
                "SAC from pixels is not built; use features 'state', 'vjepa2' or 'random'"
            )
        check_action_repeat(self.episode_steps, self.action_repeat)
        if self.train_episode_steps is not None:
            check_action_repeat(self.train_episode_steps, self.action_repeat, "train_episode_steps")
        check_stratified(self.final_eval_targets, self.final_eval_episodes, "final_eval_episodes", self.task)
        return self


class RunCreated(_Open):
    """A started run; a multi-seed request also names its study and every run (run_id is the first run)."""

    run_id: str
    study_id: str | None = None
    run_ids: list[str] | None = None


DEFAULT_EVAL_IMAGE_SIZE = 256  # frames rendered for runs that recorded no frame size of their own


class EvalRequest(_Model):
    """An evaluation request; its defaults live here only (the SDK and CLI send just what the user gave)."""

    episodes: int = Field(100, ge=1, le=10_000)
    task: Task = Task.easy
    steps: int = Field(
        200,
        ge=10,
        le=10_000,
        description="Simulator steps per episode (a multiple of the run's action_repeat). Left out, a run is "
        "evaluated at its own episode length (SAC: its episode_steps; BC: its dataset's), a baseline at 200.",
    )
    seed: int = Field(
        0,
        ge=0,
        le=2**31 - 1,
        description="Evaluation seed offset: episode k is seeded 1e9 + seed + k, a range no training episode uses.",
    )
    parallel_envs: int = Field(8, ge=1, le=256)
    image_size: int | None = Field(
        None,
        ge=16,
        le=1024,
        description="Frame size. Omitted: the run's own training "
        "frame size (lineage.image_size); a different size needs allow_image_size_change.",
    )
    allow_image_size_change: StrictBool = Field(
        False, description="Evaluate at an image_size other than the run's own."
    )
    gif_episodes: int = Field(2, ge=0, le=16, description="Episodes recorded as a GIF for the report.")
    targets: EvalTargets = Field(
        EvalTargets.uniform,
        description="Where the reacher targets go: uniform (dm_control's draw) or stratified (equal episodes near, "
        "middle and far from the base; episodes a multiple of 3).",
    )

    _stratified_default = model_validator(mode="before")(
        classmethod(lambda cls, d: stratified_default(d, "targets", "episodes"))
    )

    @model_validator(mode="after")
    def _stratified_episodes(self):
        check_stratified(self.targets, self.episodes, task=self.task)
        return self


class BaselineEvalRequest(EvalRequest):
    policy: ExpertPolicy = "jacobian"


class EpisodeResult(_Open):
    seed: int
    success: bool | None = Field(description="None where the task defines no success (every task but reacher's).")
    # `return` is a Python keyword: the attribute is `return_`, the JSON field is "return".
    return_: float = Field(alias="return")

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class DictReadable:
    """Read access as the dict this model replaced (record["status"], .get("error")), for callers that have not
    moved to attributes yet; writing goes through attributes only."""

    def __getitem__(self, key: str) -> Any:
        if key not in type(self).model_fields and key not in (self.model_extra or {}):  # type: ignore[attr-defined]
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default


class EvalResult(DictReadable, _Open):
    run_id: str
    eval_id: int | None = None
    status: RunStatus
    task: str | None = None
    success_rate: float | None = None
    success_ci95: list[float] | None = None
    mean_return: float | None = None
    episodes: list[EpisodeResult] = Field(default_factory=list)
    steps_per_second: float | None = None
    episodes_done: int | None = Field(None, description="Progress of a running evaluation.")
    episodes_total: int | None = None
    error: str | None = None
    request: dict[str, Any] | None = Field(None, description="The resolved EvalRequest this evaluation ran.")
    from_run: list[str] | None = Field(
        None, description="Request fields left out and taken from the run's own settings (task, steps, image_size)."
    )
    image_size: int | None = Field(None, description="Frame size rendered for the policy (None: no frames).")
    gif: list[str] | None = Field(None, description="Rollout GIFs the trainer wrote (paths on its disk).")
    created_at: str | None = None

    @field_validator("gif", mode="before")
    @classmethod
    def _gif_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


class _Fields(_Open):
    """A typed record that also reads like the dict it replaced (record.metrics["epoch"], .get("epoch"))."""

    def __getitem__(self, key: str) -> Any:
        if key not in self:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in self else default

    def __contains__(self, key: str) -> bool:  # as for the dict: the keys the record carries
        fields = type(self).model_fields if self._defaults_count else self.model_fields_set
        return key in fields or key in (self.model_extra or {})

    _defaults_count: ClassVar[bool] = False  # configs: every field has a value; metrics: only what was written

    @model_serializer(mode="wrap")
    def _written_only(self, handler):  # metrics go back on the wire as written: no null for a key never set
        data = handler(self)
        if self._defaults_count or not isinstance(data, dict):
            return data
        keep = self.model_fields_set | set(self.model_extra or {})
        return {k: v for k, v in data.items() if k in keep}

    def keys(self):
        return self.model_dump(by_alias=True).keys()


class BCConfig(TrainBCRequest, _Fields):
    """A BC run's config: its request at one seed (records may carry fields a newer trainer added)."""

    _defaults_count: ClassVar[bool] = True

    model_config = ConfigDict(extra="allow", protected_namespaces=())


class SACConfig(TrainSACRequest, _Fields):
    _defaults_count: ClassVar[bool] = True
    model_config = ConfigDict(extra="allow", protected_namespaces=())


class BaselineConfig(_Fields):
    _defaults_count: ClassVar[bool] = True
    policy: ExpertPolicy
    task: Task = Task.easy


class RunLineage(_Fields):
    """What a policy saw in training, so evaluation can match it: one typed record, written where each fact is
    known (features and encoder where the feature source is opened, frames and dataset where the request is
    validated). Records written by older trainers are migrated into it by vjepa_robot_lab.records.runs.migrate."""

    _defaults_count: ClassVar[bool] = True

    features: FeatureSource
    dim: int | None = None
    encoder_id: str | None = Field(None, description="vjepa2 only: the encoder evaluation must match.")
    encoder_model: str | None = Field(
        None, description="vjepa2 only: the encoder's /info model (e.g. 'preset:tiny' or a hub id)."
    )
    encoder_image_size: int | None = Field(None, description="vjepa2 only: the encoder's input size (px).")
    encoder_dtype: str | None = None
    random_init: bool | None = Field(
        None,
        description="vjepa2 only: the encoder's weights are random (a stand-in, "
        "not a V-JEPA 2 result), as its /info said; None = not recorded.",
    )
    pooling: Pooling = Field(Pooling.mean, description="How the encoder reduced each window (vjepa2).")
    grid_size: int | None = Field(None, description="g of a grid answer (g*g tokens per window); None for mean.")
    readout: Readout = Field(Readout.mean, description="How the policy read its features.")
    dataset: str | None = None
    image_size: int | None = Field(
        None, description="Frame size (px) of the frames the policy learned from; None when its features use no frames."
    )
    action_repeat: int = Field(1, description="Simulator steps per action (SAC); evaluation acts at the same rate.")
    task: str | None = Field(None, description="The task it trained on (SAC: its request's; BC: its dataset's).")
    # issue 18 item 2: the encoder's pinned weights and what it is, from its GET /info (None: not recorded)
    weights: str | None = Field(
        None,
        description="vjepa2 only: EncoderInfo.weights, the loaded weights pinned (hub "
        "commit sha, 'sha256:<hex>' of a local directory, or 'random-init:...').",
    )
    family: str | None = Field(None, description="vjepa2 only: the backbone family (vjepa2, videomae, dinov2, siglip).")
    fusion: str | None = Field(None, description="vjepa2 only: how an image family fused the window's frames.")
    token_pooling: str | None = Field(None, description="vjepa2 only: how one forward's tokens became a vector.")
    family_label: str | None = Field(None, description="vjepa2 only: EncoderInfo.family_label, the family's name.")

    @property
    def is_stand_in(self) -> bool:
        """vjepa2 features from a random-init encoder: a plumbing check, not a V-JEPA 2 result."""
        return self.features == FeatureSource.vjepa2 and bool(self.random_init)


class BCMetrics(_Fields):
    """What BC writes: every epoch (epoch/epochs, losses and curves), then the final fit statistics."""

    epoch: int | None = None
    epochs: int | None = None
    train_loss: float | None = None
    val_loss: float | None = None
    train_loss_curve: list[float | None] = Field(default_factory=list)
    val_loss_curve: list[float | None] = Field(default_factory=list)
    checkpoint: str | None = None
    select: str | None = None
    best_epoch: int | None = None
    best_val_loss: float | None = None
    selected_epoch: int | None = Field(None, description="1-based epoch whose weights the run kept.")
    n_train: int | None = None
    n_val: int | None = None
    train_s: float | None = None
    features_lineage: dict[str, Any] | None = Field(
        None,
        description="The feature source's lineage as BC wrote it "
        "(read RunRecord.lineage instead: the one typed lineage).",
    )


class SACFinalEval(_Fields):
    mean_return: float
    std_return: float | None = None
    success_rate: float | None = None
    episodes: int | None = None
    returns: list[float] = Field(default_factory=list)


class SACCurvePoint(_Open):
    """One learning-curve point: a deterministic evaluation during training."""

    env_steps: int
    mean_return: float | None = None
    std_return: float | None = None
    success_rate: float | None = None
    eval_episodes: int | None = None


class SACMetrics(_Fields):
    """What SAC writes: progress (env_steps of total_steps), the learning curve, then the final evaluation."""

    env_steps: int | None = None
    total_steps: int | None = None
    agent_steps: int | None = None
    updates: int | None = None
    action_repeat: int | None = None
    curve: list[SACCurvePoint] = Field(default_factory=list)
    final_eval: SACFinalEval | None = None
    features_lineage: dict[str, Any] | None = None


class BaselineMetrics(_Fields):
    success_rate: float | None = None


RUN_TYPES: dict[str, tuple[type[_Fields], type[_Fields]]] = {
    "bc": (BCConfig, BCMetrics),
    "sac": (SACConfig, SACMetrics),
    "baseline": (BaselineConfig, BaselineMetrics),
}


def typed_fields(kind: str, config: Any, metrics: Any) -> tuple[_Fields, _Fields]:
    """A run's config and metrics as the models of its kind; a record they do not fit stays readable as _Fields."""
    config_t, metrics_t = RUN_TYPES.get(kind, (_Fields, _Fields))
    out = []
    for model, raw in ((config_t, config), (metrics_t, metrics)):
        if isinstance(raw, _Fields):
            out.append(raw)
            continue
        try:
            out.append(model.model_validate(raw or {}))
        except ValueError:
            out.append(_Fields.model_validate(raw or {}))
    return out[0], out[1]


class RunRecord(DictReadable, _Open):
    """A run as the trainer stores and serves it; config and metrics are the models of its kind (RUN_TYPES)."""

    model_config = ConfigDict(extra="allow", protected_namespaces=(), validate_assignment=True)

    run_id: str
    kind: str = Field(description="A run kind the trainer registers (GET /info run_kinds): bc, sac, baseline.")
    status: RunStatus
    config: BCConfig | SACConfig | BaselineConfig | _Fields = Field(default_factory=_Fields)
    metrics: BCMetrics | SACMetrics | BaselineMetrics | _Fields = Field(default_factory=_Fields)
    lineage: RunLineage | None = None
    study_id: str | None = None
    error: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    evaluations: list[EvalResult] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _typed_by_kind(cls, data: Any) -> Any:
        if isinstance(data, dict) and "kind" in data:
            data = dict(data)
            data["config"], data["metrics"] = typed_fields(data["kind"], data.get("config"), data.get("metrics"))
        return data

    @property
    def is_stand_in(self) -> bool:
        """Trained on a random-init V-JEPA 2 encoder (lineage.random_init): a plumbing check."""
        return self.lineage is not None and self.lineage.is_stand_in


class RunList(_Open):
    runs: list[RunRecord]


class DatasetList(_Open):
    datasets: list[DatasetInfo]


# ----------------------------------------------------------------------------------------------------------------
# Studies: one run per seed, aggregated across seeds
# ----------------------------------------------------------------------------------------------------------------


class SeedInterval(_Open):
    """A quantity across seeds: mean with a 95% t-interval (Student's t, n-1 degrees of freedom) and the points."""

    n: int
    mean: float | None = None
    ci95: list[float] | None = Field(None, description="None with fewer than 2 seeds.")
    values: list[float] = Field(default_factory=list)
    iqm: float | None = Field(None, description="Interquartile mean of the values (Agarwal et al. 2021).")
    iqm_ci95: list[float] | None = Field(
        None, description="95% bootstrap interval of the IQM (seeds resampled; None with fewer than 2 seeds)."
    )


class StudyRun(_Open):
    run_id: str
    seed: int
    status: RunStatus
    final_metric: float | None = None
    success_rate: float | None = None
    success_ci95: list[float] | None = Field(None, description="This run's own Wilson interval.")
    mean_return: float | None = None
    eval_status: RunStatus | None = None
    error: str | None = None


class StudyRecord(_Open):
    study_id: str
    kind: str
    status: RunStatus
    seeds: list[int]
    run_ids: list[str]
    run_id: str = Field(description="The first run (the field a single-seed client reads).")
    config: dict[str, Any] = Field(default_factory=dict)
    metric: str = Field(
        description="final_metric of each run: BC validation MSE of the checkpoint it kept "
        "(val_loss at selected_epoch), SAC final_eval.mean_return."
    )
    final: SeedInterval | None = None
    success: SeedInterval | None = Field(
        None, description="Success rate across the seeds whose latest evaluation succeeded."
    )
    eval_request: dict[str, Any] | None = None
    runs: list[StudyRun] = Field(default_factory=list)
    created_at: str | None = None


class StudyList(_Open):
    studies: list[StudyRecord]


class TrainerInfo(_Open):
    """GET /info of the trainer: what it is, where it keeps things, what it can do."""

    version: str
    store: str | None = None
    runs_dir: str
    encoder_url: str | None = None
    auth: bool = Field(description="Whether requests need a bearer token.")
    job_workers: int
    run_kinds: list[str]
    feature_sources: list[str]
    experts: list[str]
    tasks: list[str]
    routes: list[str] = Field(default_factory=list, description="Method and path of every API route.")


# ----------------------------------------------------------------------------------------------------------------
# Bake-off (issue 18 item 6): encoders x readouts x tasks x seeds as studies, one table and one figure
# ----------------------------------------------------------------------------------------------------------------


class BakeoffRequest(_Model):
    """POST /bakeoff. Every field left out comes from `protocol` (vjepa_robot_lab/experiments/protocols.py), else from
    the
    small defaults of services/trainer/bakeoff.py; the resolved values are recorded in the bake-off."""

    encoders: list[str] = Field(
        default_factory=list,
        max_length=16,
        description="Encoder service URLs, each serving one model (GET /info); on the trainer's route only URLs "
        "it was configured with (--encoder-url, VJEPA_ROBOT_ENCODER_URLS).",
    )
    baselines: list[FeatureSource] = Field(
        default_factory=list,
        max_length=8,
        description="Feature-source rows beside the encoders' (state, random, ...): one cell per task each.",
    )
    executor: Literal["local", "modal", "slurm"] = Field(
        "local", description="Where the cells run: local (cell_workers at once), modal (.map), slurm (submitit)."
    )
    cell_workers: int = Field(1, ge=1, le=64, description="Cells at once (local; slurm/submitit: jobs in flight).")
    tasks: list[Task] = Field(default_factory=lambda: [Task.easy], min_length=1, max_length=16)
    experts: dict[str, str] = Field(
        default_factory=dict,
        description="Per task, the demonstrator of its dataset: an expert name or run:RUN_ID; default jacobian.",
    )
    readouts: list[Readout] = Field(default_factory=lambda: [Readout.mean, Readout.flare], min_length=1)
    seeds: list[int] | None = Field(None, min_length=1, max_length=MAX_SEEDS, description="BC training seeds.")
    protocol: Protocol | None = None
    episodes: int | None = Field(None, ge=1, le=100_000, description="Demos per task.")
    steps: int | None = Field(None, ge=10, le=10_000, description="Simulator steps per demo and evaluation episode.")
    image_size: int | None = Field(None, ge=16, le=1024, description="Rendered frame size (px).")
    dataset_seed: int | None = Field(None, ge=0, le=2**31 - 1)
    epochs: int | None = Field(None, ge=1, le=10_000)
    batch_size: int | None = Field(None, ge=1, le=65_536)
    eval_episodes: int | None = Field(None, ge=1, le=10_000)
    eval_seed: int | None = Field(None, ge=0, le=2**31 - 1)
    parallel_envs: int | None = Field(None, ge=1, le=256)
    workers: int | None = Field(None, ge=1, le=64, description="Dataset generation processes.")
    grid_size: int = Field(DEFAULT_GRID_SIZE, ge=1, le=64, description="readout attentive: g x g tokens.")

    @model_validator(mode="after")
    def _distinct(self):
        if not self.encoders and not self.baselines:
            raise ValueError("name at least one row: encoders (service URLs) and/or baselines (e.g. state)")
        if FeatureSource.vjepa2 in self.baselines:
            raise ValueError("baselines takes feature sources without an encoder (state, random, ...): give a vjepa2 "
                             "encoder's URL in encoders")  # fmt: skip
        for name in ("encoders", "baselines", "tasks", "readouts", "seeds"):
            v = getattr(self, name)
            if v is not None and len(set(v)) != len(v):
                raise ValueError(f"{name} must be distinct, got {[getattr(x, 'value', x) for x in v]}")
        if self.seeds is not None and any(s < 0 or s > 2**31 - 1 for s in self.seeds):
            raise ValueError(f"seeds must be in [0, 2^31-1], got {self.seeds}")
        tasks = {t.value for t in self.tasks}
        extra = sorted(set(self.experts) - tasks)
        if extra and not (self.protocol is not None and "tasks" not in self.model_fields_set):  # else: its tasks
            raise ValueError(f"experts names task(s) {extra} that are not in tasks {sorted(tasks)}")
        for task, expert in self.experts.items():
            if expert not in EXPERTS and not expert.startswith("run:"):
                choices = ", ".join(EXPERTS)
                raise ValueError(f"expert {expert!r} of task {task!r}: choose one of {choices} or run:RUN_ID")
        return self


class BakeoffCell(_Open):
    """One (encoder, task, readout) or (baseline, task): a BC study over the seeds, evaluated on the same episodes;
    a self-contained job (vjepa_robot_lab/experiments/bakeoff.py) that any executor can run."""

    key: str | None = Field(None, description="The cell's id in its bake-off (cell-000, ...).")
    features: str = Field("vjepa2", description="vjepa2 (an encoder's row) or a baseline feature source.")
    encoder_url: str | None = None
    encoder_id: str | None = None
    model: str | None = Field(None, description="The encoder's /info model (preset:NAME, hub id or directory).")
    family: str | None = None
    weights: str | None = Field(None, description="The encoder's pinned weights (EncoderInfo.weights).")
    random_init: bool | None = None
    stand_in: bool = Field(False, description="Random-init weights: a plumbing check, not a result of the model.")
    task: str
    readout: str
    dataset: str | None = None
    study_id: str | None = None
    run_ids: list[str] = Field(default_factory=list)
    status: RunStatus = RunStatus.queued
    score: SeedInterval | None = Field(None, description="Mean evaluation return across seeds (95% t-interval).")
    success: SeedInterval | None = Field(None, description="Success rate across seeds, where the task defines one.")
    error: str | None = None
    attempts: int = Field(0, description="Times the cell was started (a resume starts an unfinished cell again).")
    dataset_reused: bool | None = Field(None, description="Its demos were in the store already (nothing rendered).")
    timings: dict[str, float] = Field(default_factory=dict, description="dataset_s, train_s, eval_s (its last run).")
    host: str | None = Field(None, description="Where the cell last ran.")


class BakeoffRecord(_Open):
    bakeoff_id: str
    status: RunStatus
    protocol: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict, description="The resolved settings every cell ran with.")
    request: dict[str, Any] = Field(default_factory=dict)
    datasets: dict[str, str] = Field(default_factory=dict, description="task -> dataset name.")
    demo_returns: dict[str, float | None] = Field(
        default_factory=dict, description="task -> the demonstrator's mean return over its demos (the reference)."
    )
    cells: list[BakeoffCell] = Field(default_factory=list)
    executor: str = "local"
    cell_workers: int = 1
    plan: dict[str, Any] = Field(
        default_factory=dict,
        description="The cost plan recorded before the bake-off started: workload (cells, frames to render, windows "
        "to encode, BC steps) and an estimate per executor from rates measured on the machine that ran it.",
    )
    resumes: int = Field(0, description="Times the bake-off was resumed.")
    table: str | None = Field(None, description="The markdown table (also written to table_path).")
    table_path: str | None = None
    figure_path: str | None = None
    error: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class BakeoffList(_Open):
    bakeoffs: list[BakeoffRecord]
