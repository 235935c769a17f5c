"""Stratified evaluation targets (issue 22): equal episodes near / middle / far from the reacher's base, read back
from the real dm_control physics; the option on POST/GET /eval (real uvicorn on loopback, a scripted expert, no
encoder needed)."""

from __future__ import annotations

import math
import time

import httpx
import numpy as np
import pytest

from vjepa_robot_client.contract import EvalRequest, TrainSACRequest
from vjepa_robot_lab.envs.env import EVAL_SEED_BASE, eval_episode_seed
from vjepa_robot_lab.envs.vec_env import make_env
from vjepa_robot_lab.evaluation.evaluate import (
    TARGET_BINS,
    ExpertPolicy,
    evaluate,
    place_target,
    stratified_targets,
    target_of,
)


def test_stratified_targets_split_evenly_and_refuse_other_counts():
    t = stratified_targets(seed=3, episodes=12)
    assert [x["bin"] for x in t] == ["near", "middle", "far"] * 4
    for name, (lo, hi) in TARGET_BINS.items():
        mine = [x for x in t if x["bin"] == name]
        assert len(mine) == 4 and all(lo <= x["radius"] < hi for x in mine)
        # one episode per angle sector of 2 pi / 4
        assert sorted(int(x["angle"] // (math.pi / 2)) for x in mine) == [0, 1, 2, 3]
    assert stratified_targets(3, 12) == t  # the same (seed, k) always gets the same target
    assert stratified_targets(4, 12) != t
    with pytest.raises(ValueError, match="multiple of 3"):
        stratified_targets(0, 10)


def test_placed_target_is_what_the_physics_and_first_observation_see():
    env = make_env("easy", seed=0, episode_steps=20, action_repeat=4, image_size=0)  # wrappers in between
    try:
        seed = eval_episode_seed(0, 5)
        own = env.reset(seed)
        arm = env.physics.named.data.qpos[["shoulder", "wrist"]].copy()
        for radius, angle in [(0.055, 0.3), (0.125, 2.0), (0.195, 5.5)]:
            place_target(env, radius, angle)
            ts = env.reset(seed)
            ph = env.physics
            xy = ph.named.data.geom_xpos["target", :2]  # world position after the reset's forward pass
            assert np.allclose(xy, [radius * math.sin(angle), radius * math.cos(angle)], atol=1e-9)
            assert target_of(ph) == {"target_radius": round(radius, 4), "target_angle": round(angle, 4)}
            # the first observation was computed with the placed target, not dm_control's draw
            finger = ph.named.data.geom_xpos["finger", :2]
            assert np.allclose(ts.observation["to_target"], xy - finger)
            assert np.allclose(ph.named.data.qpos[["shoulder", "wrist"]], arm)  # the arm's start: from the seed
        place_target(env, None)  # dm_control's own draw again
        again = env.reset(seed)
        assert np.allclose(again.observation["to_target"], own.observation["to_target"])
    finally:
        env.close()


def test_stratified_evaluation_records_targets_bins_and_failures():
    ev = evaluate(ExpertPolicy("random"), episodes=6, steps=20, seed=7, parallel_envs=4, targets="stratified")
    eps = ev["episodes"]
    assert [e["seed"] for e in eps] == [eval_episode_seed(7, k) for k in range(6)]
    assert all(e["seed"] >= EVAL_SEED_BASE for e in eps)  # never a training seed
    for e in eps:
        lo, hi = TARGET_BINS[e["target_bin"]]
        assert lo <= e["target_radius"] <= hi
    assert [b["episodes"] for b in ev["by_distance"]] == [2, 2, 2]
    assert ev["targets"] == "stratified"
    assert len(ev["failed"]) == sum(not e["success"] for e in eps)  # a random policy fails ~all of them
    with pytest.raises(ValueError, match="uniform, stratified"):
        evaluate(ExpertPolicy("random"), episodes=3, steps=20, targets="rings")


def test_request_defaults_and_counts():
    assert EvalRequest().targets.value == "uniform" and EvalRequest().episodes == 100  # default unchanged
    assert EvalRequest(targets="stratified").episodes == 99  # omitted: a count that fills the 3 bins
    assert TrainSACRequest(final_eval_targets="stratified").final_eval_episodes == 30
    with pytest.raises(ValueError, match="multiple of 3"):
        EvalRequest(targets="stratified", episodes=20)
    with pytest.raises(ValueError, match="multiple of 3"):
        TrainSACRequest(final_eval_targets="stratified", final_eval_episodes=20)
    with pytest.raises(ValueError, match="reacher targets"):  # only reacher has a target to place
        EvalRequest(targets="stratified", task="cartpole-swingup")
    with pytest.raises(ValueError, match="reacher targets"):
        evaluate(ExpertPolicy("random", "cartpole-swingup"), task="cartpole-swingup", episodes=3, targets="stratified")


def test_eval_route_targets_option(tmp_path):
    from _servers import serve_app

    from services.trainer.app import TrainerSettings, create_app

    app = create_app(TrainerSettings(store=str(tmp_path / "store"), runs=str(tmp_path / "runs")))
    with serve_app(app) as url, httpx.Client(base_url=url, timeout=60) as c:
        r = c.post("/eval/baseline", json={"policy": "jacobian", "episodes": 3, "steps": 20, "targets": "rings"})
        assert r.status_code == 422 and "uniform" in r.json()["detail"] and "stratified" in r.json()["detail"], r.text
        r = c.post("/eval/baseline", json={"policy": "jacobian", "episodes": 4, "steps": 20, "targets": "stratified"})
        assert r.status_code == 422 and "multiple of 3" in r.json()["detail"], r.text
        r = c.post(
            "/eval/baseline",
            json={"policy": "jacobian", "episodes": 3, "steps": 20, "targets": "stratified", "gif_episodes": 0},
        )
        assert r.status_code == 202, r.text
        run_id = r.json()["run_id"]
        for _ in range(600):
            body = c.get(f"/eval/{run_id}").json()
            if body["status"] in ("succeeded", "failed"):
                break
            time.sleep(0.1)
        assert body["status"] == "succeeded", body
        assert [e["target_bin"] for e in body["episodes"]] == ["near", "middle", "far"]
        assert c.get(f"/eval/{run_id}", params={"targets": "stratified"}).json()["eval_id"] == body["eval_id"]
        r = c.get(f"/eval/{run_id}", params={"targets": "uniform"})
        assert r.status_code == 404 and "targets=uniform" in r.json()["detail"], r.text
        r = c.get(f"/eval/{run_id}", params={"targets": "rings"})
        assert r.status_code == 422 and "stratified" in r.json()["detail"], r.text

    # the report's by-distance figure draws the recorded targets (one episode per bin here)
    from vjepa_robot_lab.report import condition_rows, read_records, write_report
    from vjepa_robot_lab.report.plots import BY_DISTANCE_PNG, distance_episodes

    records = read_records(tmp_path / "runs")
    (group,) = condition_rows(records)
    eps = distance_episodes(group)
    assert len(eps) == 3 and all(TARGET_BINS[b][0] <= e[0] <= TARGET_BINS[b][1] for e, b in zip(eps, TARGET_BINS))
    readme = write_report(records, [], tmp_path / "report")
    assert (tmp_path / "report" / BY_DISTANCE_PNG).stat().st_size > 0 and BY_DISTANCE_PNG in readme.read_text()
