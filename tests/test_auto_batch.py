"""--auto-batch: a CUDA out-of-memory error splits the batch into pieces and retries it.

There is no GPU here, so a device with room for a fixed number of images is
simulated: the MLP's first layer raises the real torch.cuda.OutOfMemoryError
for any larger forward pass. Everything else is the real command.
"""

from __future__ import annotations

import json

import pytest
import torch

from cnnkit.engine.checkpoint import load_checkpoint
from conftest import assert_clean_failure

TRAIN = ("train", "mlp", "--limit", "256", "--batch-size", "64", "--val-split", "0.25", "--out", "runs")


@pytest.fixture
def device_room(monkeypatch):
    """Set how many images fit in one forward pass; None means no limit. A pass without gradients keeps no
    activations for backward, so it may be given more room ("inference")."""
    room = {"images": None, "inference": "same"}
    real_forward = torch.nn.Flatten.forward

    def forward(self, x):
        limit = room["images"] if torch.is_grad_enabled() or room["inference"] == "same" else room["inference"]
        if limit is not None and x.shape[0] > limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_forward(self, x)

    monkeypatch.setattr(torch.nn.Flatten, "forward", forward)
    return room


def final_state(run: str, tmp_path) -> dict:
    return load_checkpoint(tmp_path / "runs" / run, prefer="last")["model"]["state_dict"]


def test_split_batches_train_like_whole_ones(cli, device_room, tmp_path):
    code, _, err = cli(*TRAIN, "--epochs", "2", "--name", "whole")
    assert code == 0, err

    device_room["images"] = 16
    code, _, err = cli(*TRAIN, "--epochs", "2", "--name", "split", "--auto-batch")
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "out of memory" in line]
    assert len(warnings) == 2  # once per halving, not once per batch
    assert "64 images per forward pass: retrying with each batch in 2 pieces (same batch size 64" in warnings[0]
    assert "32 images per forward pass: retrying with each batch in 4 pieces" in warnings[1]

    # Gradient accumulation over the pieces is the whole batch's step, up to float rounding.
    whole, split = final_state("whole", tmp_path), final_state("split", tmp_path)
    assert not torch.equal(whole["1.weight"], torch.zeros_like(whole["1.weight"]))
    for key in whole:
        torch.testing.assert_close(split[key], whole[key], rtol=1e-4, atol=1e-5)
    # Validation (at twice the batch size) ran in pieces too and scored the same.
    history = [load_checkpoint(tmp_path / "runs" / r, prefer="last")["train"]["history"] for r in ("whole", "split")]
    assert [row["val_acc"] for row in history[0]] == [row["val_acc"] for row in history[1]]
    assert load_checkpoint(tmp_path / "runs" / "split", prefer="last")["train"]["config"]["auto_batch"] is True


def test_without_auto_batch_the_error_suggests_it(cli, device_room):
    device_room["images"] = 16
    code, out, err = cli(*TRAIN, "--epochs", "1")
    assert out == ""
    error, hint = assert_clean_failure(code, err, after_output=True)  # after the "training on" note
    assert error == "error: the device ran out of memory at batch size 64"
    assert "--batch-size 32, or --auto-batch" in hint


def test_nothing_fits_is_one_error_line(cli, device_room):
    device_room.update(images=0, inference=None)  # not even one training image fits
    code, _, err = cli(*TRAIN, "--epochs", "1", "--batch-size", "4", "--auto-batch")
    error = assert_clean_failure(code, err, after_output=True)[0]
    assert error == "error: the device ran out of memory even at 1 image per forward pass (batch size 4 in 4 pieces)"


def test_resume_with_auto_batch_finishes_a_run_that_ran_out_of_memory(cli, device_room, tmp_path):
    code, _, err = cli(*TRAIN, "--epochs", "1", "--name", "run")
    assert code == 0, err
    run = tmp_path / "runs" / "run"
    saved = (run / "last.pt").read_bytes()

    device_room["images"] = 16  # say, a bigger job now shares the GPU
    code, _, err = cli("train", "--resume", run, "--epochs", "2")
    assert "--auto-batch" in "\n".join(assert_clean_failure(code, err, after_output=True))
    assert (run / "last.pt").read_bytes() == saved  # the checkpoint is intact

    code, _, err = cli("train", "--resume", run, "--epochs", "2", "--auto-batch")
    assert code == 0, err
    assert load_checkpoint(run, prefer="last")["train"]["epoch"] == 2


def test_evaluate_runs_a_batch_that_does_not_fit_in_pieces(cli, device_room, tmp_path):
    code, _, err = cli(*TRAIN, "--epochs", "1", "--name", "run")
    assert code == 0, err
    code, whole, err = cli("evaluate", tmp_path / "runs" / "run", "--json")
    assert code == 0, err
    device_room["images"] = 3
    code, pieces, err = cli("evaluate", tmp_path / "runs" / "run", "--json")
    assert code == 0, err
    whole, pieces = json.loads(whole), json.loads(pieces)
    assert pieces.pop("loss") == pytest.approx(whole.pop("loss"), rel=1e-6)  # matmul blocking rounds differently
    for mistake in pieces["worst_mistakes"] + whole["worst_mistakes"]:
        mistake.update({k: round(v, 4) for k, v in mistake.items() if isinstance(v, float)})
    assert pieces == whole  # accuracy, per-class figures, confusion matrix, the same mistakes


def test_not_even_one_image_fits_for_evaluation(cli, device_room, tmp_path):
    # Evaluation halves a batch down to one image, then gives up: one error line from the CLI, not a bug report.
    code, _, err = cli(*TRAIN, "--epochs", "1", "--name", "run")
    assert code == 0, err
    device_room["images"] = 0
    code, out, err = cli("evaluate", tmp_path / "runs" / "run")
    assert out == ""
    assert assert_clean_failure(code, err) == ["error: the device ran out of memory", "hint: use a smaller --batch-size, or --device cpu"]
