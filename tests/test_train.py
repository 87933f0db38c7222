"""cnnkit train end to end: accuracy, run directory, checkpoints, exact resume, Ctrl-C."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import assert_clean_failure, run_cnnkit

QUICK = ["--limit", "1500", "--batch-size", "64"]


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_weights(a: Path, b: Path) -> None:
    sa, sb = load(a)["model"]["state_dict"], load(b)["model"]["state_dict"]
    assert sa.keys() == sb.keys()
    different = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not different, f"weights differ: {different[:3]}"


def test_cnn_one_epoch_learns_mnist_sample(cli, tmp_path):
    code, out, err = cli("train", "cnn", "--epochs", "1", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["val_acc"] >= 0.90
    assert summary["validated_on"] == "test"
    run = tmp_path / summary["run_dir"]
    assert run == tmp_path / "checkpoints" / "cnn-mnist-sample"
    for name in ("last.pt", "best.pt", "metrics.csv", "curves.png", "config.json"):
        assert (run / name).is_file(), name
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert list(rows[0]) == ["epoch", "step", "phase", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_s", "val_bal_acc"]
    assert len(rows) == 1 and abs(float(rows[0]["val_acc"]) - summary["val_acc"]) < 1e-6
    assert rows[0]["step"] == str(-(-8000 // 64))
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "cnn" and config["epochs"] == 1


def test_checkpoint_format(cli, tmp_path):
    code, out, err = cli("train", "mlp", "--epochs", "1", *QUICK, "--quiet")
    assert code == 0, err
    ckpt = load(tmp_path / out.strip() / "last.pt")
    assert ckpt["format"] == "cnnkit.checkpoint" and ckpt["version"] == 1
    assert ckpt["torch_version"] == torch.__version__
    assert ckpt["model"]["name"] == "mlp"
    assert ckpt["model"]["kwargs"] == {"in_channels": 1, "num_classes": 10, "image_size": 28}
    assert ckpt["data"]["classes"] == [str(d) for d in range(10)]
    assert ckpt["data"]["input_size"] == [1, 28, 28]
    assert len(ckpt["data"]["mean"]) == 1 and 0.1 < ckpt["data"]["mean"][0] < 0.2
    for key in ("config", "epoch", "global_step", "best_val_acc", "history", "optimizer", "scheduler", "rng"):
        assert key in ckpt["train"], key
    assert set(ckpt["train"]["rng"]) >= {"torch", "python", "numpy"}


def test_quiet_prints_only_the_run_directory(tmp_path):
    result = run_cnnkit("train", "perceptron", "--epochs", "1", *QUICK, "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines() == ["checkpoints/perceptron-mnist-sample"]
    assert "\r" not in result.stderr


def test_run_directories_are_numbered(cli):
    first = cli("train", "perceptron", "--epochs", "1", *QUICK, "--quiet")[1].strip()
    second = cli("train", "perceptron", "--epochs", "1", *QUICK, "--quiet")[1].strip()
    assert (first, second) == ("checkpoints/perceptron-mnist-sample", "checkpoints/perceptron-mnist-sample-2")


def test_resume_is_exact(cli, tmp_path):
    common = ["train", "cnn-dropout", *QUICK, "--schedule", "none", "--augment", "flip,crop,rotate,jitter"]
    assert cli(*common, "--epochs", "2", "--name", "straight")[0] == 0
    assert cli(*common, "--epochs", "1", "--name", "split")[0] == 0
    code, out, err = cli("train", "--resume", "checkpoints/split", "--epochs", "2", "--quiet")
    assert code == 0, err
    assert_same_weights(tmp_path / "checkpoints/straight/last.pt", tmp_path / "checkpoints/split/last.pt")
    straight = (tmp_path / "checkpoints/straight/metrics.csv").read_text().splitlines()
    resumed = (tmp_path / "checkpoints/split/metrics.csv").read_text().splitlines()
    strip = lambda rows: [",".join(r.split(",")[:8]) for r in rows]  # drop timing columns
    assert strip(straight) == strip(resumed)


def test_resume_of_a_finished_run_says_so(cli):
    run = cli("train", "perceptron", "--epochs", "1", *QUICK, "--quiet")[1].strip()
    code, out, err = cli("train", "--resume", run)
    assert code == 0
    assert "already finished" in err


def make_old_style(path: Path) -> None:
    """Rewrite a checkpoint as cnnkit wrote it before TrainConfig.mode was split into command and finetune_mode."""
    checkpoint = load(path)
    config = checkpoint["train"]["config"]
    command, finetune_mode = config.pop("command"), config.pop("finetune_mode")
    config["mode"] = finetune_mode or command  # "train", "finetune" or "features"
    checkpoint["train"]["scaler"] = {}
    checkpoint["data"].update(val_split=config["val_split"], seed=config["seed"], limit=config["limit"],
                              eval_batch_size=min(512, 2 * config["batch_size"]))
    torch.save(checkpoint, path)


def test_old_style_checkpoint_evaluates_and_resumes(cli, tmp_path):
    run = tmp_path / cli("train", "mlp", "--epochs", "1", *QUICK, "--quiet")[1].strip()
    make_old_style(run / "last.pt")
    assert "mode" in load(run / "last.pt")["train"]["config"]
    # --split val: training validated on a --limit'ed share of the test split, which --split val draws again
    code, out, err = cli("evaluate", run / "last.pt", "--split", "val", "--json")
    assert code == 0, err
    assert json.loads(out)["accuracy"] == pytest.approx(load(run / "last.pt")["train"]["history"][-1]["val_acc"])
    code, out, err = cli("train", "--resume", run, "--epochs", "2", "--json")
    assert code == 0, err
    assert json.loads(out)["epochs"] == 2
    config = load(run / "last.pt")["train"]["config"]
    assert (config["command"], config["finetune_mode"]) == ("train", None) and "mode" not in config


@pytest.mark.parametrize("key, value", [("command", "export"), ("finetune_mode", "train"), ("mode", "features2")])
def test_checkpoint_with_an_unknown_command_or_mode_is_refused(cli, tmp_path, key, value):
    run = tmp_path / cli("train", "perceptron", "--epochs", "1", *QUICK, "--quiet")[1].strip()
    checkpoint = load(run / "last.pt")
    checkpoint["train"]["config"][key] = value
    torch.save(checkpoint, run / "last.pt")
    code, out, err = cli("train", "--resume", run)
    assert f"train.config.{key}" in assert_clean_failure(code, err)[0]


def test_sigint_saves_and_resume_finishes_identically(tmp_path):
    args = ["train", "cnn-dropout", "--epochs", "4", "--limit", "2000", "--batch-size", "32", "--augment", "flip,crop"]
    straight = run_cnnkit(*args, "--name", "straight", "--quiet", cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "cnnkit", *args, "--name", "cut"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # wait for epoch 1 to end, then interrupt a later one
        if line.startswith("epoch 1/4"):
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "resume with: cnnkit train --resume" in err
    assert "Traceback" not in err
    saved = load(tmp_path / "checkpoints/cut/last.pt")["train"]
    assert 1 <= saved["epoch"] < 4 and saved["step_in_epoch"] > 0

    resumed = run_cnnkit("train", "--resume", "checkpoints/cut", "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_weights(tmp_path / "checkpoints/straight/last.pt", tmp_path / "checkpoints/cut/last.pt")


class _RunsCode:
    """Unpickling this (unsafely) would create a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoint_that_would_run_code_is_refused(cli, tmp_path):
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pt"
    torch.save({"format": "cnnkit.checkpoint", "payload": _RunsCode(marker)}, evil)
    code, out, err = cli("train", "--resume", str(evil))
    assert "pickled code" in assert_clean_failure(code, err)[0]
    assert not marker.exists()
    with evil.open("rb") as f:  # the file really does run code when unpickled unsafely
        torch.load(f, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("kind", ["truncated", "state_dict", "foreign", "text"])
def test_bad_checkpoints_are_refused(cli, tmp_path, kind):
    path = tmp_path / f"{kind}.pt"
    if kind in ("truncated", "state_dict"):
        run = cli("train", "perceptron", "--epochs", "1", *QUICK, "--quiet")[1].strip()
        good = tmp_path / run / "last.pt"
        if kind == "truncated":
            path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
        else:
            torch.save(load(good)["model"]["state_dict"], path)
    elif kind == "foreign":
        torch.save({"epoch": 3, "weights": [1, 2, 3]}, path)
    else:
        path.write_text("not a checkpoint\n")
    code, out, err = cli("train", "--resume", str(path))
    assert_clean_failure(code, err)
    if kind == "state_dict":
        assert "state_dict" in err and "--weights" in err


@pytest.mark.parametrize(
    "args,code,text",
    [
        (["--epochs", "0"], 2, "epochs"),
        (["--epochs", "-3"], 2, "epochs"),
        (["--batch-size", "0"], 2, "batch-size"),
        (["--lr", "0"], 2, "lr"),
        (["--lr", "-0.1"], 2, "lr"),
        (["--val-split", "1.5"], 2, "val-split"),
        (["--optimizer", "lion"], 2, "optimizer"),
        (["--augment", "flip,shear"], 2, "shear"),
        (["--device", "cuda:7"] if not torch.cuda.is_available() else ["--device", "tpu"], 2, "device"),
        (["--dataset", "mnits"], 1, "mnist"),
    ],
)
def test_bad_options(cli, args, code, text):
    exit_code, out, err = cli("train", "lenet", *args)
    assert_clean_failure(exit_code, err, code)
    assert text in err


def test_unknown_model_lists_close_matches(cli):
    code, out, err = cli("train", "resnet81")
    error, hint = assert_clean_failure(code, err)
    assert error == "error: unknown model 'resnet81'"
    assert "resnet18" in hint


def test_missing_catalog_dataset_points_at_download(tmp_path):
    started = time.monotonic()
    result = run_cnnkit("train", "lenet", "--dataset", "fashion-mnist", "--data-dir", str(tmp_path / "empty"), cwd=tmp_path,
                        env={"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"})
    assert time.monotonic() - started < 60
    assert_clean_failure(result.returncode, result.stderr)
    assert "cnnkit download fashion-mnist" in result.stderr and "--from" in result.stderr


def test_unwritable_output_is_an_error_before_training(cli, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("a file where a directory is expected\n")
    code, out, err = cli("train", "perceptron", "--out", str(blocker))
    assert "cannot write to run directory" in assert_clean_failure(code, err)[0]
    assert blocker.read_text() == "a file where a directory is expected\n"


def test_help_does_not_import_torch():
    code = (
        "import sys\nfrom cnnkit.cli import app\n"
        "for args in (['--help'], ['train', '--help']):\n"
        "    try:\n        app(args, prog_name='cnnkit')\n    except SystemExit:\n        pass\n"
        "print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip().splitlines()[-1] == "False"
    assert "train" in result.stdout and "--resume" in result.stdout


def test_error_messages_keep_brackets(cli, tmp_path):
    odd = tmp_path / "[runs]"
    odd.mkdir()
    code, out, err = cli("train", "--resume", str(odd))
    assert "[runs]" in assert_clean_failure(code, err)[0]


@pytest.mark.parametrize("preset,expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_openmp_threads_sleep_unless_the_user_says_otherwise(preset, expected):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset:
        env["OMP_WAIT_POLICY"] = preset
    code = "import os, cnnkit; print(os.environ['OMP_WAIT_POLICY'])"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.stdout.strip() == expected


def test_amp_runs_bf16_autocast_on_the_cpu(tmp_path):
    from cnnkit.engine.config import TrainConfig
    from cnnkit.reporting import Reporter
    from cnnkit.engine.setup import prepare
    from cnnkit.engine.trainer import Trainer

    dtypes = set()
    for amp in (True, False):  # --amp and --no-amp (the CPU default follows the CPU: tests/test_amp_default.py)
        config = TrainConfig(model="cnn", epochs=1, limit=512, amp=amp,  # 8 steps: the 121,514-parameter cnn learns in them
                              device="cpu", out=str(tmp_path), name=f"amp-{amp}")
        setup = prepare(config, Reporter(quiet=True))
        conv = next(m for m in setup.model.modules() if isinstance(m, torch.nn.Conv2d))
        hook = conv.register_forward_hook(lambda module, args, out: dtypes.add((amp, out.dtype)))
        summary = Trainer(setup, Reporter(quiet=True)).fit()
        hook.remove()
        assert summary["train_loss"] == summary["train_loss"] and summary["val_acc"] > 0.2  # finite, and it learned
    assert dtypes == {(True, torch.bfloat16), (False, torch.float32)}
