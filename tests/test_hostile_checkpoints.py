"""Bad checkpoints and weights files, across every command that reads one.

test_train covers `train --resume` with truncated, state_dict, foreign, text and
code-running files; this module runs each defect through the other commands
(and the cases train lacks), and checks that nothing good was touched.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import assert_clean_failure, digests
from hostile import CHECKPOINT_DEFECTS, picture, write_bad_checkpoint

# What the error line says for each defect.
MESSAGES = {
    "truncated": "truncated",
    "empty": "truncated",
    "text": "not a PyTorch file",
    "bit-flip": "fails its CRC check",
    "foreign": "not a cnnkit checkpoint",
    "state_dict": "bare state_dict",
    "other-model": "do not fit model",
    "runs-code": "pickled code",
}

# How each command takes a checkpoint (CKPT is replaced by the path).
COMMANDS = {
    "evaluate": ["evaluate", "CKPT"],
    "predict": ["predict", "IMAGE", "--model", "CKPT"],
    "summary": ["summary", "--checkpoint", "CKPT"],
    "visualize-filter": ["visualize-filter", "--checkpoint", "CKPT", "--image", "IMAGE", "--out", "filters.png"],
    "train --resume": ["train", "--resume", "CKPT", "--epochs", "3"],
    "finetune --resume": ["finetune", "--resume", "CKPT", "--epochs", "3"],
}
# test_train already runs these through `train --resume`.
COVERED = {("train --resume", d) for d in ("truncated", "state_dict", "foreign", "text", "runs-code")}


@pytest.fixture(scope="module")
def trained(tiny_run) -> Path:
    return tiny_run()


@pytest.fixture(scope="module")
def bad_checkpoints(trained, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad-checkpoints")
    return {d: write_bad_checkpoint(trained / "best.pt", root / f"{d}.pt", d, marker=root / "code-ran") for d in CHECKPOINT_DEFECTS}


@pytest.fixture
def image(tmp_path) -> Path:
    from PIL import Image

    path = tmp_path / "digit.png"
    Image.fromarray(picture()).save(path)
    return path


@pytest.mark.parametrize("command, defect", [(c, d) for c in COMMANDS for d in CHECKPOINT_DEFECTS if (c, d) not in COVERED])
def test_every_command_refuses_a_bad_checkpoint_cleanly(cli, command, defect, bad_checkpoints, trained, image):
    bad = bad_checkpoints[defect]
    before = {**digests(bad), **digests(trained)}
    args = [{"CKPT": str(bad), "IMAGE": str(image)}.get(a, a) for a in COMMANDS[command]]
    code, out, err = cli(*args)
    lines = assert_clean_failure(code, err)
    assert MESSAGES[defect] in "\n".join(lines), err
    assert out == "", "a failure printed a result on stdout"
    if defect in ("state_dict", "runs-code", "truncated", "empty", "bit-flip"):
        assert len(lines) == 2 and lines[1].startswith("hint:"), err  # these say what to do instead
    assert not (bad.parent / "code-ran").exists(), "unpickling ran code from the file"
    assert {**digests(bad), **digests(trained)} == before
    assert not (Path.cwd() / "filters.png").exists()


def test_the_code_running_file_really_runs_code_when_unpickled_unsafely(bad_checkpoints):
    """So the test above proves something: weights_only=False would have run it."""
    import torch

    marker = bad_checkpoints["runs-code"].parent / "code-ran"
    assert not marker.exists()
    torch.load(bad_checkpoints["runs-code"], weights_only=False)
    assert marker.exists()
    marker.unlink()


# finetune --weights reads a bare state_dict: a cnnkit checkpoint or a broken file is refused.
# (test_finetune covers a text file, a list, a missing file and another architecture's weights.)
@pytest.mark.parametrize("defect", ["truncated", "empty", "runs-code", "foreign", "cnnkit-checkpoint"])
def test_finetune_weights_that_are_not_a_state_dict(cli, defect, bad_checkpoints, trained, pets_folder, tmp_path):
    weights = trained / "best.pt" if defect == "cnnkit-checkpoint" else bad_checkpoints[defect]
    before = digests(weights)
    code, _, err = cli("finetune", "resnet18", "--weights", weights, "--dataset", pets_folder, "--out", tmp_path / "runs")
    lines = assert_clean_failure(code, err)
    assert str(weights.name) in lines[0]
    assert not (weights.parent / "code-ran").exists()
    assert digests(weights) == before
    assert not (tmp_path / "runs").exists()


def test_run_directory_without_checkpoints(cli, tmp_path, image):
    empty_run = tmp_path / "run"
    empty_run.mkdir()
    (empty_run / "metrics.csv").write_text("epoch\n")
    for args in (["evaluate", empty_run], ["predict", image, "--model", empty_run], ["summary", "--checkpoint", empty_run],
                 ["train", "--resume", empty_run]):
        code, _, err = cli(*args)
        assert "no checkpoint in" in assert_clean_failure(code, err)[0], args


def test_debug_env_shows_the_traceback(cli, bad_checkpoints, monkeypatch):
    """CNNKIT_DEBUG=1 lets the exception out of the handler, so Python prints its traceback."""
    import traceback

    from typer.testing import CliRunner

    from cnnkit.cli import app
    from cnnkit.errors import CheckpointError

    code, _, err = cli("evaluate", bad_checkpoints["truncated"])
    assert_clean_failure(code, err)  # without it: one line
    monkeypatch.setenv("CNNKIT_DEBUG", "1")
    result = CliRunner().invoke(app, ["evaluate", str(bad_checkpoints["truncated"])])
    assert isinstance(result.exception, CheckpointError) and result.exit_code != 0
    printed = "".join(traceback.format_exception(*result.exc_info))
    assert printed.startswith("Traceback (most recent call last)") and "cnnkit/engine/checkpoint.py" in printed
    assert "error:" not in result.stderr


def test_a_copy_of_a_good_checkpoint_still_works_everywhere(cli, trained, tmp_path, image):
    """The control: the same commands accept the checkpoint the defects were made from."""
    good = Path(shutil.copy(trained / "best.pt", tmp_path / "good.pt"))
    for args in (["evaluate", good], ["predict", image, "--model", good], ["summary", "--checkpoint", good],
                 ["visualize-filter", "--checkpoint", good, "--image", image, "--out", tmp_path / "f.png"]):
        code, _, err = cli(*args)
        assert code == 0, (args, err)


# ---- crafted checkpoints: a real torch.save of a cnnkit checkpoint with one field wrong (issue 13) -----------
# weights_only=True loads any dict of plain values; each of these used to reach a builder, an allocation or a
# lookup and fail as "unexpected ... bug" (or, for the NaN weights and the missing train section, run on).
# Each mutation takes the loaded checkpoint and changes it in place; the value is the field the error must name.


def _set(path: str, value):
    def mutate(checkpoint: dict) -> None:
        *parents, last = path.split(".")
        section = checkpoint
        for key in parents:
            section = section[key]
        section[last] = value
    return mutate


def _delete(path: str):
    def mutate(checkpoint: dict) -> None:
        *parents, last = path.split(".")
        section = checkpoint
        for key in parents:
            section = section[key]
        del section[last]
    return mutate


def _nan_weight(checkpoint: dict) -> None:
    state = checkpoint["model"]["state_dict"]
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = state[name].clone()
    state[name].view(-1)[0] = float("nan")


def _huge_input(checkpoint: dict) -> None:
    checkpoint["model"]["kwargs"]["image_size"] = 100_000
    checkpoint["data"]["input_size"] = [1, 100_000, 100_000]


SCHEMA_DEFECTS = {
    "classes-an-int": (_set("data.classes", 10), "data.classes"),
    "classes-short": (lambda c: _set("data.classes", c["data"]["classes"][:4])(c), "data.classes"),
    "classes-not-names": (_set("data.classes", list(range(10))), "data.classes"),
    "version-abc": (_set("version", "abc"), "version"),
    "version-zero": (_set("version", 0), "version"),
    "no-kwargs": (_delete("model.kwargs"), "model.kwargs"),
    "kwargs-unknown-key": (_set("model.kwargs.pretrained", True), "model.kwargs"),
    "name-an-int": (_set("model.name", 7), "model.name"),
    "mean-a-string": (_set("data.mean", "0.5"), "data.mean"),
    "std-zero": (_set("data.std", [0.0]), "data.std"),
    "num-classes-negative": (_set("model.kwargs.num_classes", -5), "model.kwargs.num_classes"),
    "num-classes-20M": (_set("model.kwargs.num_classes", 20_000_000), "model.kwargs.num_classes"),
    "in-channels-zero": (_set("model.kwargs.in_channels", 0), "model.kwargs.in_channels"),
    "state_dict-a-list": (lambda c: _set("model.state_dict", list(c["model"]["state_dict"].values()))(c), "model.state_dict"),
    "nan-weights": (_nan_weight, "model.state_dict.0.weight"),  # oneconv's first layer
    "no-train-section": (_delete("train"), "train"),
    "image-size-huge": (_huge_input, "model.kwargs.image_size"),
    "data-size-huge": (_set("data.size", [100_000, 100_000]), "data.size"),
    "input-size-inconsistent": (_set("data.input_size", [3, 28, 28]), "data.input_size"),
    # H,W: one side of an [H, W] image_size that is no integer, or a pair the recorded input does not match
    "image-size-pair-of-text": (_set("model.kwargs.image_size", [28, "28"]), "model.kwargs.image_size"),
    "image-size-pair-inconsistent": (_set("model.kwargs.image_size", [20, 28]), "data.input_size"),
    "config-epochs-a-string": (_set("train.config.epochs", "abc"), "train.config.epochs"),
    "config-lr-nan": (_set("train.config.lr", float("nan")), "train.config.lr"),
    "config-image-size-one-side": (_set("train.config.image_size", [0]), "train.config.image_size"),
    "model-args-a-list": (_set("model.args", [1, 2]), "model.args"),
    "model-arg-an-object": (_set("model.args", {"width": [1, 2]}), "model.args.width"),
    "model-head-a-number": (_set("model.head", 3), "model.head"),
    "epoch-negative": (_set("train.epoch", -1), "train.epoch"),
}
# The loop state only a resume reads: evaluate, predict and summary need just the train section's epoch.
RESUME_DEFECTS = {
    "no-partial": (_delete("train.partial"), "train.partial"),
    "no-config": (_delete("train.config"), "train.config"),
    "history-too-short": (_set("train.history", []), "train.history"),
    "no-rng": (_delete("train.rng"), "train.rng"),
}
# Every command that reads a checkpoint (finetune --resume reads it the same way as train --resume).
SCHEMA_COMMANDS = ["evaluate", "predict", "summary", "visualize-filter", "train --resume"]


@pytest.fixture(scope="module")
def crafted_checkpoints(trained, tmp_path_factory) -> dict[str, Path]:
    import torch

    root = tmp_path_factory.mktemp("crafted-checkpoints")
    crafted = {}
    for defect, (mutate, _) in {**SCHEMA_DEFECTS, **RESUME_DEFECTS}.items():
        checkpoint = torch.load(trained / "best.pt", weights_only=True)
        mutate(checkpoint)
        crafted[defect] = root / f"{defect}.pt"
        torch.save(checkpoint, crafted[defect])
    return crafted


@pytest.mark.parametrize("command, defect", [(c, d) for d in SCHEMA_DEFECTS for c in SCHEMA_COMMANDS] +
                         [(c, d) for d in RESUME_DEFECTS for c in ("train --resume", "finetune --resume")])
def test_a_crafted_checkpoint_is_refused_naming_the_field(cli, command, defect, crafted_checkpoints, trained, image, tmp_path):
    bad = crafted_checkpoints[defect]
    before = {**digests(bad), **digests(trained)}
    args = [{"CKPT": str(bad), "IMAGE": str(image)}.get(a, a) for a in COMMANDS[command]]
    code, out, err = cli(*args)
    lines = assert_clean_failure(code, err)
    field = {**SCHEMA_DEFECTS, **RESUME_DEFECTS}[defect][1]
    assert f"'{field}'" in lines[0], err
    assert len(lines) == 2 and lines[1].startswith("hint:"), err
    assert out == "", "a failure printed a result on stdout"
    assert {**digests(bad), **digests(trained)} == before
    assert not (tmp_path / "filters.png").exists()
    assert not (tmp_path / "checkpoints").exists()


def test_a_resume_whose_optimizer_state_is_garbage_is_refused(cli, trained, tmp_path):
    """Optimizer, scheduler and RNG states are torch's to check in depth: what their loaders refuse is a clean error."""
    import torch

    run = Path(shutil.copytree(trained, tmp_path / "run"))
    checkpoint = torch.load(run / "last.pt", weights_only=True)
    checkpoint["train"]["optimizer"] = {"state": {}, "param_groups": [{"params": "not a list"}]}
    torch.save(checkpoint, run / "last.pt")
    before = digests(run / "last.pt")
    code, out, err = cli("train", "--resume", run, "--epochs", "2")
    lines = assert_clean_failure(code, err, after_output=True)
    assert "optimizer and scheduler state" in lines[0] and "cannot be restored" in lines[0], err
    assert digests(run / "last.pt") == before
