"""Shared fixtures: a CLI runner, a scratch working directory, small real datasets on disk."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
DATA = TESTS / "data"

# A shell starts a background job (`pytest &`, `nohup ... &`) with SIGINT ignored, and children inherit that, so
# the Ctrl-C tests' cnnkit processes would not hear it. Children of a process with a handler start with the default.
signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def runner():
    from typer.testing import CliRunner

    return CliRunner()


@pytest.fixture
def cli(runner, monkeypatch, tmp_path):
    """Invoke the app in-process inside tmp_path; returns (exit_code, stdout, stderr)."""
    from cnnkit.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CNNKIT_DEBUG", raising=False)

    def invoke(*args: str):
        result = runner.invoke(app, [str(a) for a in args])
        return result.exit_code, result.stdout, result.stderr

    return invoke


def run_cnnkit(*args, cwd=None, env=None, timeout=300, **kwargs) -> subprocess.CompletedProcess:
    """Run the installed command in a subprocess (the way shell scripts use it)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("CNNKIT_DEBUG", None) if not (env and "CNNKIT_DEBUG" in env) else None
    return subprocess.run(
        [sys.executable, "-m", "cnnkit", *map(str, args)], cwd=cwd, env=full_env,
        capture_output=True, text=True, timeout=timeout, **kwargs,
    )


@pytest.fixture
def cifar_folder(tmp_path) -> Path:
    """A writable copy of the 400-image CIFAR-10 JPEG sample (train/ and test/)."""
    target = tmp_path / "cifar10-sample"
    shutil.copytree(DATA / "cifar10-sample", target)
    return target


@pytest.fixture
def pets_folder(tmp_path) -> Path:
    """A writable copy of the 100 cat and dog photos in PetImages layout (Cat/, Dog/)."""
    target = tmp_path / "PetImages"
    shutil.copytree(DATA / "pets-sample", target)
    return target
