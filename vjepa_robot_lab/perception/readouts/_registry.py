"""The readout registry: ReadoutKind (what one readout is), register, get_readout, READOUTS, and the functions the
library called before there was one (with_readout, check_readout, readout_lineage, ...), each asking the registered
readout. The package's __init__ fills READOUTS with every readout module beside this one and re-exports all of it:
import from `vjepa_robot_lab.perception.readouts`. (Apart from __init__ so a readout's module can import it without
an import cycle; its leading "_" keeps it out of the modules __init__ registers.)"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from torch import nn

from vjepa_robot_client.contract import DEFAULT_GRID_SIZE, Pooling, Readout
from vjepa_robot_client.contract import READOUTS as CONTRACT_READOUTS
from vjepa_robot_lab.perception.features import FeatureSource

DEFAULT_READOUT = Readout.mean.value  # what a plain policy function, and a checkpoint from before readouts, reads


class ReadoutKind:
    """One readout: what it reads, how it wraps a feature source, what it refuses, what a run's lineage records,
    and for a learned readout the network trained with the policy. A readout's module subclasses it, sets the class
    attributes, overrides the hooks it needs and `register`s one instance."""

    name: str = ""  # the contract's Readout value
    pooling: Pooling = Pooling.mean  # what it reads: the stored mean embedding per window, or token grids
    source_type: type | None = None  # the feature source wrap() answers (None: the base source itself)
    reads_pixels: bool = False  # whether features 'pixels' (their own conv encoder, trained on the frames) fit
    network_type: type | None = None  # a learned readout: its network's config class (attentive: PoolerConfig)
    config_key: str | None = None  # where checkpoints keep that config (BC's metadata, SAC's state): "pooler"
    phase: str | None = None  # a run's phase while it trains on this readout's input (None: no phase of its own)

    @property
    def reads_grid(self) -> bool:
        return self.pooling is Pooling.grid

    @property
    def learned(self) -> bool:
        return self.network_type is not None

    def wrap(self, base: FeatureSource, grid_size: int = DEFAULT_GRID_SIZE) -> FeatureSource:
        """The feature source a policy with this readout reads, around `base` (it does not own `base`)."""
        return base

    def check(self, features: str) -> None:
        """ValueError naming the problem when feature source `features` cannot be read this way."""
        if features == "pixels" and not self.reads_pixels:
            fit = " or ".join(repr(k.name) for k in READOUTS.values() if k.reads_pixels)
            raise ValueError(
                f"features 'pixels' train their own conv encoder on the frames: readout must be {fit}, not "
                f"{self.name!r}"
            )

    def lineage(self, grid_size: int = DEFAULT_GRID_SIZE) -> dict:
        """What a run's lineage records about its readout: readout, pooling and (grids only) grid_size."""
        return {
            "readout": self.name,
            "pooling": self.pooling.value,
            "grid_size": int(grid_size) if self.reads_grid else None,
        }

    def is_source(self, source: FeatureSource) -> bool:
        """Whether `source` is already this readout's wrapper (evaluation then takes it as given)."""
        return self.source_type is not None and isinstance(source, self.source_type)

    # -- a learned readout's network (BC and SAC train it with the policy) ----------------------------------------

    def network_config(self, source: FeatureSource) -> Any | None:
        """The shape of the network that reads wrap()'s rows (a `network_type`), or None: no network."""
        return None

    def network(self, config: Any) -> nn.Module:
        """A fresh trainable module of that shape: (B, dim) rows -> (B, .out_dim), its shape at `.cfg`."""
        raise TypeError(f"readout {self.name!r} has no network")

    def check_input(self, config: Any, dim: int) -> None:
        """ValueError when a network of this shape cannot read rows of width `dim`."""

    def network_state(self, config: Any) -> dict:
        """The config as a checkpoint saves it under `config_key` (a JSON-able dict)."""
        return asdict(config)

    def network_from_state(self, state: Mapping[str, Any]) -> Any:
        """The config back from network_state's dict."""
        return self.network_type(**state)


class UnknownReadout(ValueError):
    def __init__(self, name):
        super().__init__(f"unknown readout {name!r}: choose one of {', '.join(READOUTS)}")
        self.name = name


READOUTS: dict[str, ReadoutKind] = {}  # name -> kind, the contract's order first


def register(kind: ReadoutKind) -> ReadoutKind:
    if not kind.name:
        raise ValueError(f"{type(kind).__name__} has no name")
    if kind.name in READOUTS:
        raise ValueError(f"readout {kind.name!r} is registered already")
    if kind.learned and not kind.config_key:
        raise ValueError(f"learned readout {kind.name!r} needs a config_key (where checkpoints keep its network)")
    READOUTS[kind.name] = kind
    return kind


def get_readout(name: str | Readout | ReadoutKind) -> ReadoutKind:
    """The registered readout of this name (the contract's enum or its value); UnknownReadout (a ValueError)."""
    if isinstance(name, ReadoutKind):
        return name
    try:
        return READOUTS[getattr(name, "value", name)]
    except (KeyError, TypeError):
        raise UnknownReadout(name) from None


def readout_of_network(config: Any) -> ReadoutKind:
    """The learned readout whose network this config shapes (BC builds and saves the network through it)."""
    for kind in READOUTS.values():
        if kind.network_type is not None and isinstance(config, kind.network_type):
            return kind
    raise TypeError(f"no registered readout has a network config of type {type(config).__name__}")


def network_entry(config: Any) -> tuple[str, dict]:
    """(config_key, the config as saved): what a checkpoint writes beside a learned readout's weights."""
    kind = readout_of_network(config)
    return kind.config_key, kind.network_state(config)


def saved_network(saved: Mapping[str, Any]) -> Any | None:
    """A learned readout's network config from what a checkpoint saved beside its weights -- BC's metadata (JSON
    strings) or SAC's state (dicts) -- under the config_key of the readout it belongs to; None without one."""
    for kind in READOUTS.values():
        value = saved.get(kind.config_key) if kind.config_key else None
        if value:
            return kind.network_from_state(json.loads(value) if isinstance(value, str) else value)
    return None


# ----------------------------------------------------------------------------------------------------------------
# The functions the library used before the registry (each asks the registered readout)
# ----------------------------------------------------------------------------------------------------------------


def parse_readout(name: str | Readout) -> Readout:
    """The contract's Readout of this name (ValueError naming the contract's readouts)."""
    try:
        return Readout(name)
    except ValueError:
        raise ValueError(f"unknown readout {name!r}: choose one of {', '.join(CONTRACT_READOUTS)}") from None


def pooling_of(readout: str | Readout) -> Pooling:
    """The encoder pooling a readout reads: token grids or the mean embedding."""
    return get_readout(readout).pooling


def readout_lineage(readout: str | Readout, grid_size: int = DEFAULT_GRID_SIZE) -> dict:
    """What a run's lineage records about its readout: readout, pooling and (grids only) grid_size."""
    return get_readout(readout).lineage(grid_size)


def check_readout(features: str, readout: str | Readout) -> None:
    """ValueError naming the problem when a feature source cannot be read this way (state has no token grid)."""
    get_readout(readout).check(features)


def with_readout(
    base: FeatureSource, readout: str | Readout = Readout.mean, grid_size: int = DEFAULT_GRID_SIZE
) -> FeatureSource:
    """The feature source a policy with this readout reads: `base` itself (mean), FLARE over it, or its grids."""
    return get_readout(readout).wrap(base, grid_size)


def is_readout_source(source: FeatureSource) -> bool:
    """Whether `source` is already some readout's wrapper (FLARE's fusions, a grid stream)."""
    return any(kind.is_source(source) for kind in READOUTS.values())
