"""bench/sac_sweep.py's held-out reporting (issue 30): configurations chosen on selection seeds and episodes, the
chosen one reported on training seeds and evaluation episodes disjoint from both. Split logic only: no training
(the one stand-in, `_scores`, answers for a trained run with a number, and says so)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from sac_sweep import (
    Split,
    SplitError,
    candidate_requests,
    check_split,
    choose,
    heldout,
    heldout_table,
    sweep_request,
)

from vjepa_robot_lab.envs.env import eval_episode_seed

GOOD = Split(select_seeds=(0, 1, 2), report_seeds=(100, 101), select_eval_seed=0, report_eval_seed=1000)


def test_a_split_that_reuses_what_selection_saw_is_refused():
    reqs = [sweep_request(0, {})]  # the sweep's defaults: 5-episode curve points, a 10-episode final evaluation
    check_split(GOOD, reqs)  # disjoint: accepted
    with pytest.raises(SplitError, match=r"training seed\(s\) 2 are in both --select-seeds and --report-seeds"):
        check_split(Split((0, 1, 2), (2, 3), 0, 1000), reqs)
    with pytest.raises(SplitError, match=r"--report-seeds lists seed\(s\) 7 more than once"):
        check_split(Split((0,), (7, 7), 0, 1000), reqs)
    with pytest.raises(SplitError, match="--select-seeds: give at least one"):
        check_split(Split((), (7,), 0, 1000), reqs)
    # eval seeds 0 and 5 draw episodes 1e9+0..9 and 1e9+5..14: they share five
    with pytest.raises(SplitError, match=r"--select-eval-seed 0 .*--report-eval-seed 5 .*at least 10 away, e\.g\. 10"):
        check_split(Split((0,), (1,), 0, 5), reqs)
    check_split(Split((0,), (1,), 0, 10), reqs)  # 10 away: disjoint
    assert {eval_episode_seed(0, k) for k in range(10)}.isdisjoint({eval_episode_seed(10, k) for k in range(10)})
    # every evaluation a run makes counts: a stratified final evaluation draws 30, a --strat 60 evaluation 60
    strat_final = [sweep_request(0, {"final_eval_targets": "stratified"})]
    with pytest.raises(SplitError, match="30 episodes"):
        check_split(Split((0,), (1,), 0, 20), strat_final)
    with pytest.raises(SplitError, match="60 episodes"):
        check_split(Split((0,), (1,), 0, 30), reqs, strat=60)
    # training episodes: seed x 100003 + k; a run of over 100003 episodes would reach the next seed's
    long = [sweep_request(0, {"total_steps": 200_000, "episode_steps": 1, "action_repeat": 1, "parallel_envs": 1})]
    with pytest.raises(SplitError, match="selection seed 0 and report seed 1 would share training episodes"):
        check_split(Split((0,), (1,), 0, 1000), long)
    check_split(Split((0,), (3,), 0, 1000), long)


def test_a_candidate_may_not_set_the_splits_seeds():
    with pytest.raises(SplitError, match="candidate a: eval_seed is set by the split"):
        candidate_requests({"a": {"eval_seed": 3}})
    with pytest.raises(SplitError, match="candidate b: .*networks"):
        candidate_requests({"b": {"networks": "nope"}})
    (req,) = candidate_requests({"w": {"task": "walker-walk"}})
    assert req.action_repeat == 2  # a sweep run is completed as the trainer completes a request


def _scores(table: dict[tuple[str, str], float], calls: list):
    """A stand-in for a trained run (this test trains nothing): the score a candidate gets in a phase, the same at
    every seed, recorded with the seed and evaluation seed it was asked for."""

    def run(sweep, candidate, phase, seed, eval_seed, overrides, features, strat, keep):
        calls.append((candidate, phase, seed, eval_seed))
        return {"final_eval": {"mean_return": table[(candidate, phase)] + seed / 1000}}

    return run


def test_heldout_chooses_on_selection_and_reports_the_chosen_on_held_out_runs(tmp_path):
    state_path = tmp_path / "heldout_t.json"
    candidates = {"a": {"networks": "findings"}, "b": {"networks": "ln"}, "c": {"networks": "bro"}}
    # b wins the selection; on the report episodes a would have looked better: reporting must not re-choose
    table = {("a", "select"): 800.0, ("b", "select"): 900.0, ("c", "select"): 850.0, ("b", "report"): 870.0}
    table[("a", "report")] = 990.0
    calls: list = []
    state = heldout("t", GOOD, candidates, state_path=state_path, run=_scores(table, calls), log=lambda s: None)
    select = [c for c in calls if c[1] == "select"]
    report = [c for c in calls if c[1] == "report"]
    assert {(c[0], c[2]) for c in select} == {(k, s) for k in candidates for s in GOOD.select_seeds}
    assert all(c[3] == GOOD.select_eval_seed for c in select)
    assert report == [("b", "report", 100, 1000), ("b", "report", 101, 1000)]  # the chosen one only, held out
    assert state["chosen"] == "b" and state["report"] == {"100": 870.1, "101": 870.101}
    assert json.loads(state_path.read_text()) == state  # written as it went
    md = heldout_table(state)
    lines = md.splitlines()
    assert "only the report row estimates its performance" in lines[0]
    assert [ln.split(" | ")[0] for ln in lines[4:]] == ["| selection", "| selection (chosen)", "| selection",
                                                       "| **report (held out)**"]  # fmt: skip
    assert "| 100, 101 | eval seed 1000 | 870, 870 |" in lines[-1]
    assert "| selection (chosen) | b | 0, 1, 2 | eval seed 0 | 900, 900, 900 | 900 [" in md
    # a rerun reuses the state; another plan under the same name, or a changed choice, is refused
    with pytest.raises(SplitError, match="another plan"):
        heldout("t", GOOD, {"a": {}}, state_path=state_path, run=_scores(table, []), log=lambda s: None)
    table[("a", "select")] = 950.0
    with pytest.raises(SplitError, match="chose 'b' already"):
        heldout("t", GOOD, candidates, state_path=state_path, run=_scores(table, []), log=lambda s: None)


def test_choose_takes_the_best_mean_and_the_first_on_a_tie():
    assert choose({"a": {"0": 1.0, "1": 3.0}, "b": {"0": 2.5, "1": 1.0}}) == "a"
    assert choose({"a": {"0": 2.0}, "b": {"0": 2.0}}) == "a"
