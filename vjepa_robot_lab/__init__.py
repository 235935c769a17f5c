"""vjepa-robot's research library: tasks and environments, experts, feature sources and readouts, BC, SAC,
evaluation, studies, datasets I/O, run records and reports, as plain Python with no HTTP, job-runner or CLI code.

The doors onto it (the trainer service in services/trainer, the CLI in vjepa_robot, the Gymnasium envs in
vjepa_robot/gym.py, and bench/) import it; it imports none of them (tests/test_architecture.py checks both).
Below it: the feature store (services.common.store) and the SDK (vjepa_robot_client), through which feature sources
reach the encoder service over HTTP.

    envs/         tasks (the task table), env (dm_control wrappers, frame windows), vec_env (lockstep envs)
    policies/     experts (scripted and random), run_experts (a trained run as a demonstrator)
    perception/   features (feature sources: vjepa2, state, random, ...), readouts (mean, attentive, FLARE), probe
    learning/     bc, sac (sac_agent, sac_workspace, + replay, sac_checkpoint), curves (TensorBoard / W&B)
    evaluation/   evaluate (live rollouts), stats (intervals)
    data/         datasets (demonstration datasets in the store), lerobot (LeRobotDataset export/import)
    records/      runs (run records on disk), run_kinds (the registry of algorithms), context (what a job needs)
    experiments/  studies (several seeds under one id), protocols (CortexBench's recipe)
    report/       tables, plots and GIFs from the records
"""

from vjepa_robot_lab import _gl  # noqa: F401  (MUJOCO_GL default before any dm_control/mujoco import)
