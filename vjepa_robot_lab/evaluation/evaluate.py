"""Live evaluation: `parallel_envs` reacher envs step in lockstep; one batched feature call per step.

For `vjepa2` features that call is one frame-stream step over HTTP (the B newest frames; the encoder keeps the
windows), so evaluation measures the whole served pipeline: render -> frame -> encoder service -> policy -> torques.

The same loop evaluates trained policies (BC, SAC) and the baselines (the `jacobian` and `p-controller`
experts and the random policy): a policy is anything that maps the B current time steps to (B, A) actions (A: the
task's action_dim, vjepa_robot_lab/envs/tasks.py). Evaluation seeds come from env.eval_episode_seed, a range no training
episode uses. Success is reacher's only: on other tasks every episode's `success` and the `success_rate` are None
and the return is the result.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np

from vjepa_robot_lab.envs.env import episode_success, eval_episode_seed, task_success
from vjepa_robot_lab.envs.tasks import task_spec
from vjepa_robot_lab.envs.vec_env import closes_envs
from vjepa_robot_lab.evaluation.stats import wilson_ci95
from vjepa_robot_lab.perception.features import FeatureSource
from vjepa_robot_lab.policies.experts import make_expert

GIF_SIZE = 160  # px per GIF panel

# -- stratified targets (issue 22) --------------------------------------------------------------------------------
# dm_control's reacher (suite/reacher.py, Reacher.initialize_episode) draws the target at a radius uniform in
# [0.05, 0.20] m from the arm's base and an angle uniform in [0, 2 pi) (x = r sin a, y = r cos a). A handful of
# uniform episodes can miss the near targets where the state oracle fails (bench/SAC_RESULTS.md); `stratified`
# places an equal number of episodes in each distance bin below, with angles spread evenly around the base inside
# each bin. The bins split the radius range into equal thirds, so under dm_control's own (uniform-in-radius) draw
# each bin holds a third of the probability: the stratified mean return estimates the same quantity as the
# uniform one, with less variance from where the targets happened to fall.
TARGET_RADIUS = (0.05, 0.20)  # m, dm_control reacher
TARGET_BINS = {"near": (0.05, 0.10), "middle": (0.10, 0.15), "far": (0.15, 0.20)}  # m from the base
TARGET_CHOICES = ("uniform", "stratified")


def stratified_targets(seed: int, episodes: int) -> list[dict]:
    """Target of each evaluation episode k: bin k % 3 (near, middle, far), radius uniform inside the bin, angle in
    sector k // 3 of episodes / 3 equal sectors; the jitter comes from the episode's evaluation seed alone, so the
    same (seed, k) always gets the same target. Raises ValueError unless episodes is a multiple of 3."""
    names = list(TARGET_BINS)
    if episodes < len(names) or episodes % len(names):
        raise ValueError(
            f"targets=stratified spreads episodes evenly over {len(names)} distance bins "
            f"({', '.join(f'{n} {lo:.2f}-{hi:.2f} m' for n, (lo, hi) in TARGET_BINS.items())}): "
            f"episodes must be a multiple of {len(names)} (e.g. 30 or 99), got {episodes}"
        )
    per_bin = episodes // len(names)
    out = []
    for k in range(episodes):
        name, sector = names[k % len(names)], k // len(names)
        lo, hi = TARGET_BINS[name]
        u, v = np.random.default_rng([eval_episode_seed(seed, k), 22]).uniform(size=2)
        out.append(
            {"bin": name, "radius": float(lo + (hi - lo) * u), "angle": float(2 * np.pi * (sector + v) / per_bin)}
        )
    return out


def _dm_task(env):
    """The dm_control Task inside a wrapped env (env.make: wrappers -> Reacher -> control.Environment)."""
    from dm_control.rl.control import Environment

    e = env
    while not isinstance(e, Environment):
        e = getattr(e, "_env", None)
        if e is None:
            raise ValueError("targets=stratified needs a dm_control reacher env")
    return e.task


def place_target(env, radius: float | None, angle: float | None = None) -> None:
    """Make env's next reset(seed) put the target at (radius, angle) (dm_control's convention: x = r sin a,
    y = r cos a); None restores dm_control's own draw. The arm's start still comes from the seed: the joints are
    drawn first, by the same random stream, and the target is moved inside the same reset context, so the first
    observation, the first frame and the physics all see the placed target."""
    task = _dm_task(env)
    task.__dict__.pop("initialize_episode", None)  # back to the class's method
    if radius is None:
        return
    own = task.initialize_episode

    def initialize_episode(physics):
        own(physics)
        physics.named.model.geom_pos["target", "x"] = radius * np.sin(angle)
        physics.named.model.geom_pos["target", "y"] = radius * np.cos(angle)

    task.initialize_episode = initialize_episode


def target_of(physics) -> dict | None:
    """Where the reacher target is: distance from the base (m) and dm_control's angle (rad, in [0, 2 pi))."""
    try:
        x, y = (float(v) for v in physics.named.model.geom_pos["target"][:2])
    except (KeyError, AttributeError, ValueError):  # not a reacher: no target to report
        return None
    return {
        "target_radius": round(float(np.hypot(x, y)), 4),
        "target_angle": round(float(np.arctan2(x, y)) % (2 * np.pi), 4),
    }


def by_distance(episodes: list[dict]) -> list[dict]:
    """Success rate and mean return per distance bin of episodes that carry target_radius (any targets option)."""
    rows = []
    for name, (lo, hi) in TARGET_BINS.items():
        eps = [e for e in episodes if "target_radius" in e and lo <= e["target_radius"] < hi + (hi == TARGET_RADIUS[1])]
        if eps:
            rows.append(
                {
                    "bin": name,
                    "radius": [lo, hi],
                    "episodes": len(eps),
                    "success_rate": float(np.mean([e["success"] for e in eps])),
                    "mean_return": float(np.mean([e["return"] for e in eps])),
                    "min_return": float(np.min([e["return"] for e in eps])),
                }
            )
    return rows


class Policy(Protocol):
    needs_frames: bool

    def reset(self, seeds: Sequence[int]) -> None: ...
    def act(self, envs: Sequence, timesteps: Sequence, seeds: Sequence[int]) -> np.ndarray: ...


class FeaturePolicy:
    """A trained network on top of a feature source: features.online -> policy_fn -> (B, A) actions.

    A LoadedPolicy (a loaded BC or SAC checkpoint: policies/loaded.py) names its readout and reads `features`
    through it (the registry's wrap, vjepa_robot_lab/perception/readouts/: a grid stream, or each episode's last
    windows fused, reset when its episode resets). A source that is already a readout's is used as given."""

    def __init__(self, policy_fn: Callable[[np.ndarray], np.ndarray], features: FeatureSource):
        from vjepa_robot_client.contract import DEFAULT_GRID_SIZE
        from vjepa_robot_lab.perception.readouts import DEFAULT_READOUT, get_readout, is_readout_source
        from vjepa_robot_lab.policies.loaded import LoadedPolicy

        loaded = policy_fn if isinstance(policy_fn, LoadedPolicy) else None  # a plain function reads mean features
        readout = getattr(features, "readout", None) or (loaded.readout if loaded else DEFAULT_READOUT)
        if not is_readout_source(features):
            features = get_readout(readout).wrap(features, loaded.grid_size if loaded else DEFAULT_GRID_SIZE)
        self.policy_fn, self.features = policy_fn, features
        self.needs_frames = features.needs_frames
        info = getattr(getattr(features, "base", features), "info", None)  # a readout wraps the encoder's source
        model = str(getattr(info, "model", "") or "").removeprefix("preset:")
        # "random-init" is the fact the encoder reported where it loaded its weights (GET /info), not a preset name
        stand_in = " random-init stand-in" if getattr(info, "random_init", False) else ""
        self.label = (
            f"policy on {features.name}"
            + (f" ({model}{stand_in})" if model else "")
            + (f", {readout} readout" if readout != DEFAULT_READOUT else "")
        )

    def reset(self, seeds):
        pass

    def act(self, envs, timesteps, seeds):
        x = self.features.online(timesteps, seeds)  # (B, D) float32; the SDK's retry policy rides out encoder restarts
        return np.asarray(self.policy_fn(x), dtype=np.float32).reshape(len(timesteps), -1)  # (B, A)


class ExpertPolicy:
    """A scripted expert (or the random policy) acting on each env's simulator state."""

    needs_frames = False

    def __init__(self, name: str, task: str = "easy"):
        self.name = self.label = name
        self.task = task
        self.experts: list = []

    def reset(self, seeds):
        self.experts = [make_expert(self.name, self.task) for _ in seeds]
        for e, s in zip(self.experts, seeds):
            e.reset(s)

    def act(self, envs, timesteps, seeds):
        return np.stack([e.act(env.physics, ts) for e, env, ts in zip(self.experts, envs, timesteps)])


@closes_envs  # every env built during the call is freed when it returns or raises (vec_env.closes_envs)
def evaluate(
    policy: Policy,
    *,
    task: str = "easy",
    episodes: int = 100,
    steps: int = 200,
    seed: int = 0,
    parallel_envs: int = 8,
    image_size: int = 256,
    gif_episodes: int = 0,
    gif_path: Path | str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    action_repeat: int = 1,
    gif_label: str | None = None,
    gif_expert: str | None = "jacobian",
    targets: str = "uniform",
    on_step: Callable[[], None] | None = None,
) -> dict:
    """Roll `policy` out for `episodes` live episodes; returns the evaluation record (success, CI, returns).

    `on_step()` runs before every agent step: raise in it to stop the evaluation (the trainer raises its stop
    there at shutdown, so a stop waits for one step, not for a wave of episodes).

    `steps` counts simulator steps. A policy trained with an action repeat (SAC) is evaluated with the same
    repeat, so it acts, and sees windows, at the rate it was trained at; success and return are still judged on
    every simulator step's reward.

    GIFs: the first `gif_episodes` episodes each become `<gif_path stem>-ep<k>.gif` (record["gif"] lists them):
    the policy beside the `gif_expert` on the same evaluation seed, at real time, each panel captioned with
    the policy, seed, step, return so far and the episode's success.

    targets: "uniform" (dm_control's own draw from the episode seed) or "stratified" (stratified_targets: equal
    episodes near, middle and far from the base; episodes a multiple of 3). Reacher episodes record their target
    (target_radius, target_angle) either way; `by_distance` and `failed` summarise them.
    """
    from vjepa_robot_lab.envs.vec_env import agent_steps, make_env

    if episodes < 1 or steps < 1 or parallel_envs < 1:
        raise ValueError("episodes, steps and parallel_envs must be >= 1")
    if targets not in TARGET_CHOICES:
        raise ValueError(f"unknown targets {targets!r}: choose one of {', '.join(TARGET_CHOICES)}")
    reacher = task_spec(task).is_reacher  # only reacher has a target to place (and to report)
    if targets == "stratified" and not reacher:
        raise ValueError(f"targets=stratified places reacher targets: task {task!r} has none (use uniform)")
    placed = stratified_targets(seed, episodes) if targets == "stratified" else None
    n_envs = min(parallel_envs, episodes)
    spec = task_spec(task)
    size = image_size if policy.needs_frames else 0
    n_agent = agent_steps(steps, action_repeat)
    envs = [
        make_env(task, seed=0, episode_steps=steps, action_repeat=action_repeat, image_size=size) for _ in range(n_envs)
    ]
    results: list[dict] = []
    gif_frames: list[list[np.ndarray]] = [[] for _ in range(min(gif_episodes, n_envs))]
    gif_returns: list[list[float]] = [[] for _ in gif_frames]  # return so far at each recorded frame
    gif_rewards: list[list[float]] = [[] for _ in gif_frames]  # the latest simulator step's reward at each frame
    gif_targets: list = [None for _ in gif_frames]  # (x, y, r) px of the target sphere, fixed within an episode
    t0 = time.perf_counter()
    env_steps = 0
    for start in range(0, episodes, n_envs):
        wave = list(range(start, min(start + n_envs, episodes)))
        seeds = [eval_episode_seed(seed, i) for i in wave]
        active = envs[: len(wave)]
        if placed is not None:
            for env, i in zip(active, wave):
                place_target(env, placed[i]["radius"], placed[i]["angle"])
        timesteps = [env.reset(s) for env, s in zip(active, seeds)]
        where = [target_of(env.physics) if reacher else None for env in active]  # read back: what the episode had
        policy.reset(seeds)
        record_gif = start == 0 and gif_frames
        for _ in range(n_agent):
            if on_step is not None:
                on_step()
            if record_gif:
                for g, frames in enumerate(gif_frames):
                    frames.append(_gif_frame(active[g], timesteps[g]))
                    gif_returns[g].append(float(np.sum(active[g].sim_rewards)))
                    gif_rewards[g].append(float(active[g].sim_rewards[-1]) if len(active[g].sim_rewards) else 0.0)
                    if gif_targets[g] is None:
                        gif_targets[g] = target_pixel(active[g].physics)
            actions = policy.act(active, timesteps, seeds)  # (B, 2)
            timesteps = [env.step(a) for env, a in zip(active, actions)]
        rewards = np.asarray([env.sim_rewards for env in active], np.float32)  # (B, steps): every simulator step
        env_steps += rewards.size
        for s, r, w, i in zip(seeds, rewards, where, wave):
            results.append({"seed": s, "success": task_success(task, r), "return": float(r.sum())} | (w or {}))
            if placed is not None:
                results[-1]["target_bin"] = placed[i]["bin"]
        if on_progress:
            on_progress(len(results), episodes)
    wall = time.perf_counter() - t0
    successes = sum(bool(r["success"]) for r in results)
    record = {
        "task": task,
        "success_rate": successes / len(results) if spec.has_success else None,
        "success_ci95": list(wilson_ci95(successes, len(results))) if spec.has_success else None,
        "mean_return": float(np.mean([r["return"] for r in results])),
        "episodes": results,
        "steps_per_second": env_steps / wall if wall > 0 else None,
        "wall_s": round(wall, 2),
        "parallel_envs": n_envs,
        "targets": targets,
    }
    if any("target_radius" in r for r in results):
        record["by_distance"] = by_distance(results)
        record["failed"] = [  # which targets the policy misses: the report's and the reader's first question
            {k: r[k] for k in ("seed", "return", "target_radius", "target_angle", "target_bin") if k in r}
            for r in results
            if not r["success"]
        ]
    if gif_frames and gif_path:
        label = gif_label or getattr(policy, "label", None) or type(policy).__name__
        # the scripted expert beside the policy exists for reacher only
        expert = None if isinstance(policy, ExpertPolicy) or not spec.is_reacher else gif_expert
        record["gif"] = [
            str(
                write_episode_gif(
                    [
                        Panel(
                            label,
                            results[g]["seed"],
                            gif_frames[g],
                            gif_returns[g],
                            results[g]["success"],
                            gif_rewards[g],
                            gif_targets[g],
                        )
                    ]
                    + ([expert_panel(expert, task, results[g]["seed"], steps, action_repeat)] if expert else []),
                    Path(gif_path).with_name(f"{Path(gif_path).stem}-ep{g}.gif"),
                    steps=steps,
                    frame_s=action_repeat * spec.control_timestep,
                )
            )
            for g in range(len(gif_frames))
        ]
    return record


def _gif_frame(env, ts) -> np.ndarray:
    if ts.frame is not None:
        frame = ts.frame
        if frame.shape[0] != GIF_SIZE:
            from PIL import Image

            frame = np.asarray(Image.fromarray(frame).resize((GIF_SIZE, GIF_SIZE)))
        return frame
    spec = getattr(env, "spec", None)  # env.SuiteEnv's TaskSpec, through the wrappers
    return env.physics.render(height=GIF_SIZE, width=GIF_SIZE, camera_id=spec.camera_id if spec else 0)


CONTROL_DT = 0.02  # s of simulated time per reacher control step (dm_control reacher: timestep 0.02, 1 substep)
GIF_FONT_PX = 11  # caption font size: DejaVu Sans (matplotlib's own font file), legible at the GIF's 160 px panels
GIF_LINE_H = 13  # px per caption line at that size
GIF_CAPTION_LINES = 6  # the label (up to 2 lines), seed, step, the return, the live reward / final outcome
GIF_CAPTION_H = GIF_LINE_H * GIF_CAPTION_LINES + 4  # px of caption above each panel


class Panel(NamedTuple):
    """One captioned rollout: frames (one per agent step), the return so far and the latest reward at each, and
    where the target sphere is drawn ((x, y, radius) px in a GIF_SIZE frame)."""

    label: str
    seed: int
    frames: list
    returns: list
    success: bool | None  # None: the task defines no success (the caption shows the return only)
    rewards: list | None = None
    target: tuple | None = None


def target_pixel(physics, size: int = GIF_SIZE) -> tuple[float, float, float] | None:
    """The target sphere's centre and radius in pixels of a size x size render of camera 0, projected with
    dm_control's camera matrix (world -> homogeneous image coordinates: x = xs / s, y = ys / s)."""
    try:
        from dm_control.mujoco.engine import Camera

        cam = Camera(physics, height=size, width=size, camera_id=0).matrix  # (3, 4)
        centre = np.asarray(physics.named.data.geom_xpos["target"], np.float64)
        radius = float(physics.named.model.geom_size["target"][0])
        (x, y, s), (x2, _, s2) = cam @ np.append(centre, 1.0), cam @ np.append(centre + [radius, 0, 0], 1.0)
        return float(x / s), float(y / s), abs(x2 / s2 - x / s)
    except (ImportError, KeyError, AttributeError):  # a panel without a reacher target: no mark
        return None


@closes_envs
def expert_panel(name: str, task: str, seed: int, steps: int, action_repeat: int = 1) -> Panel:
    """The scripted expert on the same evaluation seed, acting every simulator step, framed at the policy's rate."""
    from vjepa_robot_lab.envs.vec_env import make_env

    env = make_env(task, seed=0, episode_steps=steps, action_repeat=1, image_size=0)
    expert = ExpertPolicy(name)
    ts = env.reset(seed)
    expert.reset([seed])
    frames, returns, rewards = [], [], []
    target = target_pixel(env.physics)
    for t in range(steps):
        if t % action_repeat == 0:
            frames.append(_gif_frame(env, ts))
            returns.append(float(np.sum(env.sim_rewards)))
            rewards.append(float(env.sim_rewards[-1]) if len(env.sim_rewards) else 0.0)
        ts = env.step(expert.act([env], [ts], [seed])[0])
    label = {"jacobian": "Jacobian expert", "p-controller": "P-controller"}.get(name, name)
    return Panel(
        label, seed, frames, returns, bool(episode_success(np.asarray(env.sim_rewards, np.float32))), rewards, target
    )


def _font(size: int = GIF_FONT_PX):
    """DejaVu Sans (shipped with matplotlib, part of the trainer stack): Pillow's built-in font at this size draws
    spaces about 1 px wide ("policyon state", "nosuccess"), so words ran together in the captions."""
    from PIL import ImageFont

    try:
        from matplotlib import font_manager

        return ImageFont.truetype(font_manager.findfont("DejaVu Sans", fallback_to_default=False), size)
    except (ImportError, ValueError, OSError):  # no matplotlib or no font file: Pillow's own
        try:
            return ImageFont.load_default(size=size)
        except TypeError:  # Pillow < 10.1: the fixed bitmap font
            return ImageFont.load_default()


def wrap_label(label: str, width: int, font=None, max_lines: int = 2) -> list[str]:
    """Word-wrap a panel label to `width` px (so "(tiny random-init stand-in)" is never cut off); a word longer
    than a line is cut at the line's end."""
    from PIL import Image, ImageDraw

    font = font or _font()
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines: list[str] = []
    for word in label.split():
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    if len(lines) > max_lines:  # keep the last line (the stand-in mark) and join the rest
        lines = [" ".join(lines[: len(lines) - max_lines + 1])] + lines[len(lines) - max_lines + 1 :]
    out = []
    for line in lines:
        while draw.textlength(line, font=font) > width and len(line) > 1:
            line = line[:-1]
        out.append(line)
    return out


def _caption(frame: np.ndarray, lines: list[str], target: tuple | None = None) -> np.ndarray:
    from PIL import Image, ImageDraw

    h, w = frame.shape[:2]
    img = Image.new("RGB", (w, h + GIF_CAPTION_H), (20, 20, 20))
    img.paste(Image.fromarray(frame), (0, GIF_CAPTION_H))
    draw = ImageDraw.Draw(img)
    font = _font()
    for i, line in enumerate(lines):
        draw.text((3, 1 + GIF_LINE_H * i), line, fill=(255, 255, 255), font=font)
    if target is not None:  # ring and name the target sphere (the arm's fingertip must reach it)
        x, y, r = target[0], target[1] + GIF_CAPTION_H, target[2] + 3
        draw.ellipse((x - r, y - r, x + r, y + r), outline=(255, 255, 255), width=1)
        tx = x + r + 2 if x + r + 40 < w else x - r - 36
        draw.text((tx, y - 6), "target", fill=(255, 255, 255), font=font)
    return np.asarray(img)


def caption_lines(p: Panel, t: int, last: bool, steps: int, per_frame: float) -> list[str]:
    """The caption of panel `p` at recorded frame t: the live state on every frame (the reward right now), and
    the episode's outcome only on the last frame, where it is known."""
    label = wrap_label(p.label, GIF_SIZE - 6)
    label += [""] * (2 - len(label))
    now = p.rewards[t] if p.rewards is not None else None
    if p.success is None:  # a task without success: the return is the outcome; rewards are fractions of 1
        state = "" if last else (f"reward {now:.2f} now" if now is not None else "")
    else:
        state = (
            ("SUCCESS" if p.success else "no success")
            if last
            else (f"reward {now:.0f}/1 now" if now is not None else "")
        )
    # one item a line: side by side, an evaluation seed (~1e9) and the step, or the return and the live state,
    # overran a 160 px panel
    return [*label, f"seed {p.seed}", f"step {round((t + 1) * per_frame)}/{steps}", f"return {p.returns[t]:.1f}", state]


def write_episode_gif(
    panels: list[Panel], path: Path, *, steps: int, frame_s: float = CONTROL_DT, max_frames: int = 120
) -> Path:
    """Panels side by side, captioned, as one looping GIF whose frame delay is real simulated time."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    n = min(len(p.frames) for p in panels)
    stride = max(1, -(-n // max_frames))  # every `stride`-th agent step, so a long episode stays a small file
    per_frame = steps / max(n, 1)  # simulator steps per recorded frame
    images = []
    for t in list(range(0, n, stride)) + ([n - 1] if (n - 1) % stride else []):
        row = [_caption(p.frames[t], caption_lines(p, t, t == n - 1, steps, per_frame), p.target) for p in panels]
        images.append(Image.fromarray(np.concatenate(row, axis=1)))
    # Pillow's GIF `duration` is milliseconds per frame (imageio's pillow plugin passes it through unchanged)
    delay_ms = int(round(1000 * frame_s * stride))
    images[0].save(path, save_all=True, append_images=images[1:], duration=delay_ms, loop=0, optimize=False)
    return path


def evaluate_policy(
    policy_fn: Callable[[np.ndarray], np.ndarray],
    features: FeatureSource,
    task: str = "easy",
    episodes: int = 100,
    steps: int = 200,
    seed: int = 0,
    parallel_envs: int = 8,
    **kwargs,
) -> dict:
    """Evaluate a trained network on a feature source (convenience for tests and scripts)."""
    return evaluate(
        FeaturePolicy(policy_fn, features),
        task=task,
        episodes=episodes,
        steps=steps,
        seed=seed,
        parallel_envs=parallel_envs,
        **kwargs,
    )
