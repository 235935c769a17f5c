"""docker-compose.yml and the Dockerfiles, checked without Docker: the file parses, every VJEPA_ROBOT_* variable it
sets is one the code reads, the container commands are valid CLI commands, and the encoder container's exact
command + environment + healthcheck serve a working encoder on loopback."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_GPU = ROOT / "docker-compose.gpu.yml"
DOCKERFILES = {"encoder": ROOT / "deploy/Dockerfile.encoder", "trainer": ROOT / "deploy/Dockerfile.trainer"}
_DEFAULT = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's ${VAR:-default} with an (empty by default) environment."""
    env = env or {}
    return _DEFAULT.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), str(value))


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: interpolate(v) for k, v in env.items()}


def names_the_code_reads() -> set[str]:
    """VJEPA_ROBOT_* names written out in the source, plus the fields of the pydantic-settings classes."""
    names: set[str] = set()
    for folder in ("vjepa_robot", "services", "clients"):
        for path in (ROOT / folder).rglob("*.py"):
            names |= set(re.findall(r"VJEPA_ROBOT_[A-Z0-9_]+", path.read_text()))
    from services.encoder.settings import EncoderSettings
    from services.trainer.app import TrainerSettings

    for cls in (EncoderSettings, TrainerSettings):
        prefix = cls.model_config["env_prefix"]
        names |= {f"{prefix}{field}".upper() for field in cls.model_fields}
    return names


def dockerfile_env(path: Path) -> set[str]:
    return set(re.findall(r"\b(VJEPA_ROBOT_[A-Z0-9_]+)=", path.read_text()))


def test_compose_structure():
    compose = load(COMPOSE)
    services = compose["services"]
    assert set(services) >= {"encoder", "trainer"}
    for name, dockerfile in DOCKERFILES.items():
        svc = services[name]
        assert (ROOT / svc["build"]["context"] / svc["build"]["dockerfile"]).resolve() == dockerfile.resolve()
        assert "store:/data/store" in svc["volumes"]  # one named volume, the same LanceDB store for both
        assert environment(svc)["VJEPA_ROBOT_STORE"] == "/data/store"
        test = svc["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "-c"] and "/healthz" in test[3]
        port = svc["command"][svc["command"].index("--port") + 1]
        assert f":{port}/healthz" in test[3]
    assert "store" in compose["volumes"]
    assert services["trainer"]["depends_on"]["encoder"]["condition"] == "service_healthy"
    assert environment(services["trainer"])["VJEPA_ROBOT_ENCODER_URL"] == "http://encoder:8001"
    assert environment(services["encoder"])["VJEPA_ROBOT_PRESET"] == "tiny"  # CPU default
    assert environment(services["trainer"])["MUJOCO_GL"] == "egl"
    for dockerfile in DOCKERFILES.values():
        text = dockerfile.read_text()
        assert text.startswith("#") and "FROM python:3.11-slim" in text and "ARG TORCH_INDEX" in text
    assert "libegl1" in DOCKERFILES["trainer"].read_text()


def test_gpu_override_reserves_a_gpu_and_uses_vitl():
    encoder = load(COMPOSE_GPU)["services"]["encoder"]
    assert environment(encoder)["VJEPA_ROBOT_PRESET"] == "vitl"
    assert environment(encoder)["VJEPA_ROBOT_DEVICE"] == "cuda"
    (device,) = encoder["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert "cu" in encoder["build"]["args"]["TORCH_INDEX"]


def test_every_env_var_set_is_read_by_the_code():
    read = names_the_code_reads()
    set_by_deploy: set[str] = set()
    for path in (COMPOSE, COMPOSE_GPU):
        for svc in load(path)["services"].values():
            set_by_deploy |= {k for k in environment(svc) if k.startswith("VJEPA_ROBOT_")}
    for dockerfile in DOCKERFILES.values():
        set_by_deploy |= dockerfile_env(dockerfile)
    assert set_by_deploy, "no VJEPA_ROBOT_* variables found: did the compose file change shape?"
    unread = sorted(set_by_deploy - read)
    assert not unread, f"deploy files set variables no code reads: {unread}"


@pytest.mark.parametrize("service", ["encoder", "trainer"])
def test_commands_are_valid_cli_commands(service):
    from vjepa_robot.cli import app

    command = load(COMPOSE)["services"][service]["command"]
    assert command[0] == "vjepa-robot"
    assert command == [*_dockerfile_cmd(DOCKERFILES[service])]  # image default and compose agree
    result = CliRunner().invoke(app, [*command[1:], "--help"])  # unknown options would fail before --help
    assert result.exit_code == 0, result.output
    # the console script the images call exists with that name
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "vjepa-robot"]
    assert ep.value == "vjepa_robot.cli:app"


def _dockerfile_cmd(path: Path) -> list[str]:
    import json

    (line,) = [ln for ln in path.read_text().splitlines() if ln.startswith("CMD [")]
    return json.loads(line[4:])


def test_docker_compose_config():
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("the docker compose plugin is not installed here; the YAML is validated by the tests above")
    for files in (["-f", str(COMPOSE)], ["-f", str(COMPOSE), "-f", str(COMPOSE_GPU)]):
        subprocess.run([docker, "compose", *files, "config", "-q"], check=True, cwd=ROOT, timeout=60)


def test_encoder_container_entrypoint_on_loopback(tmp_path):
    """The encoder service's command, environment and healthcheck, run as the container would (minus Docker):
    `vjepa-robot serve encoder ...` with the compose environment, until the compose healthcheck passes."""
    from _servers import free_port
    from vjepa_robot_client import EncoderClient

    svc = load(COMPOSE)["services"]["encoder"]
    port = free_port()
    env = {**os.environ, **environment(svc), "VJEPA_ROBOT_STORE": str(tmp_path / "store"),
           "VJEPA_ROBOT_TOKEN": "compose-token", "HF_HOME": str(tmp_path / "hf"), "VJEPA_ROBOT_THREADS": "1"}
    command = [str(Path(sys.executable).with_name("vjepa-robot")), *svc["command"][1:]]
    command[command.index("--host") + 1] = "127.0.0.1"  # 0.0.0.0 inside the container
    command[command.index("--port") + 1] = str(port)
    healthcheck = [sys.executable if a == "python" else a for a in svc["healthcheck"]["test"][1:]]
    healthcheck[-1] = healthcheck[-1].replace(":8001/", f":{port}/")
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        while subprocess.run(healthcheck, capture_output=True).returncode != 0:
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "the encoder never became healthy"
            time.sleep(0.5)
        with EncoderClient(f"http://127.0.0.1:{port}", token="compose-token", retries=2) as enc:
            info = enc.info()
            assert "tiny" in (info.model + info.encoder_id).lower() or info.dim < 1024  # VJEPA_ROBOT_PRESET reached it
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
