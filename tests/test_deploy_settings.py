"""Deployment settings the services and the SDK read from the environment (issue 19, "Compression chosen by hostname
alone" and the SDK's port variables).

- VJEPA_ROBOT_COMPRESS / `serve trainer --compress`: every encoder client the trainer makes (they all come from
  TrainerContext.features, which evaluation, BC, SAC and dataset features go through) sends its /encode and stream
  bodies with that Content-Encoding, seen on the wire by a real encoder on loopback; `auto` on loopback sends none.
- The SDK's default URLs follow VJEPA_ROBOT_ENCODER_PORT / VJEPA_ROBOT_TRAINER_PORT (and VJEPA_ROBOT_BIND) when the
  URL variables are unset, so a .env that moves the ports does not silently point the quickstart at 8001/8002.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _servers import Service, free_port, serve_app
from pydantic import ValidationError

ROOT = Path(__file__).resolve().parents[1]
URL_AND_PORT_VARS = (
    "VJEPA_ROBOT_ENCODER_URL",
    "VJEPA_ROBOT_TRAINER_URL",
    "VJEPA_ROBOT_ENCODER_PORT",
    "VJEPA_ROBOT_TRAINER_PORT",
    "VJEPA_ROBOT_BIND",
)


class RecordingASGI:
    """Wraps the real encoder app and records (path, Content-Encoding) of every POST it receives."""

    def __init__(self, app):
        self.app, self.posts = app, []

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST":
            encoding = dict(scope["headers"]).get(b"content-encoding")
            self.posts.append((scope["path"], encoding.decode() if encoding else None))
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def recorded_encoder(tmp_path_factory, tiny_encoder):
    """A real encoder service (the tiny random-init preset: a stand-in for V-JEPA 2) on loopback, recording POSTs."""
    from services.encoder.app import create_app
    from services.encoder.settings import EncoderSettings

    app = RecordingASGI(
        create_app(
            EncoderSettings(store=str(tmp_path_factory.mktemp("enc-store")), max_wait_ms=1.0), encoder=tiny_encoder
        )
    )
    with serve_app(app) as url:
        yield url, app


def _trainer_features(tmp_path, encoder_url: str, **settings):
    """The vjepa2 feature source exactly as the trainer's jobs get it: create_app(settings).state.ctx.features."""
    from services.trainer.app import TrainerSettings, create_app

    app = create_app(TrainerSettings(store=str(tmp_path / "store"), encoder_url=encoder_url, **settings))
    return app.state.ctx.features("vjepa2")


def _exercise(features) -> np.ndarray:
    """One POST /encode and one stream step through the feature source's client: (2, D) + (2, D) float32."""
    windows = np.random.default_rng(0).integers(0, 256, (2, 8, 32, 32, 3), dtype=np.uint8)
    first = features.client.encode(windows)
    with features.client.stream(2, 32, 32) as stream:
        stepped = stream.step(windows[:, -1], reset=[0, 1])
    return np.concatenate([first, stepped])


@pytest.mark.parametrize("setting, wire", [("zstd", "zstd"), ("gzip", "gzip"), ("none", None), ("auto", None)])
def test_trainer_compress_setting_reaches_the_wire(tmp_path, recorded_encoder, setting, wire):
    url, recorder = recorded_encoder
    features = _trainer_features(tmp_path, url, compress=setting)
    try:
        recorder.posts.clear()
        out = _exercise(features)
    finally:
        features.close()
    bodies = [(path, enc) for path, enc in recorder.posts if path == "/encode" or path.startswith("/streams/")]
    assert any(p == "/encode" for p, _ in bodies) and any(p.startswith("/streams/") for p, _ in bodies), bodies
    assert {enc for _, enc in bodies} == {wire}, bodies  # auto: the URL is 127.0.0.1, so nothing is compressed
    assert out.shape[0] == 4 and np.isfinite(out).all()


def test_compressed_and_plain_bodies_give_the_same_embeddings(tmp_path, recorded_encoder):
    url, _ = recorded_encoder
    results = []
    for setting in ("zstd", "none"):
        features = _trainer_features(tmp_path / setting, url, compress=setting)
        try:
            results.append(_exercise(features))
        finally:
            features.close()
    np.testing.assert_allclose(results[0], results[1], rtol=1e-5, atol=1e-6)


def test_trainer_reads_vjepa_robot_compress(monkeypatch, tmp_path):
    from services.trainer.app import TrainerSettings, create_app
    from vjepa_robot_client.contract import Compression

    monkeypatch.delenv("VJEPA_ROBOT_COMPRESS", raising=False)
    assert TrainerSettings().compress is Compression.auto  # the default
    monkeypatch.setenv("VJEPA_ROBOT_COMPRESS", "zstd")
    settings = TrainerSettings(store=str(tmp_path / "store"))
    assert settings.compress is Compression.zstd
    # the tunnel case: a loopback URL with compression forced on (nothing listens there: no request is made)
    ctx = create_app(settings).state.ctx
    assert ctx.compress == "zstd"
    monkeypatch.setenv("VJEPA_ROBOT_COMPRESS", "brotli")
    with pytest.raises(ValidationError) as err:
        TrainerSettings()
    assert "brotli" in str(err.value) and "zstd" in str(err.value)  # names the bad value and the choices


def test_sdk_encoder_client_accepts_the_compression_vocabulary():
    """The contract's Compression values are valid SDK arguments; "none" means no Content-Encoding (not gzip)."""
    from vjepa_robot_client import EncoderClient
    from vjepa_robot_client.contract import COMPRESSIONS

    expected = {"auto": None, "zstd": "zstd", "gzip": "gzip", "none": None}
    assert set(COMPRESSIONS) == set(expected)
    for value in COMPRESSIONS:
        with EncoderClient("http://127.0.0.1:9", compress=value) as client:
            assert client.compress == expected[value], value
    with EncoderClient("http://10.0.0.7:8001") as remote:  # auto on a non-loopback URL compresses
        assert remote.compress == "zstd"


def test_serve_trainer_compress_flag(tmp_path):
    """`vjepa-robot serve trainer --compress zstd` starts and logs the setting; an unknown value exits 2 naming the
    choices (a real process each: the flag must reach the service's settings)."""
    cli = str(Path(sys.executable).with_name("vjepa-robot"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VJEPA_ROBOT_")}
    bad = subprocess.run(
        [cli, "serve", "trainer", "--compress", "brotli"], env=env, capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2 and "brotli" in bad.stderr and "zstd" in bad.stderr, bad.stderr

    port = free_port()
    argv = [cli, "serve", "trainer", "--port", str(port), "--store", str(tmp_path / "store"), "--compress", "zstd"]
    with Service(argv, port=port, name="trainer", env=env, log=tmp_path / "trainer.log", start_timeout=90):
        pass  # healthy: GET /healthz answered 200
    out = (tmp_path / "trainer.log").read_text()
    assert "compress=zstd" in out, out[-3000:]


# ----------------------------------------------------------------------------------------------------------------
# SDK default URLs
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch):
    for name in URL_AND_PORT_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_sdk_defaults_without_any_variable(clean_env):
    from vjepa_robot_client import AsyncEncoderClient, AsyncTrainerClient, EncoderClient, TrainerClient

    assert EncoderClient().url == AsyncEncoderClient().url == "http://127.0.0.1:8001"
    assert TrainerClient().url == AsyncTrainerClient().url == "http://127.0.0.1:8002"


def test_sdk_defaults_follow_the_port_variables(clean_env):
    from vjepa_robot_client import AsyncEncoderClient, AsyncTrainerClient, EncoderClient, TrainerClient

    clean_env.setenv("VJEPA_ROBOT_ENCODER_PORT", "18001")
    clean_env.setenv("VJEPA_ROBOT_TRAINER_PORT", "18002")
    assert EncoderClient().url == AsyncEncoderClient().url == "http://127.0.0.1:18001"
    assert TrainerClient().url == AsyncTrainerClient().url == "http://127.0.0.1:18002"
    clean_env.setenv("VJEPA_ROBOT_BIND", "0.0.0.0")  # every interface: loopback still reaches it
    assert EncoderClient().url == "http://127.0.0.1:18001"
    clean_env.setenv("VJEPA_ROBOT_BIND", "192.168.1.5")  # one interface: compose publishes only there
    assert TrainerClient().url == "http://192.168.1.5:18002"
    # the URL variables win, and an explicit url wins over everything
    clean_env.setenv("VJEPA_ROBOT_ENCODER_URL", "http://gpu-box:9000")
    assert EncoderClient().url == "http://gpu-box:9000"
    assert EncoderClient("http://10.1.1.1:7000/").url == "http://10.1.1.1:7000"


def test_sdk_default_port_must_be_a_port(clean_env):
    from vjepa_robot_client import TrainerClient

    clean_env.setenv("VJEPA_ROBOT_TRAINER_PORT", "80o2")
    with pytest.raises(ValueError, match="VJEPA_ROBOT_TRAINER_PORT='80o2' is not a port number"):
        TrainerClient()
    assert TrainerClient("http://127.0.0.1:8002").url == "http://127.0.0.1:8002"  # not read when a URL is given


def test_sdk_reaches_a_service_on_a_moved_port(clean_env, tmp_path):
    """End to end: a real encoder on a free port, found by the SDK from VJEPA_ROBOT_ENCODER_PORT alone."""
    from conftest import ToyEncoder

    from services.encoder.app import create_app
    from services.encoder.settings import EncoderSettings
    from vjepa_robot_client import EncoderClient

    port = free_port()
    app = create_app(EncoderSettings(store=str(tmp_path / "store")), encoder=ToyEncoder())
    with serve_app(app, port=port):
        clean_env.setenv("VJEPA_ROBOT_ENCODER_PORT", str(port))
        with EncoderClient(retries=0) as client:
            assert client.health().status == "ok"
