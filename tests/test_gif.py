"""The rollout GIF's caption (vjepa_robot_lab/evaluation/evaluate.py): the stand-in mark is never cut off, the caption
shows
the live state on every frame and the episode's outcome only on its last frame, and the target sphere is marked.
A real (tiny) live evaluation with real dm_control rendering; the captions are checked as the text they draw."""

from __future__ import annotations

import numpy as np
from PIL import Image

from vjepa_robot_lab.envs.env import eval_episode_seed
from vjepa_robot_lab.evaluation.evaluate import (
    GIF_CAPTION_H,
    GIF_SIZE,
    FeaturePolicy,
    Panel,
    caption_lines,
    evaluate,
    target_pixel,
    wrap_label,
)
from vjepa_robot_lab.perception.features import make_feature_source

STAND_IN = "policy on vjepa2 (tiny random-init stand-in)"


def test_the_stand_in_mark_is_wrapped_not_cut():
    lines = wrap_label(STAND_IN, GIF_SIZE - 6)
    assert len(lines) == 2 and " ".join(lines) == STAND_IN  # every word shows
    assert "random-init stand-in)" in lines[-1]


def test_live_state_per_frame_and_the_outcome_only_at_the_end():
    p = Panel("Jacobian expert", 7, [None] * 3, [0.0, 1.0, 2.0], True, [0.0, 1.0, 1.0])
    first, middle, last = (caption_lines(p, t, t == 2, steps=3, per_frame=1.0) for t in range(3))
    assert "reward 0/1 now" in first[-1] and "SUCCESS" not in " ".join(first)
    assert "reward 1/1 now" in middle[-1] and "SUCCESS" not in " ".join(middle)
    assert last[-1].endswith("SUCCESS") and "step 3/3" in last


def test_gif_marks_the_target_where_the_sphere_is(tmp_path):
    from vjepa_robot_lab.envs.vec_env import make_env

    env = make_env("easy", seed=0, episode_steps=20, action_repeat=1, image_size=0)
    env.reset(5)
    x, y, r = target_pixel(env.physics)
    frame = env.physics.render(height=GIF_SIZE, width=GIF_SIZE, camera_id=0)
    red = frame[int(y), int(x)].astype(int)
    assert red[0] > 200 and red[0] - red[2] > 60, red  # the projected centre lands on the (red) target sphere
    assert 3 < r < 20

    policy = FeaturePolicy(lambda f: np.zeros((len(f), 2), np.float32), make_feature_source("state"))
    policy.label = STAND_IN
    rec = evaluate(policy, episodes=1, steps=20, parallel_envs=1, gif_episodes=1, gif_path=tmp_path / "e.gif")
    gif = Image.open(rec["gif"][0])
    assert gif.size == (2 * GIF_SIZE, GIF_SIZE + GIF_CAPTION_H)
    img = np.asarray(gif.convert("RGB")).astype(int)
    env.reset(eval_episode_seed(0, 0))  # the GIF's episode: find its target and its ring on the first frame
    tx, ty, tr = target_pixel(env.physics)
    yy, xx = np.mgrid[:GIF_SIZE, :GIF_SIZE]
    white = img[GIF_CAPTION_H:, :GIF_SIZE].min(axis=2) > 235

    def ring_white(cx: float, cy: float) -> float:
        return float(white[np.abs(np.hypot(xx - cx, yy - cy) - (tr + 3)) < 1.5].mean())

    assert ring_white(tx, ty) > 0.25  # a (1 px, antialiased) ring around the target sphere
    assert ring_white((tx + 60) % GIF_SIZE, (ty + 60) % GIF_SIZE) < 0.1  # and not just anywhere
