"""Trace a kept run's deterministic policy on stratified evaluation episodes (issue 22): where the finger rests, the
torques, the wrist angle (its limit is +-160 deg, dm_control's reacher.xml), joint speeds over the last 50 agent
steps; 1000-step episodes at the run's action repeat.

    python bench/sac_episode_trace.py base22_s0 9,33,36 [--out bench/results/episodes_base22_s0.json]

(run dir vjepa-robot-runs/sac22/<name>; k = the episode's index in the 60-episode stratified evaluation, eval seed 0)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vjepa_robot_lab.envs.env import eval_episode_seed, state_features
from vjepa_robot_lab.envs.vec_env import make_env
from vjepa_robot_lab.evaluation.evaluate import place_target, stratified_targets
from vjepa_robot_lab.learning.sac import policy_from_checkpoint


def trace(run_dir: Path, k: int, episodes: int = 60) -> dict:
    act = policy_from_checkpoint(run_dir)
    target = stratified_targets(0, episodes)[k]
    env = make_env("easy", seed=0, episode_steps=act.episode_steps, action_repeat=act.action_repeat, image_size=0)
    try:
        place_target(env, target["radius"], target["angle"])
        ts = env.reset(eval_episode_seed(0, k))
        ph, rows = env.physics, []
        for _ in range(act.episode_steps // act.action_repeat):
            a = act(state_features(ts.observation)[None])[0]
            ts = env.step(a)
            finger, goal = ph.named.data.geom_xpos["finger", :2], ph.named.data.geom_xpos["target", :2]
            q = ph.named.data.qpos[["shoulder", "wrist"]]
            rows.append([np.linalg.norm(finger), np.linalg.norm(finger - goal), *a, *q, *ph.named.data.qvel])
        tr, ret = np.asarray(rows, np.float64), float(np.sum(env.sim_rewards))
    finally:
        env.close()
    last = tr[-50:]
    return {
        "k": k,
        "target": target,
        "return": ret,
        "finger_from_base_last50": round(float(last[:, 0].mean()), 4),
        "finger_to_target_last50": round(float(last[:, 1].mean()), 4),
        "min_finger_to_target": round(float(tr[:, 1].min()), 4),
        "torque_last50": last[:, 2:4].mean(0).round(3).tolist(),
        "wrist_angle_last50_deg": round(float(np.degrees(last[:, 5].mean())), 1),
        "joint_speed_last50": round(float(np.abs(last[:, 6:8]).mean()), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name")
    ap.add_argument("episodes", help="comma-separated k")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    torch.set_num_threads(1)
    rows = [trace(Path("vjepa-robot-runs/sac22") / a.name, int(k)) for k in a.episodes.split(",")]
    for r in rows:
        print(json.dumps(r))
    if a.out:
        a.out.write_text(json.dumps({"run": a.name, "episodes": rows}, indent=1))


if __name__ == "__main__":
    main()
