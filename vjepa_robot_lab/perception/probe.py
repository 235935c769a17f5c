"""Probes ("What V-JEPA 2 encodes"): how well do features hold where things are, linearly and non-linearly?

    result = probe(store, "jacobian-easy-150", make_feature_source("state"))
    result["linear"]["finger_xy"]  # {"r2": mean over folds, "r2_sd", "r2_folds", "alpha", "alpha_at_edge", ...}
    result["mlp"]["finger_xy"]     # {"r2", "r2_sd", "r2_folds"}

Targets: the fingertip xy (`finger_xy`), the target xy (`target_xy`) and the fingertip-to-target vector
(`to_target`). The target is fixed within an episode, so what counts is the number of distinct episodes a score
is measured on: the probe is a k-fold over EPISODES (default 5): every episode is tested exactly once by a fit that
never saw it, and R2 is reported as the mean and standard deviation across the folds (plus the pooled
out-of-fold R2 over all episodes). Each fold's R2 is measured against the target's variance over ALL episodes:
a fold holds few episodes, hence few distinct targets, and its own variance would make its R2 meaningless. Steps of
one episode are strongly correlated, so a row split would leak.

Linear probe: closed-form ridge on standardised features. Its strength alpha is chosen per fold and target by an
inner 3-fold cross-validation over the fold's training episodes on a log grid (1e-3 .. 1e7; the strongest alpha
within 0.001 R2 of the best, so a plateau does not pin the choice to its bottom end); the chosen alpha is reported,
and `alpha_at_edge` says when the choice hit either end of the grid (then the grid did not bracket the optimum;
for features that carry nothing, the top edge -- predicting the mean -- is the honest answer).

Non-linear probe: a small MLP (torch; D -> 128 -> 128 -> outputs, ReLU) trained on the same folds, all targets
at once on standardised inputs and outputs; its training stops at the lowest loss on a validation slice of the
fold's training episodes, never on the test episodes. This matters for the oracle: the 8-d state features hold
`to_target` directly (linear R2 ~1) but the joint angles only as cos/sin of q1 and q2, and the fingertip is
L1 (cos q1, sin q1) + L2 (cos(q1+q2), sin(q1+q2)): not linear in them, so only the MLP probe scores ~1 there.

The ridge fit is one eigendecomposition of the D x D Gram matrix, after which every alpha costs a D x D product.

Attentive probe (readouts, issue 17): V-JEPA 2 reads its frozen tokens with an attentive probe, so a low score of
the mean embedding cannot by itself tell a weak encoder from a pooling that averaged the fingertip away. With
`grid_sizes`, a source that has token grids (vjepa2: the encoder's pool=grid; random: random grids) is also probed
on each g x g grid by readouts.AttentivePooler + a linear head, trained on the same folds with the MLP probe's
recipe (standardised inputs per (token, channel) and outputs, early stopping on a slice of the fold's training
episodes): result["attentive"][str(g)][target]. A readout source (readouts.with_readout(src, "flare")) is probed
like any other (ridge and MLP on its (3D,) rows); result["readout"] names it.
"""

from __future__ import annotations

import time

import numpy as np

from services.common.store import DatasetNotFound, Store, fixed_list_to_numpy
from vjepa_robot_lab.envs.tasks import has_success
from vjepa_robot_lab.perception.features import FeatureSource

TARGETS = ("finger_xy", "target_xy", "to_target")
ALPHAS = tuple(float(10.0**k) for k in np.arange(-3.0, 7.01, 0.5))  # ridge strengths tried (features standardised)
FOLDS = 5
INNER_FOLDS = 3
ALPHA_TOL = 1e-3  # inner-CV R2 within this of the best counts as a tie; the strongest tied alpha is chosen


def kfold_episodes(episode: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(train_rows, test_rows)] for a seeded k-fold over whole episodes; every episode is tested once."""
    unique = np.random.default_rng(seed).permutation(np.unique(episode))
    if len(unique) < 2:
        raise ValueError(f"a probe needs at least 2 episodes (folds are split by episode), got {len(unique)}")
    folds = min(folds, len(unique))
    out = []
    for group in np.array_split(unique, folds):
        test = np.isin(episode, group)
        out.append((np.flatnonzero(~test), np.flatnonzero(test)))
    return out


def r2_score(y: np.ndarray, pred: np.ndarray, var: np.ndarray | None = None) -> float:
    """Coefficient of determination per output column, averaged; 0 = predicting the mean, 1 = perfect.

    `var`: measure against this per-column variance instead of y's own (a fold's R2 against the variance over
    all episodes: a fold of one or two episodes has almost no target variance of its own, and its own-variance
    R2 would be a huge negative number that says nothing)."""
    if var is None:
        var = np.square(y - y.mean(0)).mean(0)
    mse = np.square(y - pred).mean(0)
    return float(np.mean(1.0 - mse / np.maximum(var, 1e-12)))


class Ridge:
    """Closed-form ridge on standardised features, with an intercept; fit once, solve for any alpha.

    Wider than tall (D > N: a 4 x 4 grid of 1280-d tokens is 20,480 inputs) it solves the same problem in its dual
    form, one eigendecomposition of the N x N Gram matrix z z^T: w = z^T (z z^T + alpha I)^-1 y, the identical
    weights at a fraction of the cost.

    `scale`: "dimension" (default) standardises each input by its own std; "global" centres each and divides all by
    one std (the alpha grid keeps its meaning). A CNN's last map has many near-dead channels (EfficientNet-Lite0 on
    reacher frames: 283 of 1280 with std < 1e-3): standardising blows their noise up to unit variance and the ridge
    fits it (lite0's 2 x 2 grid: fingertip R2 -0.70 standardised, 0.83 global; bench/SIGNAL_RESULTS.md)."""

    def __init__(self, x: np.ndarray, scale: str = "dimension"):
        x = x.astype(np.float64)
        self.mean = x.mean(0)
        if scale == "global":  # one number for every dimension: near-constant channels stay near-constant
            self.std = np.full(x.shape[1], max(float(x.std()), 1e-8))
        else:
            std = x.std(0)
            self.std = np.where(std < 1e-8, 1.0, std)
        z = (x - self.mean) / self.std
        self.z = z
        self.dual = z.shape[0] < z.shape[1]
        evals, self.evecs = np.linalg.eigh(z @ z.T if self.dual else z.T @ z)  # (M,), (M, M), M = min(N, D)
        self.evals = np.maximum(evals, 0.0)

    def solve(self, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """(weights (D, K), intercept (K,)) for targets y (N, K)."""
        y_mean = y.mean(0)
        if self.dual:  # w = z^T U diag(1 / (s + alpha)) U^T y
            return self.z.T @ (self.evecs @ ((self.evecs.T @ (y - y_mean)) / (self.evals + alpha)[:, None])), y_mean
        zty = self.z.T @ (y - y_mean)  # (D, K)
        w = self.evecs @ ((self.evecs.T @ zty) / (self.evals + alpha)[:, None])
        return w, y_mean

    def predict(self, x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        return ((x.astype(np.float64) - self.mean) / self.std) @ w + b


def choose_alpha(
    x: np.ndarray, y: np.ndarray, episode: np.ndarray, seed: int, alphas=ALPHAS, scale: str = "dimension"
) -> float:
    """The alpha with the best mean R2 over an inner k-fold (by episode) of these rows."""
    inner = kfold_episodes(episode, INNER_FOLDS, seed + 1)
    scores = np.zeros(len(alphas))
    var = y.var(0)
    for tr, va in inner:
        fit = Ridge(x[tr], scale)
        for i, a in enumerate(alphas):
            scores[i] += r2_score(y[va], fit.predict(x[va], *fit.solve(y[tr], a)), var)
    scores /= len(inner)
    # the strongest alpha whose score is within ALPHA_TOL of the best: where R2 plateaus (an exact linear relation)
    # any small alpha fits, and the plateau's bottom end would say nothing
    return float(max(a for a, s in zip(alphas, scores) if s >= scores.max() - ALPHA_TOL))


def _fit_best(make_net, x, y, x_val, y_val, *, seed, max_steps, batch_size, lr, eval_every):
    """Train make_net() on x (N, D) -> y (N, K), both standardised, with Adam and a cosine schedule; keep the weights
    of the lowest validation MSE (checked every `eval_every` steps). Returns predict(x) -> (M, K). Threads: the
    process's own setting (vjepa_robot_lab/threads.py): a probe job never changes it."""
    import torch
    from torch import nn

    x_mean, x_std = x.mean(0), x.std(0)
    x_std = np.where(x_std < 1e-8, 1.0, x_std)
    y_mean, y_std = y.mean(0), y.std(0)
    y_std = np.where(y_std < 1e-8, 1.0, y_std)

    def tx(a):
        return torch.from_numpy(((a - x_mean) / x_std).astype(np.float32))

    xt, yt = tx(x), torch.from_numpy(((y - y_mean) / y_std).astype(np.float32))
    xv, yv = tx(x_val), torch.from_numpy(((y_val - y_mean) / y_std).astype(np.float32))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = make_net()
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max_steps)
        gen = torch.Generator().manual_seed(seed)
        best, best_state = float("inf"), None
        for step in range(max_steps):
            idx = torch.randint(0, len(xt), (min(batch_size, len(xt)),), generator=gen)
            loss = nn.functional.mse_loss(net(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if step % eval_every == eval_every - 1 or step == max_steps - 1:
                with torch.no_grad():
                    v = float(nn.functional.mse_loss(net(xv), yv))
                if v < best:
                    best, best_state = v, {k: t.clone() for k, t in net.state_dict().items()}
        net.load_state_dict(best_state)
        net.eval()

    def predict(a: np.ndarray) -> np.ndarray:
        with torch.no_grad():  # in chunks: a grid probe's rows are (G*D,) wide
            out = np.concatenate([net(tx(a[i : i + 4096])).numpy() for i in range(0, len(a), 4096)])
            return out.astype(np.float64) * y_std + y_mean

    return predict


def fit_mlp(
    x: np.ndarray,
    y: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    seed: int = 0,
    hidden: int = 128,
    max_steps: int = 1500,
    batch_size: int = 256,
    lr: float = 1e-3,
    eval_every: int = 100,
):
    """A small MLP from x (N, D) to y (N, K), standardised both sides; returns predict(x) -> (M, K) with the
    weights of the lowest validation MSE (checked every `eval_every` steps)."""
    from torch import nn

    def make_net():
        return nn.Sequential(
            nn.Linear(x.shape[1], hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, y.shape[1]),
        )

    return _fit_best(
        make_net,
        x,
        y,
        x_val,
        y_val,
        seed=seed,
        max_steps=max_steps,
        batch_size=batch_size,
        lr=lr,
        eval_every=eval_every,
    )


def fit_attentive(
    x: np.ndarray,
    y: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    tokens: int,
    *,
    seed: int = 0,
    max_steps: int = 1500,
    batch_size: int = 256,
    lr: float = 1e-3,
    eval_every: int = 100,
):
    """An AttentivePooler over (N, G*D) flat grids + a linear head to y (N, K), trained as fit_mlp (standardised
    both sides, the weights of the lowest validation MSE); returns predict(x) -> (M, K)."""
    from torch import nn

    from vjepa_robot_lab.perception.readouts import AttentivePooler, PoolerConfig

    def make_net():
        pooler = AttentivePooler(PoolerConfig(dim=x.shape[1] // tokens, tokens=tokens))
        return nn.Sequential(pooler, nn.Linear(pooler.out_dim, y.shape[1]))

    return _fit_best(
        make_net,
        x,
        y,
        x_val,
        y_val,
        seed=seed,
        max_steps=max_steps,
        batch_size=batch_size,
        lr=lr,
        eval_every=eval_every,
    )


def probe_attentive(
    x: np.ndarray,
    tokens: int,
    targets: dict[str, np.ndarray],
    episode: np.ndarray,
    seed: int = 0,
    folds: int = FOLDS,
    steps: int = 1500,
) -> dict:
    """k-fold (by episode) R2 of the attentive probe on flat grids x (N, G*D), all targets at once:
    {target: {"r2", "r2_sd", "r2_folds", "r2_pooled"}} (the same folds and variance rule as probe_arrays)."""
    x = np.asarray(x, dtype=np.float32)
    targets = {k: np.asarray(v, dtype=np.float64).reshape(len(x), -1) for k, v in targets.items()}
    names = list(targets)
    y_all = np.concatenate([targets[n] for n in names], axis=1)
    widths = np.cumsum([0] + [targets[n].shape[1] for n in names])
    var_all = {n: targets[n].var(0) for n in names}
    scores: dict[str, list[float]] = {n: [] for n in names}
    oof = {n: np.zeros_like(targets[n]) for n in names}
    for f, (tr, te) in enumerate(kfold_episodes(episode, folds, seed)):
        fit_rows, stop_rows = kfold_episodes(episode[tr], 5, seed + 100 + f)[0]
        predict = fit_attentive(
            x[tr][fit_rows],
            y_all[tr][fit_rows],
            x[tr][stop_rows],
            y_all[tr][stop_rows],
            tokens,
            seed=seed + f,
            max_steps=steps,
        )
        pred_all = predict(x[te])
        for i, n in enumerate(names):
            pred = pred_all[:, widths[i] : widths[i + 1]]
            oof[n][te] = pred
            scores[n].append(r2_score(targets[n][te], pred, var_all[n]))
    return {n: {**_summary(scores[n]), "r2_pooled": r2_score(targets[n], oof[n])} for n in names}


def _summary(folds: list[float]) -> dict:
    return {
        "r2": float(np.mean(folds)),
        "r2_sd": float(np.std(folds, ddof=1)) if len(folds) > 1 else 0.0,
        "r2_folds": [round(float(f), 4) for f in folds],
    }


def probe_arrays(
    x: np.ndarray,
    targets: dict[str, np.ndarray],
    episode: np.ndarray,
    seed: int = 0,
    folds: int = FOLDS,
    alphas=ALPHAS,
    mlp: bool = True,
    mlp_steps: int = 1500,
    scale: str = "dimension",
) -> dict:
    """k-fold (by episode) R2 of a ridge (alpha by inner CV) and of an MLP from x (N, D) to each target (N, K).
    `scale`: how the ridge scales its inputs (Ridge: "dimension" or "global")."""
    x = np.asarray(x, dtype=np.float32)
    targets = {k: np.asarray(v, dtype=np.float64).reshape(len(x), -1) for k, v in targets.items()}
    splits = kfold_episodes(episode, folds, seed)
    n_eps = int(len(np.unique(episode)))
    if n_eps < 4:
        raise ValueError(f"the probe needs at least 4 episodes (k-fold by episode with an inner split), got {n_eps}")
    names = list(targets)
    lin = {n: {"folds": [], "alphas": []} for n in names}
    mlp_folds: dict[str, list[float]] = {n: [] for n in names}
    oof_lin = {n: np.zeros_like(targets[n]) for n in names}
    oof_mlp = {n: np.zeros_like(targets[n]) for n in names}
    y_all = np.concatenate([targets[n] for n in names], axis=1)
    var_all = {n: targets[n].var(0) for n in names}  # each fold's R2 is measured against this
    widths = np.cumsum([0] + [targets[n].shape[1] for n in names])
    for f, (tr, te) in enumerate(splits):
        fit = Ridge(x[tr], scale)
        for n in names:
            y = targets[n]
            alpha = choose_alpha(x[tr], y[tr], episode[tr], seed + f, alphas, scale)
            pred = fit.predict(x[te], *fit.solve(y[tr], alpha))
            oof_lin[n][te] = pred
            lin[n]["folds"].append(r2_score(y[te], pred, var_all[n]))
            lin[n]["alphas"].append(alpha)
        if mlp:
            # early-stopping slice: one inner fold of this fold's training episodes (the test episodes stay unseen)
            fit_rows, stop_rows = kfold_episodes(episode[tr], 5, seed + 100 + f)[0]
            predict = fit_mlp(
                x[tr][fit_rows],
                y_all[tr][fit_rows],
                x[tr][stop_rows],
                y_all[tr][stop_rows],
                seed=seed + f,
                max_steps=mlp_steps,
            )
            pred_all = predict(x[te])
            for i, n in enumerate(names):
                pred = pred_all[:, widths[i] : widths[i + 1]]
                oof_mlp[n][te] = pred
                mlp_folds[n].append(r2_score(targets[n][te], pred, var_all[n]))
    out: dict = {
        "folds": len(splits),
        "n_episodes": n_eps,
        "n_rows": int(len(x)),
        "dim": int(x.shape[1]),
        "targets": names,
        "alpha_grid": [float(alphas[0]), float(alphas[-1])],
        "scale": scale,
        "linear": {},
        "mlp": {},
    }
    for n in names:
        chosen = lin[n]["alphas"]
        out["linear"][n] = {
            **_summary(lin[n]["folds"]),
            "r2_pooled": r2_score(targets[n], oof_lin[n]),
            "alpha": float(np.exp(np.median(np.log(chosen)))),
            "alphas": chosen,
            "alpha_at_edge": any(a in (alphas[0], alphas[-1]) for a in chosen),
        }
        if mlp:
            out["mlp"][n] = {**_summary(mlp_folds[n]), "r2_pooled": r2_score(targets[n], oof_mlp[n])}
    return out


SCALES = ("auto", "dimension", "global")
# encoder families whose features are a CNN's last map: many near-dead channels (Ridge's docstring), so "auto"
# scales them globally
GLOBAL_SCALE_FAMILIES = frozenset({"efficientnet-lite"})


def resolve_scale(features: FeatureSource, scale: str = "auto") -> str:
    """The Ridge scaling a probe of `features` uses: `scale` itself unless "auto"; "auto" is "global" for an
    encoder of a CNN family (GLOBAL_SCALE_FAMILIES, read from the encoder's /info) and "dimension" otherwise (the
    transformer families, state, random: each input standardised, as every earlier probe here was)."""
    if scale not in SCALES:
        raise ValueError(f"scale {scale!r} is not one of {', '.join(SCALES)}")
    if scale != "auto":
        return scale
    info = getattr(getattr(features, "base", features), "info", None)
    return "global" if getattr(info, "family", None) in GLOBAL_SCALE_FAMILIES else "dimension"


def probe(
    store: Store,
    dataset: str,
    features: FeatureSource,
    seed: int = 0,
    folds: int = FOLDS,
    mlp: bool = True,
    grid_sizes: tuple[int, ...] | list[int] = (),
    attentive_steps: int = 1500,
    mlp_steps: int = 1500,
    scale: str = "auto",
) -> dict:
    """Linear and MLP probes of `features` on `dataset`: k-fold (by episode) R2 for each target in TARGETS; with
    `grid_sizes`, the attentive probe on each g x g token grid too (result["attentive"][str(g)]).
    `scale`: how the ridge scales its inputs (Ridge): "dimension", "global", or "auto" (resolve_scale)."""
    t0 = time.perf_counter()
    scale = resolve_scale(features, scale)
    try:
        task = store.get_dataset_meta(dataset).get("task", "easy")
    except DatasetNotFound:  # steps written without a datasets row (tests, imports of old stores): reacher's
        task = "easy"
    if not has_success(task):  # the probe targets are reacher's fingertip and target positions
        raise ValueError(
            f"the probes read reacher's fingertip and target positions; dataset {dataset!r} is a {task} dataset "
            "(probe a reacher dataset: task easy or hard)"
        )
    if features.name == "pixels":  # raw frames: there is no fixed representation to probe
        raise ValueError(
            "pixels features are frames, read by a conv encoder learned together with the policy: there is no "
            "fixed representation to probe (probe vjepa2, state or random)"
        )
    table = features.offline(store, dataset)
    steps = store.read_steps(dataset, list(TARGETS))
    if not (
        np.array_equal(steps.column("episode").to_numpy(), table.episode)
        and np.array_equal(steps.column("step").to_numpy(), table.step)
    ):
        raise ValueError(
            f"features {features.name!r} of dataset {dataset!r} do not cover the same (episode, step) "
            f"rows as its steps ({len(table)} vs {steps.num_rows}): re-encode the dataset"
        )
    targets = {t: fixed_list_to_numpy(steps.column(t), 2) for t in TARGETS}
    result = {
        "features": table.lineage.get("features", features.name),
        "dataset": dataset,
        **probe_arrays(table.x, targets, table.episode, seed, folds=folds, mlp=mlp, mlp_steps=mlp_steps, scale=scale),
    }
    result["readout"] = getattr(features, "readout", "mean")
    if grid_sizes:
        from vjepa_robot_lab.perception.readouts import GridFeatures

        result["attentive"], result["grid_lineage"] = {}, {}
        for g in grid_sizes:
            grid = GridFeatures(getattr(features, "base", features), int(g))  # ValueError for a source without grids
            gt = grid.offline(store, dataset)
            if not (np.array_equal(gt.episode, table.episode) and np.array_equal(gt.step, table.step)):
                raise ValueError(
                    f"the {g}x{g} grids of dataset {dataset!r} do not cover the same rows as its steps: "
                    "re-encode the dataset"
                )
            result["attentive"][str(g)] = probe_attentive(
                gt.x, grid.tokens, targets, table.episode, seed, folds=folds, steps=attentive_steps
            )
            result["grid_lineage"][str(g)] = gt.lineage
    result["lineage"] = table.lineage
    result["seed"] = seed
    result["wall_s"] = round(time.perf_counter() - t0, 3)
    return result


__all__ = [
    "probe",
    "probe_arrays",
    "probe_attentive",
    "fit_attentive",
    "Ridge",
    "resolve_scale",
    "r2_score",
    "kfold_episodes",
    "choose_alpha",
    "fit_mlp",
    "TARGETS",
]
