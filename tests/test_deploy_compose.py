"""docker-compose.yml, its GPU override, deploy/Dockerfile and .dockerignore, checked without Docker: the files parse,
ports are published on 127.0.0.1 unless the user opts in, one token reaches both services, every VJEPA_ROBOT_*
variable set is one the code reads, the container commands are valid CLI commands, the images install from the lock
file, the GPU override fills the Hugging Face cache before the encoder starts, and the encoder container's exact
command + environment + healthcheck serve a working encoder on loopback.

test_compose_stack_smoke runs deploy/smoke.sh (build, up, healthy, quickstart, token, down/up persistence) where a
Docker engine, Compose v2 and the base image are available, and is skipped with the reason otherwise."""

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
DOCKERFILE = ROOT / "deploy/Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / ".env.example"
LOCK = ROOT / "constraints.txt"
SERVICES = ("encoder", "trainer")
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


def dockerfile_stages(path: Path = DOCKERFILE) -> dict[str, tuple[str, str]]:
    """{stage name: (parent, body text)} of a multi-stage Dockerfile."""
    stages: dict[str, tuple[str, str]] = {}
    parts = re.split(r"^FROM\s+", path.read_text(), flags=re.M)[1:]
    for part in parts:
        head, _, body = part.partition("\n")
        parent, _, name = head.partition(" AS ")
        stages[name.strip()] = (parent.strip(), body)
    return stages


def test_compose_structure():
    compose = load(COMPOSE)
    services = compose["services"]
    assert set(services) >= set(SERVICES)
    for name in SERVICES:
        svc = services[name]
        assert (ROOT / svc["build"]["context"] / svc["build"]["dockerfile"]).resolve() == DOCKERFILE.resolve()
        assert svc["build"]["target"] == name
        assert "store:/data/store" in svc["volumes"]  # one named volume, the same LanceDB store for both
        assert environment(svc)["VJEPA_ROBOT_STORE"] == "/data/store"
        assert "healthcheck" not in svc  # the image's HEALTHCHECK is the one definition (test_healthcheck_...)
    assert "store" in compose["volumes"]
    assert services["trainer"]["depends_on"]["encoder"]["condition"] == "service_healthy"
    assert environment(services["trainer"])["VJEPA_ROBOT_ENCODER_URL"] == "http://encoder:8001"
    assert environment(services["encoder"])["VJEPA_ROBOT_PRESET"] == "tiny"  # CPU default
    assert environment(services["trainer"])["MUJOCO_GL"] == "egl"


def test_ports_are_published_on_loopback_unless_the_user_opts_in():
    for name in SERVICES:
        (mapping,) = load(COMPOSE)["services"][name]["ports"]
        assert interpolate(mapping).startswith("127.0.0.1:"), mapping  # nothing set: loopback only
        assert interpolate(mapping, {"VJEPA_ROBOT_BIND": "0.0.0.0"}).startswith("0.0.0.0:")
        host, host_port, container_port = interpolate(mapping).split(":")
        assert host_port == container_port == {"encoder": "8001", "trainer": "8002"}[name]


def test_services_know_where_their_port_is_published(monkeypatch, caplog):
    """Inside a container the services listen on 0.0.0.0; compose tells them the host interface their port is
    published on (the same expression as the port mapping), so an unauthenticated stack on 127.0.0.1 logs a note and
    one opened to other hosts logs the loud warning."""
    import logging

    from services.common.auth import PUBLISHED_HOST_ENV, warn_if_open

    for env in ({}, {"VJEPA_ROBOT_BIND": "0.0.0.0"}, {"VJEPA_ROBOT_BIND": "192.168.1.5"}):
        for name in SERVICES:
            svc = load(COMPOSE)["services"][name]
            (mapping,) = svc["ports"]
            published = interpolate(svc["environment"][PUBLISHED_HOST_ENV], env)
            assert published == interpolate(mapping, env).split(":")[0]

    caplog.set_level(logging.INFO)
    monkeypatch.setenv(PUBLISHED_HOST_ENV, "127.0.0.1")
    warn_if_open("0.0.0.0", None, "svc-in-container")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "published on 127.0.0.1 only" in caplog.text
    caplog.clear()
    monkeypatch.setenv(PUBLISHED_HOST_ENV, "0.0.0.0")
    warn_if_open("0.0.0.0", None, "svc-in-container")
    (record,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "WITHOUT authentication" in record.getMessage() and "published on 0.0.0.0" in record.getMessage()
    caplog.clear()
    warn_if_open("0.0.0.0", "a-token", "svc-in-container")
    assert not caplog.records


def test_one_token_reaches_both_services_and_the_trainer_sends_it_to_the_encoder():
    services = load(COMPOSE)["services"]
    for name in SERVICES:
        raw = services[name]["environment"]["VJEPA_ROBOT_TOKEN"]
        assert interpolate(raw, {"VJEPA_ROBOT_TOKEN": "s3cret"}) == "s3cret" and interpolate(raw) == ""
    # the trainer's setting that holds the token is the one it sends to the encoder (jobs.TrainerContext.token)
    source = (ROOT / "services/trainer/app.py").read_text()
    assert re.search(r"TrainerContext\([^)]*token=token", source)
    # .env.example documents every variable the compose files interpolate, and sets no token
    example = dict(line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if line and line[0] != "#")
    assert example["VJEPA_ROBOT_TOKEN"] == "" and example["VJEPA_ROBOT_BIND"] == "127.0.0.1"
    used = set()
    for path in (COMPOSE, COMPOSE_GPU):
        used |= {m.group(1) for m in _DEFAULT.finditer(path.read_text())}
    assert used - set(example) <= {"VJEPA_ROBOT_MAX_BATCH"}, sorted(used - set(example))
    assert set(example) <= used, sorted(set(example) - used)


def test_dockerfile_stages_share_torch_and_the_core_dependencies_and_install_from_the_lock():
    stages = dockerfile_stages()
    assert set(stages) == {"base", "core", "encoder", "trainer"}
    assert stages["base"][0] == "python:3.11-slim"
    assert stages["core"][0] == "base"
    assert stages["encoder"][0] == stages["trainer"][0] == "core"  # one torch + core-dependency layer under both
    base, core = stages["base"][1], stages["core"][1]
    assert "ARG TORCH_INDEX" in base and '"torch==${TORCH_VERSION}"' in base
    # torch alone, from the torch index; its own dependencies come with the core set, against the lock
    (torch_install,) = _pip_installs(base)
    assert "--no-deps" in torch_install and "--index-url" in torch_install
    assert "COPY pyproject.toml constraints.txt deploy/requirements.py ./" in core
    for name in ("core", *SERVICES):
        installs = _pip_installs(stages[name][1])
        assert installs and all("-c constraints.txt" in ln or "--no-deps" in ln for ln in installs), installs
    assert "python requirements.py >" in core  # the core dependencies, read from pyproject.toml
    encoder, trainer = stages["encoder"][1], stages["trainer"][1]
    assert "requirements.py encoder" in encoder and "trainer" not in re.sub(r"#.*", "", encoder)  # no simulator stack
    assert "libegl" not in encoder and "libegl1" in trainer and "requirements.py trainer" in trainer
    assert "libegl" not in core and "requirements.py trainer" not in core
    assert "ARG TORCH_VERSION=2.13.0" in base
    assert re.search(r"^torch==2\.13\.0$", LOCK.read_text(), flags=re.M)  # the lock agrees with the image


def _instructions(body: str) -> list[str]:
    """A stage's instructions, continuation lines joined, comments dropped."""
    text = re.sub(r"^\s*#.*\n", "", body, flags=re.M).replace("\\\n", " ")
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


def _pip_installs(body: str) -> list[str]:
    """Every `pip install ...` command of a stage (RUN lines split at &&)."""
    return [part.strip() for ins in _instructions(body) for part in ins.split("&&") if "pip install" in part]


def test_no_dependency_layer_depends_on_docs_or_source():
    """A documentation edit must rebuild only code layers: the stages whose layers both images share (base, core)
    copy no README, docs or source, and in each image every dependency install comes before the first COPY of the
    source or README.md."""
    stages = dockerfile_stages()
    for name in ("base", "core"):
        copies = [ins for ins in _instructions(stages[name][1]) if ins.startswith(("COPY", "ADD"))]
        for ins in copies:
            sources = ins.split()[1:-1]
            assert all(src in {"pyproject.toml", "constraints.txt", "deploy/requirements.py"} for src in sources), ins
    for name in SERVICES:
        steps = _instructions(stages[name][1])
        first_copy = next(i for i, ins in enumerate(steps) if ins.startswith("COPY"))
        deps = [i for i, ins in enumerate(steps) if "pip install" in ins and "-c constraints.txt" in ins]
        assert deps and max(deps) < first_copy, steps
        assert any(ins == "COPY README.md ./" for ins in steps[first_copy:])
    # .dockerignore keeps docs out of the build context altogether
    patterns = [ln.strip() for ln in DOCKERIGNORE.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert _dockerignore_excludes("docs/deploy.md", patterns) and _dockerignore_excludes("deploy/README.md", patterns)
    assert not _dockerignore_excludes("deploy/requirements.py", patterns)


def test_requirements_helper_lists_what_pyproject_declares():
    """deploy/requirements.py (what the images install before any source) prints pyproject.toml's lists exactly."""
    import tomllib

    sys.path.insert(0, str(ROOT / "deploy"))
    try:
        import requirements as helper
    finally:
        sys.path.pop(0)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert helper.requirements() == project["dependencies"]
    assert helper.requirements("trainer") == project["optional-dependencies"]["trainer"]
    assert helper.requirements("encoder") == project["optional-dependencies"]["encoder"]
    extras = project["optional-dependencies"]
    expected_all: list[str] = []  # all = every feature the README lists: trainer, gym, lerobot, wandb, slurm, expanded
    for name in ("trainer", "gym", "lerobot", "wandb", "slurm"):
        for req in [*extras["trainer"], *extras[name]] if name in ("gym", "lerobot") else extras[name]:
            if not req.startswith("vjepa-robot[") and req not in expected_all:
                expected_all.append(req)
    assert helper.requirements("all") == expected_all
    out = subprocess.run(
        [sys.executable, str(ROOT / "deploy/requirements.py"), "trainer"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == [r.replace(" ", "") for r in project["optional-dependencies"]["trainer"]]
    bad = subprocess.run([sys.executable, str(ROOT / "deploy/requirements.py"), "gpu"], capture_output=True, text=True)
    assert bad.returncode != 0 and "unknown extra 'gpu'" in bad.stderr


def dockerfile_healthchecks(path: Path = DOCKERFILE) -> dict[str, list[str]]:
    """{stage: the exec-form command of its HEALTHCHECK}."""
    import json

    out: dict[str, list[str]] = {}
    for name, (_, body) in dockerfile_stages(path).items():
        checks = [ins for ins in _instructions(body) if ins.startswith("HEALTHCHECK")]
        assert len(checks) <= 1, (name, checks)
        if checks:
            out[name] = json.loads(checks[0].split(" CMD ", 1)[1])
    return out


def test_healthcheck_is_defined_once_in_the_images():
    checks = dockerfile_healthchecks()
    assert set(checks) == set(SERVICES)
    for name in SERVICES:
        test = checks[name]
        assert test[:2] == ["python", "-c"] and "/healthz" in test[2]
        cmd = _dockerfile_cmd(dockerfile_stages()[name][1])
        assert f":{cmd[cmd.index('--port') + 1]}/healthz" in test[2]  # checks the port the service listens on
    for path in (COMPOSE, COMPOSE_GPU):
        for name, svc in load(path)["services"].items():
            assert "healthcheck" not in svc, f"{path.name}: {name} redefines the image's healthcheck"
    assert "x-healthcheck" not in COMPOSE.read_text()


def test_gpu_override_builds_each_image_tag_once():
    """Two services with a build section and the same image tag make compose build that image twice."""
    merged = {name: dict(svc) for name, svc in load(COMPOSE)["services"].items()}
    for name, svc in load(COMPOSE_GPU)["services"].items():
        merged[name] = {**merged.get(name, {}), **svc}
    for files in ({"base": load(COMPOSE)["services"]}, {"gpu": merged}):
        (services,) = files.values()
        built = [svc["image"] for svc in services.values() if "build" in svc]
        assert len(built) == len(set(built)), built
        for name, svc in services.items():
            if "build" not in svc:  # runs an image another service builds: never pulled from a registry
                assert svc.get("pull_policy") == "never" and svc["image"] in built, name
    assert merged["fetch-model"]["image"] == merged["encoder"]["image"] == "vjepa-robot-encoder:gpu"


def test_nothing_imports_what_the_images_strip():
    """The core stage removes Arrow Flight (and pyarrow's headers, sources and tests) from the images: the project's
    code must not import it, and the build's own import check covers the pyarrow parts lance and lancedb use."""
    for folder in ("vjepa_robot", "services", "clients"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            assert not re.search(r"pyarrow\.flight|from pyarrow import .*\bflight\b|pyarrow\.tests", text), path
    core = dockerfile_stages()["core"][1]
    assert "*flight*" in core
    for module in ("pyarrow.dataset", "pyarrow.substrait", "pyarrow.fs", "lance", "lancedb"):
        assert module in core, module


def _dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: patterns match the path or any parent, `**` crosses '/', the last match wins."""
    excluded = False
    parts = path.split("/")
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = re.escape(pattern.lstrip("!").strip("/"))
        regex = regex.replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
        regex = regex.replace(r"\?", "[^/]").replace(r"\[", "[").replace(r"\]", "]")
        if any(re.fullmatch(regex, "/".join(parts[:i])) for i in range(1, len(parts) + 1)):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_build_outputs_out_of_the_context():
    patterns = [ln.strip() for ln in DOCKERIGNORE.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    for path in (
        "clients/build/lib/vjepa_robot_client/__init__.py",
        "clients/vjepa_robot_client.egg-info/PKG-INFO",
        "vjepa_robot.egg-info/PKG-INFO",
        ".venv/bin/python",
        "services/__pycache__/x.cpython-311.pyc",
        ".git/HEAD",
        ".env",
        "vjepa-robot-store/datasets.lance/x",
        "vjepa-robot-runs/r/run.json",
        "vjepa-robot-demo/x",
        "vjepa-robot-report/README.md",
        ".pytest_cache/v",
        "build/lib/x.py",
        "bench/results/x.json",
    ):
        assert _dockerignore_excludes(path, patterns), f"{path} would enter the build context"
    for path in (
        "pyproject.toml",
        "README.md",
        "constraints.txt",
        "services/encoder/app.py",
        "vjepa_robot_lab/report/rows.py",
        "clients/vjepa_robot_client/__init__.py",
        "clients/pyproject.toml",
        "vjepa_robot/cli.py",
        ".env.example",
    ):
        assert not _dockerignore_excludes(path, patterns), f"{path} is needed by the images but ignored"
    copied = re.findall(r"^COPY (.+) \S+$", DOCKERFILE.read_text(), flags=re.M)
    for sources in copied:
        for source in sources.split():
            assert (ROOT / source).exists() and not _dockerignore_excludes(source, patterns), source


def test_gpu_override_reserves_a_gpu_and_uses_vitl():
    encoder = load(COMPOSE_GPU)["services"]["encoder"]
    assert environment(encoder)["VJEPA_ROBOT_PRESET"] == "vitl"
    assert environment(encoder)["VJEPA_ROBOT_DEVICE"] == "cuda"
    (device,) = encoder["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert "cu" in encoder["build"]["args"]["TORCH_INDEX"] and encoder["build"]["target"] == "encoder"


def test_gpu_override_fills_the_model_cache_before_the_encoder_starts():
    gpu = load(COMPOSE_GPU)["services"]
    fetch, encoder = gpu["fetch-model"], gpu["encoder"]
    assert encoder["depends_on"]["fetch-model"]["condition"] == "service_completed_successfully"
    assert fetch["restart"] == "no" and "ports" not in fetch
    for svc in (fetch, encoder):
        assert "hf-cache:/cache/hf" in svc["volumes"] and environment(svc)["HF_HOME"] == "/cache/hf"
    assert fetch["image"] == encoder["image"] and "build" not in fetch  # the encoder's image, built once
    assert environment(fetch)["VJEPA_ROBOT_PRESET"] == environment(encoder)["VJEPA_ROBOT_PRESET"] == "vitl"
    assert "hf-cache" in load(COMPOSE)["volumes"]
    from vjepa_robot.cli import app

    assert fetch["command"][:2] == ["vjepa-robot", "fetch-model"]
    result = CliRunner().invoke(app, [*fetch["command"][1:], "--help"])
    assert result.exit_code == 0, result.output


def test_every_env_var_set_is_read_by_the_code():
    read = names_the_code_reads()
    set_by_deploy: set[str] = set()
    for path in (COMPOSE, COMPOSE_GPU):
        for svc in load(path)["services"].values():
            set_by_deploy |= {k for k in environment(svc) if k.startswith("VJEPA_ROBOT_")}
    set_by_deploy |= dockerfile_env(DOCKERFILE)
    assert set_by_deploy, "no VJEPA_ROBOT_* variables found: did the compose file change shape?"
    unread = sorted(set_by_deploy - read)
    assert not unread, f"deploy files set variables no code reads: {unread}"


@pytest.mark.parametrize("service", SERVICES)
def test_commands_are_valid_cli_commands(service):
    from vjepa_robot.cli import app

    command = load(COMPOSE)["services"][service]["command"]
    assert command[0] == "vjepa-robot"
    assert command == _dockerfile_cmd(dockerfile_stages()[service][1])  # image default and compose agree
    result = CliRunner().invoke(app, [*command[1:], "--help"])  # unknown options would fail before --help
    assert result.exit_code == 0, result.output
    # the console script the images call exists with that name
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "vjepa-robot"]
    import tomllib

    assert ep.value == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["vjepa-robot"]
    assert callable(ep.load())


def _dockerfile_cmd(stage_text: str) -> list[str]:
    import json

    (line,) = [ln for ln in stage_text.splitlines() if ln.startswith("CMD [")]
    return json.loads(line[4:])


def test_docker_compose_config():
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("the docker compose plugin is not installed here; the YAML is validated by the tests above")
    import json

    for files in (["-f", str(COMPOSE)], ["-f", str(COMPOSE), "-f", str(COMPOSE_GPU)]):
        subprocess.run([docker, "compose", *files, "config", "-q"], check=True, cwd=ROOT, timeout=60)
        config = json.loads(
            subprocess.run(
                [docker, "compose", *files, "config", "--format", "json"],
                check=True,
                cwd=ROOT,
                timeout=60,
                capture_output=True,
                text=True,
            ).stdout
        )
        built = [svc["image"] for svc in config["services"].values() if "build" in svc]  # compose's own merge
        assert len(built) == len(set(built)), built


def test_encoder_container_entrypoint_on_loopback(tmp_path):
    """The encoder service's command, environment and healthcheck, run as the container would (minus Docker):
    `vjepa-robot serve encoder ...` with the compose environment, until the image's healthcheck passes."""
    from _servers import free_port

    from vjepa_robot_client import EncoderClient

    svc = load(COMPOSE)["services"]["encoder"]
    port = free_port()
    env = {
        **os.environ,
        **environment(svc),
        "VJEPA_ROBOT_STORE": str(tmp_path / "store"),
        "VJEPA_ROBOT_TOKEN": "compose-token",
        "HF_HOME": str(tmp_path / "hf"),
        "VJEPA_ROBOT_THREADS": "1",
    }
    command = [str(Path(sys.executable).with_name("vjepa-robot")), *svc["command"][1:]]
    command[command.index("--host") + 1] = "127.0.0.1"  # 0.0.0.0 inside the container
    command[command.index("--port") + 1] = str(port)
    healthcheck = [sys.executable if a == "python" else a for a in dockerfile_healthchecks()["encoder"]]
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


@pytest.mark.slow
def test_fetch_model_fills_the_hf_cache_that_the_encoder_then_loads_offline(tmp_path, tiny_encoder, tiny_encoder_dir):
    """`vjepa-robot fetch-model` resolves a hub checkpoint into $HF_HOME; offline, a filled cache is enough for both
    it and the encoder. The hub is unreachable here, so the cache is laid out by hand in the hub's own layout
    (models--org--name/refs/<rev> -> snapshots/<sha>/) from the tiny preset's saved weights. Subprocesses, because
    huggingface_hub reads HF_HOME and HF_HUB_OFFLINE once, at import."""
    import numpy as np

    from vjepa_robot.cli import app

    env = {k: v for k, v in os.environ.items() if not k.startswith(("VJEPA_ROBOT_", "HF_"))}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1", VJEPA_ROBOT_THREADS="1")
    cli = str(Path(sys.executable).with_name("vjepa-robot"))
    empty = subprocess.run([cli, "fetch-model"], env=env, capture_output=True, text=True, timeout=120)
    assert empty.returncode == 1, empty.stdout + empty.stderr  # default preset vitl, nothing cached, offline
    assert "facebook/vjepa2-vitl" in empty.stderr and str(tmp_path / "hf") in empty.stderr
    runner = CliRunner()
    assert runner.invoke(app, ["fetch-model", "--preset", "tiny"]).exit_code == 0  # random init: nothing to fetch
    bad = runner.invoke(app, ["fetch-model", "--preset", "vitl-huge"])
    assert bad.exit_code == 2 and "unknown preset" in bad.output

    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf" / "hub" / "models--example--tiny-vjepa2"
    shutil.copytree(tiny_encoder_dir, repo / "snapshots" / sha)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    filled = subprocess.run(
        [cli, "fetch-model", "--model", "example/tiny-vjepa2", "--revision", "main"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert filled.returncode == 0, filled.stdout + filled.stderr
    assert sha in filled.stdout and "is in the cache" in filled.stdout

    window = np.random.default_rng(0).integers(0, 256, (1, 8, 32, 32, 3), dtype=np.uint8)
    np.save(tmp_path / "window.npy", window)
    script = (
        "import sys, numpy as np; from services.encoder.model import load_encoder; "
        "enc = load_encoder(model='example/tiny-vjepa2', revision='main', device='cpu', num_threads=1); "
        "assert enc.info()['model'] == 'example/tiny-vjepa2', enc.info(); "
        "np.save(sys.argv[2], enc.encode(np.load(sys.argv[1])))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "window.npy"), str(tmp_path / "emb.npy")],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "emb.npy"), tiny_encoder.encode(window), rtol=1e-5, atol=1e-6)


def _smoke_skip_reason() -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return "no docker CLI on this machine"
    if subprocess.run([docker, "info"], capture_output=True, timeout=30).returncode != 0:
        return "no Docker engine reachable (docker info failed)"
    if subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode != 0:
        return "Compose v2 (the `docker compose` plugin) is not installed"
    if (
        subprocess.run([docker, "image", "inspect", "python:3.11-slim"], capture_output=True, timeout=30).returncode
        != 0
    ):
        return "the base image python:3.11-slim is not available locally (docker pull python:3.11-slim first)"
    return None


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_compose_stack_smoke():
    """deploy/smoke.sh: build both images, up, wait healthy, loopback-only ports, the token on both services, the SDK
    quickstart, down/up persistence; its own compose project on free ports, removed afterwards."""
    reason = _smoke_skip_reason()
    if reason:
        pytest.skip(f"compose smoke test skipped: {reason}")
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(
        ["bash", str(ROOT / "deploy/smoke.sh")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=3500
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    assert "smoke test passed" in proc.stdout


def test_the_lock_pins_every_dependency_within_the_pyproject_ranges():
    """constraints.txt (deploy/lock.sh) must cover pyproject.toml: a dependency added or re-ranged without refreshing
    the lock fails here, not in a Docker build or CI install months later."""
    import tomllib
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    pins: dict[str, Version] = {}
    for line in LOCK.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt line is not an exact pin: {line!r}"
            pins[canonicalize_name(name)] = Version(version.strip())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"], *(d for deps in project["optional-dependencies"].values() for d in deps)]
    for text in requirements:
        req = Requirement(text)
        if canonicalize_name(req.name) == "vjepa-robot":  # self-referencing extras (all, test)
            continue
        pinned = pins.get(canonicalize_name(req.name))
        assert pinned is not None, f"{req.name} is not in constraints.txt: run deploy/lock.sh"
        assert req.specifier.contains(pinned, prereleases=True), f"{req} but the lock pins {pinned}: run deploy/lock.sh"
    assert pins[canonicalize_name("torch")] == Version("2.13.0")  # the CPU build on this disk, the images' pin
