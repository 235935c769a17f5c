"""Named evaluation recipes: `--protocol cortexbench` (TrainBCRequest.protocol, BakeoffRequest.protocol).

A protocol fills every field a request leaves out (what the caller sent explicitly wins), so a row trained with
`protocol: cortexbench` is CortexBench's DMC recipe unless the record's config says otherwise; the resolved values
are what the run records.

CORTEXBENCH is read from facebookresearch/eai-vc at e782c35 (`cortexbench/mujoco_vc/visual_imitation/`):

- `config/DMC_BC_config.yaml`: num_demos 100; camera 0; image 256 x 256; history_window 3; epochs 100;
  bc_kwargs hidden_sizes (256, 256, 256), relu, MSE, batch_size 256, lr 1e-3, dropout 0; eval_num_traj 10;
  eval_frequency 5.
- `train_loop.py`: the policy is mjrl's BatchNormMLP (BatchNorm1d on the input features, then the MLP); the
  embeddings are fused with `fuse_embeddings_flare` (the latest embedding plus the differences of consecutive ones
  over the last 3, history padded with the first at an episode's start: our `flare` readout); Adam at a constant lr
  (no schedule); every demo is trained on (no validation split); DMC is scored by return (`success_percentage =
  -1`); every 5 epochs and at the last it evaluates 10 episodes with `base_seed = seed` and keeps the highest mean
  score seen (`eval/highest_score`), saving `best_policy.pickle` when the current score is the highest.
- `launch_all_jobs.sh`: the five DMC tasks walker-stand, walker-walk, reacher-easy, cheetah-run, finger-spin;
  seeds 100, 200, 300.

Where this tool necessarily differs (docs/bakeoff.md says the same for readers):
- V-JEPA 2 and VideoMAE embed 8-frame windows (the embedding of step t sees frames t-7..t); CortexBench's image
  encoders embed one frame. FLARE then fuses the last 3 *windows*. Image families here (DINOv2, SigLIP) also read
  the window: `--fusion last` on their encoder gives one frame's embedding, as CortexBench's.
- Score: this tool reports the last epoch's policy on the evaluation episodes. CortexBench reports the highest
  score over its 20 evaluations during training (epochs 5, 10, ..., 95 and 99), a best-of-20 selected on the
  evaluation episodes themselves; that is not reproduced (it would need 20 evaluations per run, and a maximum
  over noisy evaluations is biased upwards). Compare a row here with VC-1's numbers with that in mind.
- Evaluation episodes: every seed of a study is evaluated on the same 10 episodes (seeds 1e9 + eval_seed + k,
  a range no demo uses); CortexBench evaluates seed s on episodes seeded from s.
- Demos: made here by this tool's experts (jacobian for reacher, run:RUN_ID of a trained policy elsewhere), not
  the DDPG experts of dmc-expert-v1.0 (URLB); their episode length is the suite's own 1000 steps (dm_control's
  20 s at a 0.02 s control step for reacher; 1000 for every suite task). eai-vc takes the horizon from the gym
  registration of its dmc2gym dependency, which is not in the eai-vc repository and was not checked here.
"""

from __future__ import annotations

from typing import Any

from vjepa_robot_client.contract import PROTOCOLS, Protocol, TrainBCRequest

CORTEXBENCH: dict[str, Any] = {
    # BC (TrainBCRequest fields)
    "bc": {
        "head": "batchnorm",
        "hidden_sizes": [256, 256, 256],
        "epochs": 100,
        "batch_size": 256,
        "lr": 1e-3,
        "lr_schedule": "constant",
        "val_fraction": 0.0,  # every demo trains
        "select": "last",  # the last epoch (CortexBench: best of its 20 evaluations; see above)
        "readout": "flare",  # history_window 3, fuse_embeddings_flare
    },
    # the demos (CreateDatasetRequest fields)
    "dataset": {"episodes": 100, "steps": 1000, "image_size": 256, "seed": 0},
    # the evaluation (EvalRequest fields) and the training seeds
    "eval": {"episodes": 10, "steps": 1000, "seed": 0},
    "seeds": [100, 200, 300],
    "tasks": ["walker-stand", "walker-walk", "reacher-easy", "cheetah-run", "finger-spin"],
    "camera": 0,
    "score": "mean return",
    "source": "facebookresearch/eai-vc e782c35 cortexbench/mujoco_vc/visual_imitation (DMC_BC_config.yaml, "
    "train_loop.py, launch_all_jobs.sh)",
}

PRESETS: dict[str, dict[str, Any]] = {Protocol.cortexbench.value: CORTEXBENCH}


def preset(name: str | Protocol) -> dict[str, Any]:
    name = getattr(name, "value", name)
    if name not in PRESETS:
        raise ValueError(f"unknown protocol {name!r}: choose one of {', '.join(PROTOCOLS)}")
    return PRESETS[name]


def apply_bc(req: TrainBCRequest) -> TrainBCRequest:
    """The request with its protocol's BC values in every field it did not set (unchanged without a protocol)."""
    if req.protocol is None:
        return req
    values = {k: v for k, v in preset(req.protocol)["bc"].items() if k not in req.model_fields_set}
    return type(req).model_validate({**req.model_dump(exclude_unset=True), **values, "protocol": req.protocol})


# CortexBench's DMC score: the evaluation return normalised by the maximum return of 1000, on a 0-100 scale, i.e.
# return / 10 (the maintainers, eai-vc issue #14: "normalized by 1000 (max score) and not demo score"); the published
# figure for an encoder is the mean of that score over the five DMC tasks, each task's score the mean over seeds of
# the run's best evaluation (eai-vc issue #19).
def cortexbench_score(mean_return: float | None) -> float | None:
    return None if mean_return is None else mean_return / 10.0


# Published DMC scores (mean over the five tasks, 0-100; +- as published), so a row measured with the same encoder
# reads against them in the bake-off table. eai-vc MODEL_CARD.md (2023-03-28) lists its DMC tasks as finger-spin,
# reacher-hard, cheetah-run, walker-stand and walker-walk; the eai-vc code and issue #14 use reacher-easy.
PUBLISHED_DMC_SCORES: tuple[tuple[str, float, float | None, str], ...] = (
    ("VC-1 (ViT-L, Ego4D+MNI)", 66.9, 1.4, "eai-vc MODEL_CARD.md"),
    ("VC-1-base (ViT-B, Ego4D+MN)", 64.2, 1.9, "eai-vc MODEL_CARD.md"),
    ("MAE on Ego4D (ViT-L)", 60.8, 3.3, "eai-vc MODEL_CARD.md"),
    ("MAE on Ego4D (ViT-B)", 64.1, 2.3, "eai-vc MODEL_CARD.md"),
    ("VC-1 (ViT-L), a user's rerun", 60.8, 0.93, "eai-vc issue #19"),
)
