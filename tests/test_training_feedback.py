"""What a training run tells the user (issue 16): imbalance and balanced accuracy, --balance, a stuck loss,
--val-every results on disk and in best.pt, --patience, and the device a run used."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

TINY = ["--epochs", "1", "--batch-size", "16", "--val-split", "0.25"]


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def imbalanced_pets(pets_folder) -> Path:
    """The real cat and dog photos, 50 cats and 10 dogs: the 200 cats / 30 dogs case, smaller."""
    for photo in sorted((pets_folder / "Dog").iterdir())[10:]:
        photo.unlink()
    return pets_folder


def test_an_imbalanced_folder_warns_and_every_report_has_balanced_accuracy(cli, tmp_path, imbalanced_pets):
    code, out, err = cli("train", "perceptron", "--dataset", imbalanced_pets, *TINY, "--json", "--name", "plain")
    assert code == 0, err
    assert "warning: the train split is imbalanced: the largest class is" in err
    assert "--balance sampler|loss" in err
    summary = json.loads(out)
    run = tmp_path / summary["run_dir"]
    metrics = rows(run / "metrics.csv")
    assert list(metrics[0])[-1] == "val_bal_acc"  # appended: readers by position keep working
    assert float(metrics[0]["val_bal_acc"]) == pytest.approx(summary["val_bal_acc"], abs=1e-6)
    assert load(run / "best.pt")["train"]["history"][0]["val_bal_acc"] == summary["val_bal_acc"]

    code, out, err = cli("evaluate", run, "--split", "val", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["balanced_accuracy"] == pytest.approx(summary["val_bal_acc"])
    assert report["balanced_accuracy"] == pytest.approx(report["macro_avg"]["recall"])  # mean per-class recall
    code, out, err = cli("evaluate", run, "--split", "val")
    assert code == 0 and "balanced accuracy" in out

    # The device is said once, and recorded in the summary, config.json and the checkpoint.
    code, out, err = cli("train", "perceptron", "--dataset", imbalanced_pets, *TINY, "--balance", "loss", "--name", "loss")
    assert code == 0, err
    device = "cuda" if torch.cuda.is_available() else "cpu (auto: no CUDA device)"
    notes = [line for line in err.splitlines() if line.startswith("note: training on")]
    assert len(notes) == 1 and notes[0].startswith(f"note: training on {device}")
    assert "--balance loss is on" in err
    weighted = tmp_path / "checkpoints/loss"
    assert json.loads((weighted / "config.json").read_text())["device_used"].startswith(device)
    assert load(weighted / "last.pt")["train"]["device"].startswith(device)
    assert summary["device"].startswith(device)
    # Class weights in the loss change what is learnt from the same start.
    plain, balanced = load(run / "last.pt")["model"]["state_dict"], load(weighted / "last.pt")["model"]["state_dict"]
    assert any(not torch.equal(plain[k], balanced[k]) for k in plain)


def test_class_weights_give_each_class_the_same_total():
    from cnnkit.engine.feedback import class_weights, sample_weights

    labels = torch.tensor([0] * 50 + [1] * 10)
    assert class_weights(labels, 3).tolist() == pytest.approx([0.6, 3.0, 0.0])  # n / (classes present * count)
    per_image = sample_weights(labels, 2)
    assert float(per_image[:50].sum()) == pytest.approx(float(per_image[50:].sum()))


def test_the_balanced_sampler_draws_classes_evenly_and_resumes_exactly(cli, tmp_path, imbalanced_pets):
    from cnnkit.data.batches import balanced_order
    from cnnkit.engine.feedback import sample_weights

    labels = torch.tensor([0] * 50 + [1] * 10)
    drawn = labels[balanced_order(sample_weights(labels, 2), seed=0, epoch=3)]
    assert 20 <= int((drawn == 1).sum()) <= 40  # about half dogs, where shuffling gives 10 of 60
    assert torch.equal(balanced_order(sample_weights(labels, 2), 0, 3), balanced_order(sample_weights(labels, 2), 0, 3))

    common = ["train", "perceptron", "--dataset", imbalanced_pets, *TINY[2:], "--balance", "sampler", "--schedule", "none", "--quiet"]
    assert cli(*common, "--epochs", "2", "--name", "straight")[0] == 0
    assert cli(*common, "--epochs", "1", "--name", "split")[0] == 0
    code, out, err = cli("train", "--resume", "checkpoints/split", "--epochs", "2", "--quiet")
    assert code == 0, err
    straight = load(tmp_path / "checkpoints/straight/last.pt")["model"]["state_dict"]
    resumed = load(tmp_path / "checkpoints/split/last.pt")["model"]["state_dict"]
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_a_stuck_loss_warns_once_and_patience_stops_on_a_tie(cli, tmp_path):
    """adamw at lr 0.1 collapses LeNet to one class: the loss sits at ln(10) and validation accuracy stays put."""
    code, out, err = cli("train", "lenet", "--limit", "3200", "--label-smoothing", "0", "--epochs", "4", "--lr", "0.1", "--schedule", "none",
                         "--patience", "1")
    assert code == 0, err
    run = tmp_path / out.strip().splitlines()[-1]
    train = load(run / "last.pt")["train"]
    history = train["history"]
    assert abs(history[-1]["train_loss"] - math.log(10)) < 0.02
    assert err.count("warning: the training loss sat at") == 1
    assert "hint: the learning rate may be too high (--lr 0.1; try 0.01" in err
    # The two epochs' validation accuracies tie, and a tie is not progress.
    assert history[0]["val_acc"] == history[1]["val_acc"] and len(history) == 2
    assert train["stopped_early"] == {"epoch": 2, "best_epoch": 1, "patience": 1, "best_val_acc": history[0]["val_acc"]}
    assert "note: stopped early after epoch 2" in err and "(--patience 1)" in err
    assert len(rows(run / "metrics.csv")) == 2
    assert load(run / "best.pt")["train"]["epoch"] == 1

    code, out, err = cli("train", "--resume", run, "--epochs", "6", "--json")
    assert code == 0, err
    assert json.loads(out)["stopped_early"]["epoch"] == 2
    assert len(rows(run / "metrics.csv")) == 2
    code, out, err = cli("train", "--resume", run)
    assert "stopped early after epoch 2" in err and "the run is finished" in err and "resuming" not in err
    assert "stopped early" in out


def test_val_every_results_are_written_and_choose_best_pt(cli, tmp_path):
    """At sgd lr 0.3 the validation accuracy peaks inside the epoch, at step 8 of 10."""
    code, out, err = cli("train", "lenet", "--limit", "640", "--epochs", "1", "--val-every", "2", "--optimizer", "sgd",
                         "--lr", "0.3", "--schedule", "none", "--quiet")
    assert code == 0, err
    run = tmp_path / out.strip()
    steps = rows(run / "val_steps.csv")
    assert [int(r["step"]) for r in steps] == [2, 4, 6, 8, 10]
    assert list(steps[0]) == ["epoch", "step", "val_loss", "val_acc", "val_bal_acc"]
    last = load(run / "last.pt")["train"]
    assert [r["step"] for r in last["val_history"]] == [2, 4, 6, 8, 10]  # curves.png's data
    accuracies = [float(r["val_acc"]) for r in steps]
    best_step = int(steps[accuracies.index(max(accuracies))]["step"])  # the first of equals
    assert best_step < 10, "this run no longer peaks inside the epoch: the test would not tell"
    best = load(run / "best.pt")["train"]
    assert best["global_step"] == best_step and best["best_val_acc"] == pytest.approx(max(accuracies), abs=1e-5)
    assert last["global_step"] == 10 and last["epoch"] == 1  # last.pt stays the epoch's end



def test_a_short_first_epoch_at_ln_classes_is_not_called_stuck(cli, tmp_path, cifar_folder):
    """300 photos are 5 steps an epoch at batch 64: the loss has not left ln(10) yet, and that says nothing."""
    code, out, err = cli("train", "lenet", "--dataset", cifar_folder, "--epochs", "1", "--device", "cpu")
    assert code == 0, err
    assert "training loss sat at" not in err
