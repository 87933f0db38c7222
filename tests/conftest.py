"""Shared fixtures and checks: a CLI runner, small real datasets and trained runs, the error-output check."""

from __future__ import annotations

import hashlib
import os
import re
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


@pytest.fixture(scope="module")
def invoke():
    """The app in-process for a module's tests, in the current folder (the imports are paid once); returns
    (exit code, stdout, stderr). `cli` is the per-test form that also moves into tmp_path."""
    from typer.testing import CliRunner

    from cnnkit.cli import app

    runner = CliRunner()

    def run(*args):
        result = runner.invoke(app, [str(a) for a in args])
        return result.exit_code, result.stdout, result.stderr

    return run


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


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """Train a small real run once per session for each set of arguments; returns its run directory.

    `tiny_run()` is one epoch of `oneconv` (it has a conv layer to draw) on 256 mnist-sample digits
    with 5% held out for validation; `model`, `dataset` and any TrainConfig field change that,
    e.g. `tiny_run("lenet", dataset=folder, limit=None, val_split=0.25, seed=3)`. The run is shared:
    a test that writes into it copies it first (shutil.copytree), and the session ends by checking
    that no shared run changed.
    """
    from cnnkit.engine.config import TrainConfig
    from cnnkit.reporting import Reporter
    from cnnkit.engine.runner import start_training

    trained: dict[tuple, tuple[Path, dict[str, str]]] = {}

    def train(model: str = "oneconv", dataset: str | Path = "mnist-sample", **options) -> Path:
        settings = {"epochs": 1, "limit": 256, "val_split": 0.05, **options, "model": model, "dataset": str(dataset)}
        key = tuple(sorted(settings.items()))
        if key not in trained:
            config = TrainConfig(out=str(tmp_path_factory.mktemp("tiny-run")), device="cpu", **settings)
            run = Path(start_training(config, Reporter(quiet=True))["run_dir"])
            trained[key] = run, digests(run)
        return trained[key][0]

    yield train
    changed = [str(run) for run, before in trained.values() if digests(run) != before]
    assert not changed, f"a test wrote into a shared tiny_run (copy it first): {changed}"


def write_digits_idx(root: Path, train: int, test: int) -> Path:
    """The first `train` and `test` digits of the shipped MNIST sample as an IDX directory (train-*, t10k-*)."""
    import numpy as np

    from cnnkit.data.catalog import load_mnist_sample

    splits, _ = load_mnist_sample()
    for prefix, split, n in (("train", "train", train), ("t10k", "test", test)):
        write_idx_pair(root, prefix, splits[split].images[:n, 0].numpy(), splits[split].labels[:n].numpy().astype(np.uint8))
    return root


def write_idx_pair(folder: Path, prefix: str, images, labels, gz: bool = False) -> Path:
    """A valid `{prefix}-images-idx3-ubyte` / `{prefix}-labels-idx1-ubyte` pair, written by cnnkit's own writer."""
    from cnnkit.data.idx import write_idx

    suffix = ".gz" if gz else ""
    write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return folder


# ---- checks ----------------------------------------------------------------------------------


def assert_clean_failure(code: int, stderr: str, expected_code: int = 1, *, after_output: bool = False) -> list[str]:
    """Exit code, exactly one `error:` line, only `hint:` lines after it, no traceback.

    The error is the first line unless `after_output`: a command that failed after it
    had started work (progress, notes, warnings about skipped files) prints those first.
    Returns the error line and what follows it.
    """
    assert code == expected_code, f"exit {code}, expected {expected_code}; stderr:\n{stderr}"
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [i for i, line in enumerate(lines) if line.startswith("error:")]
    if expected_code == 2 and not errors:  # Typer's own usage errors: a box naming the option
        assert "Usage:" in stderr and ("Invalid value" in stderr or "Missing" in stderr or "No such" in stderr), stderr
        return lines
    assert len(errors) == 1, f"expected one error: line:\n{stderr}"
    if not after_output:
        assert errors[0] == 0, f"error: is not the first line:\n{stderr}"
    assert all(line.startswith("hint:") for line in lines[errors[0] + 1:]), f"more than a hint after the error:\n{stderr}"
    # cli/common.py's bug path: "error: unexpected KeyError: ..." and "hint: this is a bug in cnnkit ...".
    assert not re.match(r"error: unexpected \w+", lines[errors[0]]), f"an unhandled exception (a bug):\n{stderr}"
    assert "this is a bug" not in stderr, f"an unhandled exception (a bug):\n{stderr}"
    return lines[errors[0]:]


def digests(root: Path) -> dict[str, str]:
    """sha256 of every file under root (or of root itself): compare before and after a failure."""
    root = Path(root)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root.parent)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture
def server():
    """A FileServer (tests/download_helpers.py) on 127.0.0.1, started for the test and stopped after it."""
    from download_helpers import FileServer, ServerThread

    state = FileServer()
    with ServerThread(state):
        yield state


@pytest.fixture
def data_dir(tmp_path) -> Path:
    """An empty data root for a download test."""
    return tmp_path / "data"


@pytest.fixture(autouse=True)
def cache_dir(tmp_path_factory, monkeypatch) -> Path:
    """Each test's own CNNKIT_CACHE, where decoded folders and features go: never ~/.cache, never beside the data."""
    path = tmp_path_factory.mktemp("cache") / "cnnkit"
    monkeypatch.setenv("CNNKIT_CACHE", str(path))
    return path
