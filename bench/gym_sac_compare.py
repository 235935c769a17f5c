"""SB3's SAC on the Gymnasium env (examples/sb3_sac.py) against the project's own SAC, same budget, state features.

    nice python bench/gym_sac_compare.py --steps 20000 --seed 0      # writes bench/results/gym_sac_compare_s0.json

Both: reacher easy, action repeat 4, 1000-step episodes, the same hyper-parameters (TrainSACRequest's defaults, which
the example copies), one torch thread, and the same 10 deterministic evaluation episodes (eval_episode_seed(0, k)).
Run one after the other, so they do not share the 2 cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"


class Run:
    """What train_sac needs from a run handle (vjepa_robot_lab.records.runs.RunHandle), without a run store."""

    def __init__(self, path: Path):
        self.run_id, self.dir, self.metrics = "bench", path, {}

    def update(self, status=None, metrics=None, error=None):
        self.metrics |= metrics or {}

    def stop_requested(self) -> bool:
        return False


def own_sac(steps: int, seed: int, eval_episodes: int, normalize: bool = True) -> dict:
    from vjepa_robot_client.contract import TrainSACRequest
    from vjepa_robot_lab.learning.sac import Nets, train_sac
    from vjepa_robot_lab.perception.features import make_feature_source

    cfg = TrainSACRequest(
        features="state",
        action_repeat=4,  # the gym env's default (vjepa_robot/gym.py DEFAULTS), so both sides act alike
        total_steps=steps,
        seed=seed,
        eval_every=10 * steps,
        checkpoint_every=10 * steps,
        checkpoint_replay=False,
        final_eval_episodes=eval_episodes,
    )
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        out = train_sac(cfg, Run(Path(d)), make_feature_source("state"), nets=Nets(normalize_obs=normalize))
    fe = out["final_eval"]
    return {
        "env_steps": out["env_steps"],
        "updates": out["updates"],
        "mean_return": fe["mean_return"],
        "std_return": fe["std_return"],
        "success_rate": fe["success_rate"],
        "returns": fe["returns"],
        "wall_s": round(time.perf_counter() - t0, 1),
    }


def sb3_sac(steps: int, seed: int, eval_episodes: int) -> dict:
    cmd = [
        sys.executable,
        str(ROOT / "examples" / "sb3_sac.py"),
        "--features",
        "state",
        "--steps",
        str(steps),
        "--seed",
        str(seed),
        "--eval-episodes",
        str(eval_episodes),
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--only", choices=["sb3", "own"], default=None)
    p.add_argument("--no-normalize", action="store_true", help="our SAC without its input scaling (as SB3's)")
    a = p.parse_args()
    result = {"steps": a.steps, "seed": a.seed, "eval_episodes": a.eval_episodes}
    if a.only != "own":
        result["sb3_gym"] = sb3_sac(a.steps, a.seed, a.eval_episodes)
        print("sb3", result["sb3_gym"], flush=True)
    if a.only != "sb3":
        result["own"] = own_sac(a.steps, a.seed, a.eval_episodes, normalize=not a.no_normalize)
        result["own"]["normalize_obs"] = not a.no_normalize
        print("own", result["own"], flush=True)
    RESULTS.mkdir(exist_ok=True)
    tag = ("_" + a.only if a.only else "") + ("_nonorm" if a.no_normalize else "")
    path = RESULTS / f"gym_sac_compare_{a.steps // 1000}k_s{a.seed}{tag}.json"
    path.write_text(json.dumps(result, indent=2))
    print(path)


if __name__ == "__main__":
    main()
