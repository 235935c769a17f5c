"""Readouts: how a policy reads its features (docs/readouts.md), registered in one place.

    mean       the MLP on one (D,) vector per window: the mean-pooled embedding (or a state / random vector)
    attentive  an attentive pooler over the window's (G, D) token grid (G = g*g), trained with the policy, then the
               same MLP on its (D,) output: V-JEPA 2's own way of reading frozen tokens
    flare      the MLP on CortexBench's fusion of the last 3 windows' (D,) embeddings: (3D,) per step

    kind = get_readout("flare")            # its ReadoutKind (ValueError naming the registered readouts)
    source = kind.wrap(base, grid_size)    # the feature source the policy reads (= with_readout(base, "flare"))
    kind.check("state")                    # ValueError where these features cannot be read so (= check_readout)
    kind.lineage(grid_size)                # readout, pooling, grid_size (= readout_lineage)
    cfg = kind.network_config(source)      # a learned readout's network shape (attentive: PoolerConfig), else None
    net = kind.network(cfg)                # its trainable module (attentive: AttentivePooler), (B, dim) -> (B, out_dim)

Every readout is a feature source (features.py's one interface) wrapped around the source the request names, so BC,
SAC, evaluation and the probes take them unchanged: `with_readout(source, "flare")` answers (B, 3D) rows,
`with_readout(source, "attentive", grid_size=4)` answers the grid flattened to (B, G*D) rows (`.tokens` = G,
`.token_dim` = D say how to unflatten; flat rows keep the replay buffer, the vector env and the standardisation
per column = per (token, channel) as they are).

One module per readout in this package (mean.py, flare.py, attentive.py), each ending in `register(...)` (ReadoutKind
and the registry's functions are in _registry.py, re-exported here). This file imports every module of the package
whose name does not start with "_" (found with pkgutil, not listed), so a new readout is its own module here plus its
name in the contract's `Readout` (the SDK validates requests without the library, so the name stays there). A
contract readout with no module here fails at import. BC and evaluation ask this registry and name no readout; a
learned readout's network is built, saved and rebuilt through its hooks (`network`, `config_key`, `network_state`,
`network_from_state`), so BC's checkpoints keep their format.
"""

from __future__ import annotations

import importlib
import pkgutil

from vjepa_robot_client.contract import READOUTS as CONTRACT_READOUTS
from vjepa_robot_lab.perception.readouts._registry import (
    DEFAULT_READOUT,
    READOUTS,
    ReadoutKind,
    UnknownReadout,
    check_readout,
    get_readout,
    is_readout_source,
    network_entry,
    parse_readout,
    pooling_of,
    readout_lineage,
    readout_of_network,
    register,
    saved_network,
    with_readout,
)
from vjepa_robot_lab.perception.readouts.attentive import (  # the names importable here before the registry
    AttentivePooler,
    GridFeatures,
    PoolerConfig,
    default_heads,
    grid_sincos,
)
from vjepa_robot_lab.perception.readouts.flare import (
    FLARE_HISTORY,
    FlareFeatures,
    flare_fuse,
    flare_table,
    history_rows,
)

# ----------------------------------------------------------------------------------------------------------------
# Registration: every readout module of this package, then the contract's order
# ----------------------------------------------------------------------------------------------------------------

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

_missing = [r for r in CONTRACT_READOUTS if r not in READOUTS]
if _missing:
    raise ImportError(f"the contract's readouts {_missing} have no module in vjepa_robot_lab/perception/readouts/")
_registered = dict(READOUTS)
READOUTS.clear()  # the contract's order (its choices in every error message), then any other registered readout
_order = [*CONTRACT_READOUTS, *(r for r in _registered if r not in CONTRACT_READOUTS)]
READOUTS.update((r, _registered[r]) for r in _order)

__all__ = [
    "ReadoutKind",
    "UnknownReadout",
    "READOUTS",
    "DEFAULT_READOUT",
    "register",
    "get_readout",
    "readout_of_network",
    "network_entry",
    "saved_network",
    "is_readout_source",
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
    "grid_sincos",
    "FLARE_HISTORY",
]
