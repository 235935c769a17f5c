"""Loud loading and pinned weights (issue 18): a checkpoint is served only if every weight loaded, and the encoder
id follows the weights (the hub commit a revision resolved to, or a directory's content), never a moving name.

All checkpoints here are tiny random-init models saved with save_pretrained to tmp dirs (no hub here)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from services.encoder.model import Encoder, load_encoder
from services.encoder.weights import WeightsError, content_hash, resolve_hub, resolve_weights

SHA = "0123456789abcdef0123456789abcdef01234567"


def _tiny_dinov2(path):
    from transformers import Dinov2Config, Dinov2Model

    Dinov2Model(
        Dinov2Config(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            image_size=28,
            patch_size=14,
        )
    ).save_pretrained(path)
    return path


def test_a_dinov2_checkpoint_is_refused_as_vjepa2_in_one_line(tmp_path):
    """Asked for V-JEPA 2 (--family vjepa2), a DINOv2 directory is refused; without --family it is served as
    DINOv2 (test_families.py), never as V-JEPA 2 with random weights."""
    _tiny_dinov2(tmp_path / "dino")
    with pytest.raises(WeightsError) as err:
        Encoder.load(str(tmp_path / "dino"), device="cpu", num_threads=1, family="vjepa2")
    msg = str(err.value)
    assert "\n" not in msg and "dinov2" in msg and "vjepa2" in msg


def test_serve_encoder_fails_at_load_on_a_partial_checkpoint(tmp_path, tiny_encoder_dir):
    """The real CLI: `serve encoder --model DIR` exits non-zero, its log naming the tensor, and never serves."""
    broken = tmp_path / "broken"
    shutil.copytree(tiny_encoder_dir, broken)
    tensors = load_file(broken / "model.safetensors")
    del tensors["encoder.embeddings.patch_embeddings.proj.weight"]
    save_file(tensors, broken / "model.safetensors", metadata={"format": "pt"})
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "vjepa_robot.cli",
            "serve",
            "encoder",
            "--model",
            str(broken),
            "--port",
            "0",
            "--store",
            str(tmp_path / "store"),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "VJEPA_ROBOT_THREADS": "1"},
    )
    assert out.returncode != 0
    assert "not every weight loaded as V-JEPA 2: 1 missing (encoder.embeddings.patch_embeddings.proj.weight)" in (
        out.stdout + out.stderr
    )
    assert "Uvicorn running" not in out.stderr


def test_a_vjepa2_checkpoint_missing_a_tensor_is_refused_naming_it(tmp_path, tiny_encoder_dir):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_encoder_dir, broken)
    tensors = load_file(broken / "model.safetensors")
    name = "encoder.layer.1.attention.query.weight"
    assert name in tensors
    del tensors[name]
    save_file(tensors, broken / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(WeightsError) as err:
        load_encoder(model=str(broken), device="cpu", num_threads=1)
    msg = str(err.value)
    assert "\n" not in msg and "1 missing" in msg and name in msg and "random" in msg


def test_a_mismatched_tensor_is_refused(tmp_path, tiny_encoder_dir):
    broken = tmp_path / "mismatched"
    shutil.copytree(tiny_encoder_dir, broken)
    tensors = load_file(broken / "model.safetensors")
    tensors["encoder.layernorm.weight"] = torch.ones(7)
    save_file(tensors, broken / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(WeightsError, match="layernorm"):
        load_encoder(model=str(broken), device="cpu", num_threads=1)


def test_a_complete_directory_loads_and_is_pinned_by_content(tmp_path, tiny_encoder, tiny_encoder_dir):
    enc = Encoder.load(str(tiny_encoder_dir), device="cpu", num_threads=1)
    assert enc.weights == content_hash(tiny_encoder_dir) and enc.weights.startswith("sha256:")
    info, lineage = enc.info(), enc.lineage()
    assert info["weights"] == lineage["weights"] == enc.weights and "main" not in json.dumps(info)
    # the same bytes elsewhere: the same id (the id follows the weights, not the path)
    copy = tmp_path / "copy"
    shutil.copytree(tiny_encoder_dir, copy)
    assert Encoder.load(str(copy), device="cpu", num_threads=1).encoder_id == enc.encoder_id


def test_two_checkpoints_saved_at_the_same_path_get_different_ids(tmp_path, tiny_encoder_dir):
    path = tmp_path / "ckpt"
    shutil.copytree(tiny_encoder_dir, path)
    first = Encoder.load(str(path), device="cpu", num_threads=1)
    tensors = load_file(path / "model.safetensors")
    tensors["encoder.layernorm.bias"] = tensors["encoder.layernorm.bias"] + 1.0  # fine-tuned in place, same size
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})
    second = Encoder.load(str(path), device="cpu", num_threads=1)
    assert first.weights != second.weights and first.encoder_id != second.encoder_id
    w = np.random.default_rng(0).integers(0, 256, (1, 8, 128, 128, 3), dtype=np.uint8)
    assert np.abs(first.encode(w) - second.encode(w)).max() > 1e-3  # they really are different weights


def _fake_cache(root, tiny_encoder_dir, sha=SHA, ref="main"):
    """The hub cache layout huggingface_hub writes (models--org--name/{refs/<ref>, snapshots/<sha>/}), built by
    hand: the hub is unreachable here, so the online resolution (the hub answering what `main` is) is not tested,
    only the same function reading the cache that a download leaves behind."""
    repo = root / "models--example--tiny-vjepa2"
    shutil.copytree(tiny_encoder_dir, repo / "snapshots" / sha)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / ref).write_text(sha)
    return repo


def test_a_hub_revision_is_resolved_to_its_commit_through_the_cache(tmp_path, tiny_encoder_dir):
    _fake_cache(tmp_path, tiny_encoder_dir)
    w = resolve_hub("example/tiny-vjepa2", "main", cache_dir=str(tmp_path), local_files_only=True)
    assert w.commit == SHA and w.revision == "main" and w.weights == SHA and not w.local
    assert w.path.endswith(f"snapshots/{SHA}")
    assert resolve_hub("example/tiny-vjepa2", SHA, cache_dir=str(tmp_path), local_files_only=True).commit == SHA
    with pytest.raises(Exception):  # noqa: B017 -- huggingface_hub's error class varies by version; a revision the cache has no ref for: not silently "main"
        resolve_hub("example/tiny-vjepa2", "v2", cache_dir=str(tmp_path), local_files_only=True)


def test_when_main_moves_the_encoder_id_moves(tmp_path, tiny_encoder_dir, monkeypatch):
    """Two snapshots of one hub id: the id of `main` follows refs/main, so old and new embeddings never mix."""
    import services.encoder.weights as weights

    monkeypatch.setattr(
        weights,
        "resolve_hub",
        lambda repo, rev, **kw: resolve_hub(repo, rev, cache_dir=str(tmp_path), local_files_only=True),
    )
    repo = _fake_cache(tmp_path, tiny_encoder_dir)
    old = load_encoder(model="example/tiny-vjepa2", revision="main", device="cpu", num_threads=1)
    assert old.weights == SHA and old.info()["revision"] == "main" and old.info()["model"] == "example/tiny-vjepa2"
    new_sha = "f" * 40
    shutil.copytree(tiny_encoder_dir, repo / "snapshots" / new_sha)
    (repo / "refs" / "main").write_text(new_sha)  # the hub's main moved (same bytes even: still a new pin)
    new = load_encoder(model="example/tiny-vjepa2", revision="main", device="cpu", num_threads=1)
    assert new.weights == new_sha and new.encoder_id != old.encoder_id
    assert new.lineage()["weights"] == new_sha


def test_not_a_directory_nor_a_hub_id(tmp_path):
    with pytest.raises(OSError, match="not a directory"):
        resolve_weights(str(tmp_path / "missing" / "dir"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WeightsError, match="no weight"):
        resolve_weights(str(empty))


def test_fetch_model_prints_the_resolved_commit(tmp_path, tiny_encoder_dir, monkeypatch):
    """`fetch-model` on a cached snapshot (offline: the fake cache above stands in for the hub) names the commit."""
    from huggingface_hub import constants
    from typer.testing import CliRunner

    from vjepa_robot.cli import app

    _fake_cache(tmp_path, tiny_encoder_dir)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    out = CliRunner().invoke(app, ["fetch-model", "--model", "example/tiny-vjepa2", "--revision", "main"])
    assert out.exit_code == 0, out.output
    assert f"resolved to commit {SHA}" in out.output and f"--revision {SHA}" in out.output
    missing = CliRunner().invoke(app, ["fetch-model", "--model", "example/absent", "--revision", "main"])
    assert missing.exit_code == 1 and "cannot fetch example/absent" in missing.output
