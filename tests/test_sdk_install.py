"""The SDK installs on its own (pip install ./clients) into a fresh venv without torch or dm_control."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sdk_only_install_pulls_no_torch(tmp_path):
    env_dir = tmp_path / "sdk-venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(env_dir)
    py = env_dir / "bin" / "python"
    subprocess.run(
        [py, "-m", "pip", "install", "-q", "--disable-pip-version-check", str(ROOT / "clients")],
        check=True,
        timeout=540,
        cwd=tmp_path,
    )
    installed = subprocess.run(
        [py, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True, check=True
    ).stdout.lower()
    assert "vjepa-robot-client==0.1.0" in installed or "vjepa_robot_client==0.1.0" in installed
    for heavy in ("torch", "dm-control", "mujoco", "transformers", "lancedb", "fastapi"):
        assert f"\n{heavy}==" not in f"\n{installed}", f"{heavy} was installed with the SDK"
    check = (
        "import importlib.util, numpy as np, vjepa_robot_client as c\n"
        "assert importlib.util.find_spec('torch') is None, 'torch is importable'\n"
        "assert c.EncoderClient('http://127.0.0.1:1').url.endswith(':1')\n"
        "assert 'site-packages' in c.__file__, c.__file__\n"
        "print(c.__version__)"
    )
    out = subprocess.run([py, "-c", check], capture_output=True, text=True, cwd=tmp_path)  # cwd: not the checkout
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0.1.0"
    assert sys.executable != str(py)
