"""A trained network loaded as a policy, typed: what BC's and SAC's loaders return (learning/bc.py load_bc_policy,
learning/sac.py policy_from_checkpoint), what evaluation (evaluate.FeaturePolicy) and run experts read.

    policy = run_kind(record.kind).network(run_dir)   # LoadedPolicy
    actions = policy(features)                         # (B, dim) float32 -> (B, A) float32 in [-1, 1]
    policy.readout, policy.grid_size                   # how it reads its features (readouts.with_readout)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


class LoadedPolicy:
    """A trained network as a plain function of its features, with what its checkpoint says about feeding it.

    dim: the width of one feature row it reads; readout, grid_size: mean (B, D), flare (B, 3D), attentive
    (B, G*D) grids of grid_size x grid_size tokens; features, task, action_repeat, episode_steps: what it was trained
    on (None where its checkpoint does not say)."""

    def __init__(
        self,
        act: Callable[[np.ndarray], np.ndarray] | None = None,
        *,
        dim: int,
        readout: str = "mean",
        grid_size: int = 4,
        features: str | None = None,
        task: str | None = None,
        action_repeat: int = 1,
        episode_steps: int | None = None,
    ):
        self._act = act
        self.dim, self.readout, self.grid_size = int(dim), readout or "mean", int(grid_size or 4)
        self.features, self.task = features, task
        self.action_repeat, self.episode_steps = int(action_repeat), episode_steps

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self._act is None:
            raise NotImplementedError(f"{type(self).__name__} has no act function")
        return self._act(x)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim}, readout={self.readout!r}, task={self.task!r})"
