"""Readouts: how a policy reads its features (docs/readouts.md).

    mean       the MLP on one (D,) vector per window: the mean-pooled embedding (or a state / random vector)
    attentive  an attentive pooler over the window's (G, D) token grid (G = g*g), trained with the policy, then the
               same MLP on its (D,) output: V-JEPA 2's own way of reading frozen tokens
    flare      the MLP on CortexBench's fusion of the last 3 windows' (D,) embeddings: (3D,) per step

Every readout is a feature source (features.py's one interface) wrapped around the source the request names, so BC,
SAC, evaluation and the probes take them unchanged: `with_readout(source, "flare")` answers (B, 3D) rows,
`with_readout(source, "attentive", grid_size=4)` answers the grid flattened to (B, G*D) rows (`.tokens` = G,
`.token_dim` = D say how to unflatten; flat rows keep the replay buffer, the vector env and the standardisation
per column = per (token, channel) as they are). The networks that read grids (`AttentivePooler`) live here too.

The attentive pooler follows facebookresearch/vjepa2 `src/models/attentive_pooler.py` (AttentivePooler with
`CrossAttentionBlock`, `Block` from src/models/utils/modules.py): `num_queries` learnable query tokens (trunc-normal,
std 0.02) cross-attend to the LayerNorm'd tokens (queries are not normalised; no output projection after the
attention), then a residual GELU MLP on the LayerNorm'd queries; `depth - 1` pre-norm self-attention blocks run over
the tokens first. V-JEPA 2 reads ViT-L with 16 heads, 1 query and depth 4 (3 self-attention + 1 cross-attention).
Defaults here: 1 query, depth 1 (the cross-attention block alone, vjepa2's AttentivePooler default) and heads from
`default_heads` (16 for D = 1024, 4 for the tiny stand-in's D = 96): small, because the tiny random-init stand-in's
grids are 16-64 tokens of 96 dims and the CPU budget of these measurements is minutes. One departure: a learned
per-cell position embedding, initialised to a 2-D sine-cosine code of the cell's row and column (MAE's), is added to
the tokens. V-JEPA 2's pooler has none: its 1,024 ViT tokens carry their position from the encoder; ours are
average-pooled cells, and attention over a set is blind to order, so without it the pooler could not tell which
cell holds the fingertip (a trunc-normal(0.02) start was tried: the synthetic position test did not learn in 600
steps).

FLARE (Yang et al., CortexBench / facebookresearch/eai-vc `cortexbench/mujoco_vc/src/mujoco_vc/model_loading.py`,
`fuse_embeddings_flare`, history_window 3 in its DMC config): for the embeddings [e_{t-2}, e_{t-1}, e_t] of the last
three windows the feature is concat(e_{t-1} - e_{t-2}, e_t - e_{t-1}, e_t) -- the differences first, the latest
last. At an episode's start the history is padded by repeating the first embedding (eai-vc indexes
max(t - k, 0) offline and fills its buffer with copies of the first embedding live), so step 0 is (0, 0, e_0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vjepa_robot_client.contract import DEFAULT_GRID_SIZE, READOUTS, Pooling, Readout
from vjepa_robot_lab.perception.features import FeatureSource, FeatureTable

FLARE_HISTORY = 3  # windows fused (eai-vc's DMC config: history_window 3)


def parse_readout(name: str | Readout) -> Readout:
    try:
        return Readout(name)
    except ValueError:
        raise ValueError(f"unknown readout {name!r}: choose one of {', '.join(READOUTS)}") from None


def pooling_of(readout: str | Readout) -> Pooling:
    """The encoder pooling a readout reads: grids for attentive, the mean embedding otherwise."""
    return Pooling.grid if parse_readout(readout) is Readout.attentive else Pooling.mean


def readout_lineage(readout: str | Readout, grid_size: int = DEFAULT_GRID_SIZE) -> dict:
    """What a run's lineage records about its readout: readout, pooling and (grids only) grid_size."""
    r = parse_readout(readout)
    pooling = pooling_of(r)
    return {
        "readout": r.value,
        "pooling": pooling.value,
        "grid_size": int(grid_size) if pooling is Pooling.grid else None,
    }


def check_readout(features: str, readout: str | Readout) -> None:
    """ValueError naming the problem when a feature source cannot be read this way (state has no token grid)."""
    if parse_readout(readout) is not Readout.mean and features == "pixels":
        raise ValueError(
            f"features 'pixels' train their own conv encoder on the frames: readout must be 'mean', not "
            f"{parse_readout(readout).value!r}"
        )
    if parse_readout(readout) is Readout.attentive and features == "state":
        raise ValueError(
            "readout 'attentive' reads a token grid, and state features are one 8-d vector per step: "
            "use readout 'mean' or 'flare' with state, or features 'vjepa2' / 'random' with attentive"
        )


# ----------------------------------------------------------------------------------------------------------------
# FLARE: fusion of the last 3 windows
# ----------------------------------------------------------------------------------------------------------------


def flare_fuse(history: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """[e_{t-2}, e_{t-1}, e_t], each (B, D) (oldest first) -> (B, 3D): the differences of consecutive ones, then
    the latest (eai-vc's fuse_embeddings_flare, batched)."""
    h = [np.asarray(e, np.float32) for e in history]
    return np.concatenate([h[i + 1] - h[i] for i in range(len(h) - 1)] + [h[-1]], axis=-1)


def history_rows(episode: np.ndarray, step: np.ndarray, back: int) -> np.ndarray:
    """For rows sorted by (episode, step): the row index `back` consecutive steps earlier in the same episode,
    clamped to the episode's first row (the padding: the first embedding repeated). (N,) int64."""
    idx = np.arange(len(step), dtype=np.int64)
    for _ in range(back):
        prev = np.maximum(idx - 1, 0)
        same = (idx > 0) & (episode[prev] == episode[idx]) & (step[prev] == step[idx] - 1)
        idx = np.where(same, prev, idx)
    return idx


def flare_table(x: np.ndarray, episode: np.ndarray, step: np.ndarray, history: int = FLARE_HISTORY) -> np.ndarray:
    """(N, D) embeddings of a dataset's consecutive steps -> (N, history * D) FLARE features, row for row."""
    rows = [history_rows(episode, step, back) for back in range(history - 1, -1, -1)]  # oldest first
    return flare_fuse([x[r] for r in rows])


class FlareFeatures(FeatureSource):
    """FLARE over any feature source: (B, 3D) per step, offline from the dataset's consecutive steps and live from
    the last 3 windows' embeddings of each episode (keyed by episode seed: the vector env's terminal step, embedded
    apart after its lane was reset, still fuses with its own episode's history). It does not own `base`."""

    readout = Readout.flare.value

    def __init__(self, base: FeatureSource, history: int = FLARE_HISTORY):
        self.base, self.history = base, int(history)
        self.name, self.needs_frames = base.name, base.needs_frames
        self.dim = self.history * int(base.dim)
        self._past: dict[int, list[np.ndarray]] = {}  # episode seed -> the last history-1 embeddings, oldest first
        for attr in ("encoder_id", "info"):
            if hasattr(base, attr):
                setattr(self, attr, getattr(base, attr))

    def lineage(self) -> dict:
        return {
            **self.base.lineage(),
            "dim": self.dim,
            "embedding_dim": int(self.base.dim),
            **readout_lineage(Readout.flare),
        }

    def offline(self, store, dataset: str) -> FeatureTable:
        t = self.base.offline(store, dataset)
        return FeatureTable(t.episode, t.step, flare_table(t.x, t.episode, t.step, self.history), self.lineage())

    def _fuse(self, seeds, embeddings, firsts, remember: bool) -> np.ndarray:
        out = np.empty((len(seeds), self.dim), np.float32)
        for i, (s, e, first) in enumerate(zip(seeds, embeddings, firsts)):
            past = self._past.get(int(s))
            if first or past is None:
                past = [e] * (self.history - 1)  # episode start: the first embedding repeated
            out[i] = flare_fuse([p[None] for p in past] + [e[None]])[0]
            if remember:
                self._past[int(s)] = past[1:] + [e]
        return out

    def online(self, timesteps, episode_seeds):
        e = np.asarray(self.base.online(timesteps, episode_seeds), np.float32)  # (B, D)
        if len(self._past) > 4096:  # live rollouts hold a few episodes at a time; forget finished ones
            keep = {int(s) for s in episode_seeds}
            self._past = {s: p for s, p in self._past.items() if s in keep}
        return self._fuse(episode_seeds, e, [ts.first() for ts in timesteps], remember=True)

    def online_detached(self, timesteps, episode_seeds):
        """A terminal step: its episode's history (kept by seed) and its own embedding; the history is dropped."""
        e = np.asarray(self.base.online_detached(timesteps, episode_seeds), np.float32)
        out = self._fuse(episode_seeds, e, [False] * len(timesteps), remember=False)
        for s in episode_seeds:
            self._past.pop(int(s), None)
        return out

    def close(self) -> None:  # the owner closes base
        self._past.clear()


# ----------------------------------------------------------------------------------------------------------------
# Grids: the attentive readout's input
# ----------------------------------------------------------------------------------------------------------------


class GridFeatures(FeatureSource):
    """A source's (G, D) token grids per window, flattened to (B, G*D) rows; `.tokens` = G, `.token_dim` = D.

    `base` must offer offline_grid(store, dataset, grid_size) -> FeatureTable with x (N, G, D) and
    online_grid / online_detached_grid(timesteps, seeds, grid_size) -> (B, G, D) (vjepa2: the encoder's
    pool=grid; random: random grids). It does not own `base`."""

    readout = Readout.attentive.value

    def __init__(self, base: FeatureSource, grid_size: int = DEFAULT_GRID_SIZE):
        if not hasattr(base, "online_grid"):
            check_readout(base.name, Readout.attentive)
            raise ValueError(f"features {base.name!r} have no token grid: readout 'attentive' needs vjepa2 or random")
        self.base, self.grid_size = base, int(grid_size)
        self.name, self.needs_frames = base.name, base.needs_frames
        self.on_progress = None  # callable(message): hears that the grids are being embedded first (a run's phase)
        self.tokens = self.grid_size**2
        self.token_dim = int(getattr(base, "grid_dim", base.dim))
        self.dim = self.tokens * self.token_dim
        for attr in ("encoder_id", "info"):
            if hasattr(base, attr):
                setattr(self, attr, getattr(base, attr))

    def lineage(self) -> dict:
        lin = {
            **self.base.lineage(),
            "dim": self.dim,
            "tokens": self.tokens,
            "token_dim": self.token_dim,
            **readout_lineage(Readout.attentive, self.grid_size),
        }
        if hasattr(self.base, "grid_encoder_id"):
            lin["grid_encoder_id"] = self.base.grid_encoder_id(self.grid_size)
        return lin

    def _flat(self, g: np.ndarray, dtype=np.float32) -> np.ndarray:
        if g.ndim != 3 or g.shape[1:] != (self.tokens, self.token_dim):
            raise ValueError(f"expected grids (B, {self.tokens}, {self.token_dim}), got {g.shape}")
        g = g.reshape(len(g), self.dim)  # a view: the stored array (in memory or memory-mapped) is not copied
        return g if dtype is None else np.asarray(g, dtype)

    def offline(self, store, dataset: str, progress=None) -> FeatureTable:
        """x (N, G*D) in the stored dtype (float16 grids stay float16: bc.fit_bc standardises them per batch)."""
        t = self.base.offline_grid(store, dataset, self.grid_size, progress=progress or self.on_progress)
        return FeatureTable(t.episode, t.step, self._flat(t.x, dtype=None), self.lineage())

    def online(self, timesteps, episode_seeds):
        return self._flat(self.base.online_grid(timesteps, episode_seeds, self.grid_size))

    def online_detached(self, timesteps, episode_seeds):
        return self._flat(self.base.online_detached_grid(timesteps, episode_seeds, self.grid_size))


def with_readout(
    base: FeatureSource, readout: str | Readout = Readout.mean, grid_size: int = DEFAULT_GRID_SIZE
) -> FeatureSource:
    """The feature source a policy with this readout reads: `base` itself (mean), FLARE over it, or its grids."""
    r = parse_readout(readout)
    if r is Readout.mean:
        return base
    if r is Readout.flare:
        return FlareFeatures(base)
    check_readout(base.name, r)
    return GridFeatures(base, grid_size)


# ----------------------------------------------------------------------------------------------------------------
# The attentive pooler (V-JEPA 2's, see the module docstring)
# ----------------------------------------------------------------------------------------------------------------


def default_heads(dim: int) -> int:
    """The most heads (of 16, 8, 4, 2, 1) that divide D and keep >= 24 dims a head: 16 for ViT-L's 1024 (as
    V-JEPA 2's probes), 4 for the tiny stand-in's 96."""
    return next(h for h in (16, 8, 4, 2, 1) if dim % h == 0 and dim // h >= 24 or h == 1)


@dataclass
class PoolerConfig:
    """The attentive pooler's shape (saved with every checkpoint that has one)."""

    dim: int  # D: token width
    tokens: int  # G = g*g tokens per window
    num_heads: int | None = None  # None: default_heads(dim)
    num_queries: int = 1
    depth: int = 1  # 1 cross-attention block after depth-1 self-attention blocks (V-JEPA 2's ViT-L probe: 4)
    mlp_ratio: float = 4.0

    def __post_init__(self):
        self.num_heads = int(self.num_heads or default_heads(self.dim))
        if self.dim % self.num_heads:
            raise ValueError(f"pooler heads ({self.num_heads}) must divide the token width ({self.dim})")

    def to_dict(self) -> dict:
        return asdict(self)


def grid_sincos(tokens: int, dim: int) -> torch.Tensor:
    """(1, G, D) 2-D sine-cosine position code of a square g x g grid (row-major), as MAE's
    get_2d_sincos_pos_embed: half the channels code the row, half the column, at geometric frequencies; scaled to
    unit variance per channel, the scale of the standardised tokens it is added to."""
    g = math.isqrt(tokens)
    if g * g != tokens:
        raise ValueError(f"a token grid is square: {tokens} tokens is not g*g")
    rows, cols = torch.meshgrid(
        torch.arange(g, dtype=torch.float64), torch.arange(g, dtype=torch.float64), indexing="ij"
    )
    half = dim // 2
    out = torch.zeros(tokens, dim, dtype=torch.float64)
    for k, coord in enumerate((rows.reshape(-1), cols.reshape(-1))):
        n = (half if k == 0 else dim - half) // 2
        freq = 1.0 / 10_000 ** (torch.arange(n, dtype=torch.float64) / max(n, 1))
        angle = coord[:, None] * freq[None]
        block = torch.cat([torch.sin(angle), torch.cos(angle)], dim=1)
        lo = 0 if k == 0 else half
        out[:, lo : lo + block.shape[1]] = block
    return (out * math.sqrt(2.0)).float()[None]


def _mlp(dim: int, ratio: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, int(dim * ratio)), nn.GELU(), nn.Linear(int(dim * ratio), dim))


class _SelfAttentionBlock(nn.Module):
    """Pre-norm transformer block (vjepa2 modules.Block without RoPE): x + attn(LN x), then x + MLP(LN x)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = _mlp(dim, mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, G, D)
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        x = x + self.proj(y)
        return x + self.mlp(self.norm2(x))


class _CrossAttentionBlock(nn.Module):
    """vjepa2 CrossAttentionBlock: q + xattn(q, LN x) (no output projection), then q + MLP(LN q)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.q, self.kv = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim)
        self.mlp = _mlp(dim, mlp_ratio)

    def forward(self, q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # (B, Q, D), (B, G, D) -> (B, Q, D)
        b, nq, d = q.shape
        n, h = x.shape[1], self.heads
        qh = self.q(q).view(b, nq, h, d // h).transpose(1, 2)
        k, v = self.kv(self.norm1(x)).view(b, n, 2, h, d // h).permute(2, 0, 3, 1, 4)
        q = q + F.scaled_dot_product_attention(qh, k, v).transpose(1, 2).reshape(b, nq, d)
        return q + self.mlp(self.norm2(q))


class AttentivePooler(nn.Module):
    """(B, G, D) tokens -> (B, Q*D): learned queries read the grid (see the module docstring)."""

    def __init__(self, cfg: PoolerConfig, init_std: float = 0.02):
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.pos = nn.Parameter(torch.zeros(1, cfg.tokens, d))
        self.queries = nn.Parameter(torch.zeros(1, cfg.num_queries, d))
        self.blocks = nn.ModuleList(
            [_SelfAttentionBlock(d, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.depth - 1)]
        )
        self.cross = _CrossAttentionBlock(d, cfg.num_heads, cfg.mlp_ratio)
        # vjepa2's init: trunc-normal(0.02) weights and queries, zero biases, unit LayerNorms, and each block's
        # output layers divided by sqrt(2 * layer) (AttentivePooler._rescale_blocks)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=init_std)
                nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.queries, std=init_std)
        with torch.no_grad():
            self.pos.copy_(grid_sincos(cfg.tokens, d))
        with torch.no_grad():
            for layer, blk in enumerate(self.blocks, start=1):
                blk.proj.weight.div_(math.sqrt(2.0 * layer))
                blk.mlp[2].weight.div_(math.sqrt(2.0 * layer))
            self.cross.mlp[2].weight.div_(math.sqrt(2.0 * max(len(self.blocks), 1)))

    @property
    def out_dim(self) -> int:
        return self.cfg.num_queries * self.cfg.dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:  # flat rows (B, G*D), as the feature sources answer
            x = x.view(len(x), self.cfg.tokens, self.cfg.dim)
        x = x + self.pos
        for blk in self.blocks:
            x = blk(x)
        q = self.cross(self.queries.expand(len(x), -1, -1), x)
        return q.reshape(len(x), self.out_dim)


__all__ = [
    "AttentivePooler",
    "PoolerConfig",
    "FlareFeatures",
    "GridFeatures",
    "with_readout",
    "flare_fuse",
    "flare_table",
    "history_rows",
    "readout_lineage",
    "pooling_of",
    "parse_readout",
    "check_readout",
    "default_heads",
    "FLARE_HISTORY",
]
