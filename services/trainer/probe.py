"""The linear probe of the findings ("What V-JEPA 2 encodes"): how linearly do features hold where things are?

    result = probe(store, "jacobian-easy-150", make_feature_source("state"))
    # {"features": "state", "finger_xy_r2": ..., "target_xy_r2": ..., "alpha": {...}, "n_train": ..., "n_test": ...}

Ridge regression, closed form, from the features to the fingertip xy (`finger_xy`) and the target xy
(`target_xy`). Episodes are split three ways (train 60% / val 20% / test 20%, seeded): alpha is picked per target
from a log grid by R2 on val, the ridge is refit on train+val with that alpha, and R2 is reported on the test
episodes, which no fit has seen (steps of one episode are strongly correlated, so a row split would leak).

Features are standardised with train statistics; the two outputs' R2 are averaged (sklearn's uniform_average).
The fit is one eigendecomposition of the D x D Gram matrix, after which every alpha costs a D x D product, so a
100,000 x 1024 probe is a few seconds.
"""

from __future__ import annotations

import time

import numpy as np

from services.common.store import Store, fixed_list_to_numpy

from .features import FeatureSource

TARGETS = ("finger_xy", "target_xy")
ALPHAS = tuple(10.0**k for k in range(-3, 6))  # ridge strengths tried (features standardised)
SPLIT = (0.6, 0.2, 0.2)  # train / val / test fractions of episodes


def split_episodes_3(episode: np.ndarray, seed: int, fractions=SPLIT) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices (train, val, test), each a disjoint set of whole episodes; needs >= 3 episodes."""
    unique = np.random.default_rng(seed).permutation(np.unique(episode))
    if len(unique) < 3:
        raise ValueError(f"the probe needs at least 3 episodes (train/val/test by episode), got {len(unique)}")
    n_val = max(1, int(round(fractions[1] * len(unique))))
    n_test = max(1, int(round(fractions[2] * len(unique))))
    n_train = len(unique) - n_val - n_test
    if n_train < 1:
        n_train, n_val = 1, len(unique) - 1 - n_test
    groups = np.split(unique, [n_train, n_train + n_val])
    return tuple(np.flatnonzero(np.isin(episode, g)) for g in groups)  # type: ignore[return-value]


def r2_score(y: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination per output column, averaged; 0 = predicting the mean, 1 = perfect."""
    ss_res = np.square(y - pred).sum(0)
    ss_tot = np.square(y - y.mean(0)).sum(0)
    return float(np.mean(1.0 - ss_res / np.maximum(ss_tot, 1e-12)))


class Ridge:
    """Closed-form ridge on standardised features, with an intercept; fit once, solve for any alpha."""

    def __init__(self, x: np.ndarray):
        x = x.astype(np.float64)
        self.mean = x.mean(0)
        std = x.std(0)
        self.std = np.where(std < 1e-8, 1.0, std)
        z = (x - self.mean) / self.std
        self.z = z
        evals, self.evecs = np.linalg.eigh(z.T @ z)  # (D,), (D, D)
        self.evals = np.maximum(evals, 0.0)

    def solve(self, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """(weights (D, K), intercept (K,)) for targets y (N, K)."""
        y_mean = y.mean(0)
        zty = self.z.T @ (y - y_mean)  # (D, K)
        w = self.evecs @ ((self.evecs.T @ zty) / (self.evals + alpha)[:, None])
        return w, y_mean

    def predict(self, x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        return ((x.astype(np.float64) - self.mean) / self.std) @ w + b


def probe_arrays(x: np.ndarray, targets: dict[str, np.ndarray], episode: np.ndarray, seed: int = 0,
                 alphas=ALPHAS) -> dict:
    """Held-out R2 of a ridge from x (N, D) to each target (N, K); see the module docstring."""
    tr, va, te = split_episodes_3(episode, seed)
    out: dict = {"n_train": int(len(tr) + len(va)), "n_test": int(len(te)),
                 "n_episodes": int(len(np.unique(episode))), "dim": int(x.shape[1]), "alpha": {}, "val_r2": {}}
    fit_tr = Ridge(x[tr])
    trva = np.concatenate([tr, va])
    fit_all = Ridge(x[trva])
    for name, y in targets.items():
        y = y.astype(np.float64)
        scores = {a: r2_score(y[va], fit_tr.predict(x[va], *fit_tr.solve(y[tr], a))) for a in alphas}
        best = max(scores, key=scores.get)
        w, b = fit_all.solve(y[trva], best)
        out[f"{name}_r2"] = r2_score(y[te], fit_all.predict(x[te], w, b))
        out["alpha"][name] = best
        out["val_r2"][name] = scores[best]
    return out


def probe(store: Store, dataset: str, features: FeatureSource, seed: int = 0) -> dict:
    """Linear probe of `features` on `dataset`: held-out (by episode) R2 for finger xy and target xy."""
    t0 = time.perf_counter()
    table = features.offline(store, dataset)
    steps = store.read_steps(dataset, list(TARGETS))
    if not (np.array_equal(steps.column("episode").to_numpy(), table.episode)
            and np.array_equal(steps.column("step").to_numpy(), table.step)):
        raise ValueError(f"features {features.name!r} of dataset {dataset!r} do not cover the same (episode, step) "
                         f"rows as its steps ({len(table)} vs {steps.num_rows}): re-encode the dataset")
    targets = {t: fixed_list_to_numpy(steps.column(t), 2) for t in TARGETS}
    result = {"features": table.lineage.get("features", features.name), "dataset": dataset,
              **probe_arrays(table.x, targets, table.episode, seed)}
    result["lineage"] = table.lineage
    result["seed"] = seed
    result["wall_s"] = round(time.perf_counter() - t0, 3)
    return result


__all__ = ["probe", "probe_arrays", "Ridge", "r2_score", "split_episodes_3"]
