"""--tensorboard: event files in RUN/tb/, read back with TensorBoard's own EventAccumulator."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest

from conftest import assert_clean_failure

pytest.importorskip("tensorboard", reason="the cnnkit[tensorboard] extra (in the test extra) is not installed")

TINY = ["train", "perceptron", "--limit", "320", "--batch-size", "32", "--val-every", "4", "--tensorboard", "--quiet"]


def scalars(run, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def test_event_files_hold_every_epoch_and_val_every_step_once_across_a_resume(cli, tmp_path):
    code, out, err = cli(*TINY, "--epochs", "1")
    assert code == 0, err
    run = tmp_path / out.strip()
    assert [step for step, _ in scalars(run, "loss/train")] == [10]
    code, out, err = cli("train", "--resume", run, "--epochs", "2", "--quiet")
    assert code == 0, err
    with open(run / "metrics.csv", newline="") as f:
        metrics = list(csv.DictReader(f))
    for tag, key in (("loss/train", "train_loss"), ("accuracy/val", "val_acc"), ("lr", "lr"),
                     ("balanced_accuracy/val", "val_bal_acc")):
        logged = scalars(run, tag)
        assert [step for step, _ in logged] == [int(r["step"]) for r in metrics], tag  # each epoch once
        assert [v for _, v in logged] == pytest.approx([float(r[key]) for r in metrics], rel=1e-4), tag
    with open(run / "val_steps.csv", newline="") as f:
        steps = list(csv.DictReader(f))
    assert [step for step, _ in scalars(run, "accuracy/val_step")] == [int(r["step"]) for r in steps] == [4, 8, 12, 16, 20]


def test_without_tensorboard_installed_it_is_a_clean_error_naming_the_extra(tmp_path):
    # sys.modules[name] = None is Python's own way to make `import name` fail, as on a machine without it.
    code = "import sys; sys.modules['tensorboard'] = None; from cnnkit.cli import app; app()"
    result = subprocess.run(
        [sys.executable, "-c", code, "train", "perceptron", "--tensorboard"], cwd=tmp_path, capture_output=True,
        text=True, timeout=120)
    lines = assert_clean_failure(result.returncode, result.stderr, 2)
    assert "cnnkit[tensorboard]" in "\n".join(lines)
    assert not (tmp_path / "checkpoints").exists()  # refused before any data was read or run directory made
