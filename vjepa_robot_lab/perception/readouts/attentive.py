"""attentive: an attentive pooler over each window's (G, D) token grid (G = g*g), trained with the policy, then the
same MLP on its (D,) output -- V-JEPA 2's own way of reading frozen tokens. Its input is the grid flattened to
(B, G*D) rows (GridFeatures: `.tokens` = G, `.token_dim` = D say how to unflatten); its network is the
AttentivePooler, shaped by a PoolerConfig that checkpoints keep under "pooler" (BC's metadata, SAC's state).

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
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vjepa_robot_client.contract import DEFAULT_GRID_SIZE, Pooling, Readout
from vjepa_robot_lab.perception.features import FeatureSource, FeatureTable
from vjepa_robot_lab.perception.readouts._registry import ReadoutKind, check_readout, readout_lineage, register

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


# ----------------------------------------------------------------------------------------------------------------
# The readout
# ----------------------------------------------------------------------------------------------------------------


class AttentiveReadout(ReadoutKind):
    name = Readout.attentive.value
    pooling = Pooling.grid  # it reads the encoder's g x g token grids, embedded first where a dataset lacks them
    source_type = GridFeatures
    network_type = PoolerConfig
    config_key = "pooler"  # BC's checkpoint metadata and SAC's checkpoint state keep the PoolerConfig here
    phase = "training on the token grids"

    def wrap(self, base: FeatureSource, grid_size: int = DEFAULT_GRID_SIZE) -> FeatureSource:
        self.check(base.name)
        return GridFeatures(base, grid_size)

    def check(self, features: str) -> None:
        super().check(features)
        if features == "state":
            raise ValueError(
                "readout 'attentive' reads a token grid, and state features are one 8-d vector per step: "
                "use readout 'mean' or 'flare' with state, or features 'vjepa2' / 'random' with attentive"
            )

    def network_config(self, source: FeatureSource) -> PoolerConfig:
        return PoolerConfig(dim=source.token_dim, tokens=source.tokens)

    def network(self, config: PoolerConfig) -> AttentivePooler:
        return AttentivePooler(config)

    def check_input(self, config: PoolerConfig, dim: int) -> None:
        if config.tokens * config.dim != dim:
            raise ValueError(
                f"a pooler over {config.tokens} x {config.dim} tokens reads {config.tokens * config.dim} "
                f"inputs, not {dim}"
            )

    def network_state(self, config: PoolerConfig) -> dict:
        return config.to_dict()


ATTENTIVE = register(AttentiveReadout())
