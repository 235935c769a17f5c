"""Clients of the trainer service: datasets, BC and SAC runs, live evaluation, baselines, bake-offs.

Every call is written once in _trainer_calls.py (its request, its parser, its signature and docstring); the
two clients here are shells over those builders, so they expose the same methods (tests/test_sdk_parity.py).
Every POST that starts work answers 202 at once; the wait_* methods poll until a terminal state.
"""

from __future__ import annotations

from . import _trainer_calls as api
from ._calls import async_call, async_poll, sync_call, sync_poll
from ._trainer_calls import DATASET_TERMINAL, TERMINAL, run_progress
from ._trainer_calls import eval_request as _eval_request
from ._transport import AsyncTransport, SyncTransport
from ._urls import default_trainer_url

TRAINER_URL_ENV = "VJEPA_ROBOT_TRAINER_URL"
DEFAULT_TRAINER_URL = "http://127.0.0.1:8002"

__all__ = [
    "TrainerClient",
    "AsyncTrainerClient",
    "run_progress",
    "TERMINAL",
    "DATASET_TERMINAL",
    "TRAINER_URL_ENV",
    "DEFAULT_TRAINER_URL",
    "_eval_request",
]


class TrainerClient(SyncTransport):
    """Synchronous client of the trainer service.

    >>> tr = TrainerClient("http://127.0.0.1:8002")
    >>> tr.wait_dataset(tr.create_dataset("jacobian-easy-30", episodes=30).name)
    >>> run = tr.wait(tr.train_bc("jacobian-easy-30", features="state"))
    >>> tr.wait_eval(tr.evaluate(run.run_id, episodes=50).run_id).success_rate
    """

    env_url = TRAINER_URL_ENV
    default_url = property(lambda self: default_trainer_url())  # DEFAULT_TRAINER_URL unless the port variables say

    health = sync_call(api.health)
    info = sync_call(api.info)
    # datasets
    create_dataset = sync_call(api.create_dataset)
    dataset = sync_call(api.dataset)
    datasets = sync_call(api.datasets)
    wait_dataset = sync_poll(api.wait_dataset)
    # runs
    train = sync_call(api.train)
    train_bc = sync_call(api.train_bc)
    train_sac = sync_call(api.train_sac)
    run = sync_call(api.run)
    runs = sync_call(api.runs)
    resume = sync_call(api.resume)
    wait = sync_poll(api.wait)
    # studies (one run per seed)
    get_study = sync_call(api.get_study)
    studies = sync_call(api.studies)
    evaluate_study = sync_call(api.evaluate_study)
    wait_study = sync_poll(api.wait_study)
    # evaluation
    evaluate = sync_call(api.evaluate)
    eval_result = sync_call(api.eval_result)
    wait_eval = sync_poll(api.wait_eval)
    evaluate_baseline = sync_call(api.evaluate_baseline)
    # bake-off
    bakeoff = sync_call(api.bakeoff)
    get_bakeoff = sync_call(api.get_bakeoff)
    resume_bakeoff = sync_call(api.resume_bakeoff)
    bakeoffs = sync_call(api.bakeoffs)
    bakeoff_figure = sync_call(api.bakeoff_figure)
    wait_bakeoff = sync_poll(api.wait_bakeoff)


class AsyncTrainerClient(AsyncTransport):
    """The asyncio twin of TrainerClient: the same methods, awaited.

    >>> async with AsyncTrainerClient("http://127.0.0.1:8002") as tr:
    ...     run = await tr.wait(await tr.train_bc("jacobian-easy-30", features="state"))
    """

    env_url = TRAINER_URL_ENV
    default_url = property(lambda self: default_trainer_url())  # DEFAULT_TRAINER_URL unless the port variables say

    health = async_call(api.health)
    info = async_call(api.info)
    # datasets
    create_dataset = async_call(api.create_dataset)
    dataset = async_call(api.dataset)
    datasets = async_call(api.datasets)
    wait_dataset = async_poll(api.wait_dataset)
    # runs
    train = async_call(api.train)
    train_bc = async_call(api.train_bc)
    train_sac = async_call(api.train_sac)
    run = async_call(api.run)
    runs = async_call(api.runs)
    resume = async_call(api.resume)
    wait = async_poll(api.wait)
    # studies (one run per seed)
    get_study = async_call(api.get_study)
    studies = async_call(api.studies)
    evaluate_study = async_call(api.evaluate_study)
    wait_study = async_poll(api.wait_study)
    # evaluation
    evaluate = async_call(api.evaluate)
    eval_result = async_call(api.eval_result)
    wait_eval = async_poll(api.wait_eval)
    evaluate_baseline = async_call(api.evaluate_baseline)
    # bake-off
    bakeoff = async_call(api.bakeoff)
    get_bakeoff = async_call(api.get_bakeoff)
    resume_bakeoff = async_call(api.resume_bakeoff)
    bakeoffs = async_call(api.bakeoffs)
    bakeoff_figure = async_call(api.bakeoff_figure)
    wait_bakeoff = async_poll(api.wait_bakeoff)
