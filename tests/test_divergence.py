"""A run whose loss stops being finite fails loudly; no NaN reaches a checkpoint or a JSON document (issue 13).

`cnnkit train --lr 1e30` used to train to NaN, exit 0, save the NaN weights as
best.pt, and `evaluate --json` then printed a bare `NaN`, which is not JSON.
Now the loop checks the loss where it reads it anyway (each log line and each
epoch's end: tests/test_no_sync.py proves it reads no more), stops with exit 1
and a hint, and saves nothing of the diverged epoch: last.pt, best.pt and
metrics.csv stay as the last finite epoch wrote them.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from conftest import assert_clean_failure, digests

QUICK = ["--dataset", "mnist-sample", "--limit", "256", "--device", "cpu", "--schedule", "none"]


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity, as every other JSON parser does."""

    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_a_learning_rate_that_diverges_fails_and_saves_no_nan_model(cli, tmp_path):
    code, out, err = cli("train", "oneconv", *QUICK, "--epochs", "2", "--lr", "1e30", "--name", "nan")
    lines = assert_clean_failure(code, err, after_output=True)
    assert "diverged" in lines[0] and "NaN" in lines[0] and "epoch 1" in lines[0], err
    assert "--lr" in lines[1] and "1e+30" in lines[1], err
    assert out == "", "a diverged run printed a result"
    run = tmp_path / "checkpoints" / "nan"
    assert not (run / "best.pt").exists() and not (run / "last.pt").exists() and not (run / "metrics.csv").exists()


def test_a_diverging_json_run_prints_no_document(cli):
    code, out, err = cli("train", "oneconv", *QUICK, "--epochs", "1", "--lr", "1e30", "--json", "--quiet")
    assert "diverged" in assert_clean_failure(code, err)[0]
    assert out == ""


@pytest.fixture
def finite_then_diverging(tiny_run, tmp_path) -> Path:
    """A real one-epoch run, its last.pt changed to go on at lr 1e30: epoch 1 is finite, epoch 2 diverges."""
    run = Path(shutil.copytree(tiny_run(val_split=None, schedule="none", optimizer="sgd"), tmp_path / "run"))
    checkpoint = torch.load(run / "last.pt", weights_only=True)
    train = checkpoint["train"]
    train["config"]["lr"] = train["phases"][0]["lr"] = 1e30
    for group in train["optimizer"]["param_groups"]:
        group["lr"] = 1e30
    torch.save(checkpoint, run / "last.pt")
    return run


def test_divergence_after_a_finite_epoch_keeps_that_epochs_files(cli, finite_then_diverging):
    run = finite_then_diverging
    before = digests(run)
    code, out, err = cli("train", "--resume", run, "--epochs", "3")
    lines = assert_clean_failure(code, err, after_output=True)
    assert "diverged" in lines[0] and "epoch 2" in lines[0], err
    assert "last.pt and best.pt" in lines[0] and "last epoch that was finite" in lines[0], err
    assert "1e+30" in lines[1]
    assert {k: v for k, v in digests(run).items() if not k.endswith("config.json")} == \
        {k: v for k, v in before.items() if not k.endswith("config.json")}, "files of the diverged epoch were written"
    saved = torch.load(run / "best.pt", weights_only=True)["model"]["state_dict"]
    assert all(torch.isfinite(t).all() for t in saved.values())
    # The finite epoch it kept still evaluates.
    code, out, err = cli("evaluate", run, "--json")
    assert code == 0, err
    assert strict_json(out)["epoch"] == 1


def test_evaluate_json_is_strict_json_when_the_loss_overflows(cli, tiny_run, tmp_path):
    """Finite but huge weights (as a run about to diverge has) overflow the logits: the loss is NaN or inf.
    The document says null there, instead of the bare NaN that no JSON parser reads."""
    checkpoint = torch.load(tiny_run() / "best.pt", weights_only=True)
    checkpoint["model"]["state_dict"] = {k: v * 1e25 if v.is_floating_point() else v
                                         for k, v in checkpoint["model"]["state_dict"].items()}
    assert all(torch.isfinite(v).all() for v in checkpoint["model"]["state_dict"].values())
    huge = tmp_path / "huge.pt"
    torch.save(checkpoint, huge)
    code, out, err = cli("evaluate", huge, "--json")
    assert code == 0, err
    document = strict_json(out)
    assert document["loss"] is None and document["count"] > 0


def test_print_json_writes_null_for_every_non_finite_float(capsys):
    from cnnkit.cli.common import print_json

    print_json({"loss": math.nan, "rows": [{"a": math.inf}, (-math.inf, 1.5)], "n": 3, "name": "NaN"})
    assert strict_json(capsys.readouterr().out) == {"loss": None, "rows": [{"a": None}, [None, 1.5]], "n": 3, "name": "NaN"}


def test_a_live_log_line_stops_a_diverging_epoch_at_once(tmp_path):
    """On a terminal the progress line reads the running loss (twice a second); a NaN there stops the
    epoch at that batch instead of training the rest of it on NaN. A reporter that refreshes every
    batch stands in for the terminal."""
    from cnnkit.engine.config import TrainConfig
    from cnnkit.reporting import Reporter
    from cnnkit.engine.runner import start_training
    from cnnkit.engine.trainer import TrainingDiverged

    class EveryBatch(Reporter):
        def advance(self, stats_fn=None) -> None:
            if stats_fn is not None:
                stats_fn()

    config = TrainConfig(model="oneconv", dataset="mnist-sample", epochs=1, limit=640, batch_size=32, lr=1e30,
                         schedule="none", out=str(tmp_path), name="run", device="cpu")
    with pytest.raises(TrainingDiverged, match=r"epoch 1 \(after batch [0-9]+ of 20\)") as caught:
        start_training(config, EveryBatch(quiet=True))
    assert int(caught.value.message.split("after batch ")[1].split()[0]) < 20
    assert not (tmp_path / "run" / "last.pt").exists()
