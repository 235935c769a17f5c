"""deploy/modal_app.py: imports without Modal credentials, its classes and functions are configured as documented
(inspected through what the Modal decorators received and the registered specs), and its plain functions run here."""

from __future__ import annotations

import importlib.util
import itertools
import re
from pathlib import Path

import modal
import pytest

ROOT = Path(__file__).resolve().parents[1]
MODAL_APP = ROOT / "deploy/modal_app.py"
_counter = itertools.count()
pytestmark = pytest.mark.filterwarnings("ignore::modal.exception.DeprecationError")  # registered_* lookups


def load_modal_app(monkeypatch, **env: str):
    """Import deploy/modal_app.py afresh, recording the options given to app.cls / app.function / modal.concurrent."""
    for key in (
        "VJEPA_ROBOT_MODAL_GPU",
        "VJEPA_ROBOT_MODAL_STORE",
        "VJEPA_ROBOT_MODAL_MIN_CONTAINERS",
        "VJEPA_ROBOT_MODAL_MAX_CONTAINERS",
        "MODAL_TOKEN_ID",
        "MODAL_TOKEN_SECRET",
    ):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    seen: dict[str, list] = {"cls": [], "function": [], "concurrent": []}
    orig_cls, orig_function, orig_concurrent = modal.App.cls, modal.App.function, modal.concurrent

    def cls(self, **kw):
        seen["cls"].append(kw)
        return orig_cls(self, **kw)

    def function(self, **kw):
        seen["function"].append(kw)
        return orig_function(self, **kw)

    def concurrent(**kw):
        seen["concurrent"].append(kw)
        return orig_concurrent(**kw)

    monkeypatch.setattr(modal.App, "cls", cls)
    monkeypatch.setattr(modal.App, "function", function)
    monkeypatch.setattr(modal, "concurrent", concurrent)
    spec = importlib.util.spec_from_file_location(f"modal_app_{next(_counter)}", MODAL_APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, seen


def _spec(obj):
    from modal._utils.async_utils import synchronizer

    return synchronizer._translate_in(obj)._spec


@pytest.fixture
def modal_app(monkeypatch):
    return load_modal_app(monkeypatch)


def test_imports_without_credentials_and_registers_everything(modal_app):
    m, _ = modal_app
    assert m.app.name == "vjepa-robot"
    assert {"Encoder.*", "trainer", "generate_shard", "generate_dataset"} <= set(m.app.registered_functions)
    assert set(m.app.registered_classes) == {"Encoder"}
    assert set(m.app.registered_web_endpoints) == {"Encoder.web", "trainer"}
    assert {"make_dataset", "urls"} <= set(m.app.registered_entrypoints)


def test_encoder_class_configuration(modal_app):
    m, seen = modal_app
    (enc,) = [kw for kw in seen["cls"] if kw.get("gpu")]
    assert enc["gpu"] == "A10G"
    assert enc["min_containers"] == 0 and enc["max_containers"] == 4 and enc["scaledown_window"] == 300
    assert m.HF_CACHE_PATH in enc["volumes"] and enc["volumes"][m.HF_CACHE_PATH] is m.hf_cache_volume
    assert m.token_secret in enc["secrets"]
    assert {"max_inputs": m.ENCODER_CONCURRENCY} in seen["concurrent"]
    spec = _spec(m.app.registered_classes["Encoder"]._get_class_service_function())
    assert spec.gpus == "A10G" and set(spec.volumes) == {"/cache", "/data/store"}
    methods = m.app.registered_classes["Encoder"]._get_partial_functions()
    assert {"load", "web"} <= set(methods)  # @modal.enter() load + @modal.asgi_app() web
    source = MODAL_APP.read_text()
    assert "@modal.enter()" in source and "@modal.asgi_app()" in source
    assert not re.search(r"keep_warm\s*=|allow_concurrent_inputs\s*=", source)  # gone in modal 1.x


def test_gpu_and_store_are_configurable(monkeypatch):
    m, seen = load_modal_app(
        monkeypatch,
        VJEPA_ROBOT_MODAL_GPU="H100",
        VJEPA_ROBOT_MODAL_STORE="s3://bucket/store",
        VJEPA_ROBOT_MODAL_MAX_CONTAINERS="10",
    )
    (enc,) = [kw for kw in seen["cls"] if kw.get("gpu")]
    assert enc["gpu"] == "H100" and enc["max_containers"] == 10
    assert m.store_uri() == "s3://bucket/store" and "/data/store" not in enc["volumes"]
    assert any(getattr(s, "_name", None) == m.S3_SECRET or m.S3_SECRET in repr(s) for s in enc["secrets"])


def test_trainer_and_shard_workers(modal_app):
    m, seen = modal_app
    trainer = next(kw for kw in seen["function"] if kw.get("max_containers") == 1)
    assert trainer["cpu"] == 8.0 and m.RUNS_PATH in trainer["volumes"] and m.STORE_PATH in trainer["volumes"]
    assert m.token_secret in trainer["secrets"]
    shard = next(kw for kw in seen["function"] if kw.get("name") == "generate_shard")
    assert shard["max_containers"] == m.SHARD_WORKERS_MAX and shard["retries"] == 2
    assert _spec(m.app.registered_functions["trainer"]).gpus is None


def test_plan_shards():
    spec = importlib.util.spec_from_file_location("modal_app_plain", MODAL_APP)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    assert m.plan_shards(25, 10) == [(0, 10), (10, 20), (20, 25)]
    assert m.plan_shards(10, 4, done={0, 1, 5}) == [(2, 5), (6, 10)]  # reruns resume
    assert m.plan_shards(3, 5, done={0, 1, 2}) == []
    with pytest.raises(ValueError):
        m.plan_shards(0, 1)


@pytest.mark.slow
def test_build_dataset_locally_then_resume(modal_app, tmp_path):
    """The same code path generate_dataset runs on Modal, with the builtin map instead of .map and no Volume."""
    m, _ = modal_app
    from services.common.store import Store

    spec = dict(name="modal-shards", expert="jacobian", task="easy", episodes=3, steps=10, seed=0, image_size=0)
    commits = []
    records = m.generate_shard_remote.local(spec, 0, 1)  # a Modal function runs locally without credentials
    assert [r.episode for r in records] == [0] and records[0].table.num_rows == 10
    meta = m.build_dataset(spec, str(tmp_path / "store"), shard_size=2, commit=lambda: commits.append(1))
    assert meta["episodes_done"] == 3 and meta["success_rate"] is not None
    assert len(commits) == 1 + 2 + 1  # running, after each of the 2 shards, ready
    store = Store(str(tmp_path / "store"))
    assert store.get_dataset_meta("modal-shards")["status"] == "ready"
    assert store.episodes_present("modal-shards") == {0, 1, 2}
    again = m.build_dataset(spec, str(tmp_path / "store"), shard_size=2)  # nothing left to do
    assert again["episodes_done"] == 3 and store.read_steps("modal-shards", ["step"]).num_rows == 30


def test_encoder_image_is_slim_and_both_images_install_from_the_lock(modal_app):
    """The encoder runs on an image without the simulator / RL / plotting stack; the trainer's image has it; both
    install the lock file's versions (every dependency they name is pinned there)."""
    m, seen = modal_app
    (enc,) = [kw for kw in seen["cls"] if kw.get("gpu")]
    assert enc["image"] is m.encoder_image
    trainer = next(kw for kw in seen["function"] if kw.get("max_containers") == 1)
    assert trainer["image"] is m.trainer_image
    names = lambda deps: {re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].lower() for d in deps}  # noqa: E731
    encoder_deps, trainer_deps = names(m._dependencies("encoder")), names(m._dependencies("trainer"))
    simulator_and_plotting = {"dm-control", "mujoco", "matplotlib"}
    assert simulator_and_plotting <= trainer_deps
    assert not (simulator_and_plotting | {"stable-baselines3", "gymnasium"}) & encoder_deps
    assert "torch" not in encoder_deps | trainer_deps  # installed first, from the CUDA index
    pinned = {
        line.split("==")[0].lower().replace("_", "-")
        for line in m.LOCK.read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    assert {d.replace("_", "-") for d in trainer_deps} <= pinned, sorted(trainer_deps - pinned)
    assert "torch" in pinned
