"""The encoder's wire: pooling specs, GET /info, /encode, dataset encoding, frame streams."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from ._base import DEFAULT_GRID_SIZE, EMBEDDING_DTYPES, MAX_GRID_LAYERS, TIME_REDUCTIONS, Pooling, _Model, _Open


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


__all__ = [
    "PoolingSpec",
    "MEAN_POOLING",
    "_check_pooling",
    "parse_layers",
    "pooled_encoder_id",
    "EncoderInfo",
    "EncodeResponse",
    "DatasetEncodeRequest",
    "DatasetEncodeStatus",
    "CONTENT_ENCODINGS",
    "STREAM_SESSION_HEADER",
    "StreamCreateRequest",
    "StreamCreated",
]
