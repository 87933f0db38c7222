"""Faults: kill -9 at random moments, Ctrl-C during feature caching, a full disk, read-only places.

Ctrl-C during training, download and export-idx is tested beside those
commands (test_train, test_download, test_export_idx); this module covers the
rest of the issue's fault list.
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cnnkit.data.cache import cache_root
from cnnkit.engine.checkpoint import load_checkpoint, model_from_checkpoint
from cnnkit.engine.config import TrainConfig
from cnnkit.reporting import Reporter
from conftest import assert_clean_failure, digests, write_digits_idx
from hostile import make_read_only

EPOCHS = 3


@pytest.fixture(scope="module")
def small_idx(tmp_path_factory) -> Path:
    """256 training and 64 test digits from the shipped MNIST sample, as an IDX directory."""
    return write_digits_idx(tmp_path_factory.mktemp("digits"), train=256, test=64)


# How the kill -9 runs and the finished run below train: every image of the dataset, its test split validates.
RUN_SETTINGS = dict(model="perceptron", batch_size=16, schedule="none", seed=3)


def tiny_config(dataset: Path, out: Path, name: str, epochs: int = EPOCHS) -> TrainConfig:
    return TrainConfig(**RUN_SETTINGS, dataset=str(dataset), epochs=epochs, out=str(out), name=name, device="cpu")


# ---- kill -9 ---------------------------------------------------------------------------------


def _train_or_resume(config: TrainConfig) -> None:
    """The child: start the run, or resume it if a checkpoint is there (what a user does after a crash)."""
    from cnnkit.engine.runner import resume_training, start_training

    # One core: cnnkit sizes its thread pool to the usable cores, and an OpenMP pool inherited through
    # fork hangs; one thread also gives every child the same arithmetic.
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    run = Path(config.out) / config.name
    if (run / "last.pt").exists():
        resume_training(run, Reporter(quiet=True))
    else:
        start_training(config, Reporter(quiet=True))


def _run_child(config: TrainConfig, kill_after: float | None) -> int:
    """Fork a child that trains; SIGKILL it if it is still running after `kill_after` seconds."""
    process = multiprocessing.get_context("fork").Process(target=_train_or_resume, args=(config,))
    process.start()
    process.join(kill_after)
    if process.is_alive():
        os.kill(process.pid, signal.SIGKILL)
        process.join()
    return process.exitcode


def assert_finished_like(run: Path, straight: Path) -> None:
    final = load_checkpoint(run, prefer="last")
    assert final["train"]["epoch"] == EPOCHS
    rows = (run / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == [str(e) for e in range(1, EPOCHS + 1)]
    # Checkpoints are written at epoch ends and resume is exact: a killed run ends where the straight one did.
    reference = load_checkpoint(straight, prefer="last")["model"]["state_dict"]
    for key, value in final["model"]["state_dict"].items():
        assert torch.equal(value, reference[key]), key


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="pins forked children to one core (Linux)")
def test_kill_9_at_random_moments_never_loses_the_checkpoint_and_resume_finishes(small_idx, tmp_path):
    import matplotlib.pyplot  # noqa: F401  imported here once, so forked children start warm

    import cnnkit.engine.runner  # noqa: F401

    out = tmp_path / "runs"
    started = time.monotonic()
    assert _run_child(tiny_config(small_idx, out, "straight"), None) == 0
    uninterrupted = time.monotonic() - started
    rng = random.Random(20)
    runs, kills, found = 1, 0, 0
    run, finished = out / "killed-1", [out / "straight"]
    for attempt in range(80):  # bounded: a child that never dies in time must not hang the suite
        if kills >= 20:
            break
        if run.exists() and not (run / "last.pt").exists() and any(p.name != ".lock" for p in run.iterdir()):
            # Killed before its first checkpoint: nothing to resume, and cnnkit takes no folder that holds
            # files over, so a user starts again under a new name.
            runs += 1
            run = out / f"killed-{runs}"
        # Anywhere from start-up to the end of a whole run: kills land while the data loads, while it
        # trains and validates, and in the middle of checkpoint, metrics and curve writes.
        code = _run_child(tiny_config(small_idx, out, run.name), rng.uniform(0.02, 0.45 * uninterrupted))
        if code == 0:  # this run reached its end between kills: check it, then kill a fresh one
            assert_finished_like(run, out / "straight")
            finished.append(run)
            runs += 1
            run = out / f"killed-{runs}"
            continue
        assert code == -signal.SIGKILL, f"the child failed on its own (exit {code})"
        kills += 1
        epochs = []
        for name in ("last.pt", "best.pt"):
            if (run / name).exists():  # once written, a checkpoint is always there and always whole
                checkpoint = load_checkpoint(run / name)
                model_from_checkpoint(checkpoint)
                epochs.append(checkpoint["train"]["epoch"])
        found += bool(epochs)
    assert kills >= 20
    print(f"{kills} kills over {runs} run(s), {found} found a checkpoint; uninterrupted run {uninterrupted:.1f}s")
    assert found >= 5, "too few kills came late enough to find a checkpoint"

    if run.exists() and not (run / "last.pt").exists() and any(p.name != ".lock" for p in run.iterdir()):
        run = out / f"killed-{runs + 1}"
    assert _run_child(tiny_config(small_idx, out, run.name), None) == 0
    assert_finished_like(run, out / "straight")
    finished.append(run)
    # A kill in the middle of a write leaves a hidden temporary file (as big as a checkpoint); the next
    # resume of that run deletes it, and a run that ends lets go of its lock file.
    leftovers = [p.name for r in finished for p in r.iterdir() if p.name.startswith(".")]
    assert leftovers == []


# ---- a full disk -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_run(small_idx, tiny_run) -> Path:
    """A one-epoch run, finished in this process: last.pt, best.pt, metrics.csv, curves.png, config.json."""
    return tiny_run(dataset=small_idx, epochs=1, limit=None, val_split=None, name="one-epoch", **RUN_SETTINGS)


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


def disk_full_on_write(monkeypatch, how: str) -> None:
    """Writes of checkpoints fail half-way, as on a full disk.

    "oserror": the write raises OSError(ENOSPC), as a plain file write does.
    "torch": torch's zip writer raises its own RuntimeError ("unexpected pos"), as
    it does on a real full disk, and the file system reports no free space.
    """
    real_save = torch.save

    def save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.truncate(f.tell() // 2)  # half of it reached the disk (cnnkit hands torch the new file itself)
        if how == "oserror":
            raise OSError(errno.ENOSPC, "No space left on device")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    monkeypatch.setattr(torch, "save", save)
    if how == "torch":
        real_usage = shutil.disk_usage
        monkeypatch.setattr(shutil, "disk_usage", lambda p: real_usage(p)._replace(free=0))


@pytest.mark.parametrize("how", ["oserror", "torch"])
def test_full_disk_during_checkpoint_keeps_the_previous_one(cli, run_copy, monkeypatch, how):
    before = digests(run_copy)
    disk_full_on_write(monkeypatch, how)
    code, out, err = cli("train", "--resume", run_copy, "--epochs", "2")
    lines = assert_clean_failure(code, err, after_output=True)
    assert "the disk is full" in lines[0] and "last.pt" in lines[0]
    assert "previous files were left" in err
    after = digests(run_copy)
    assert {k: after[k] for k in ("run/last.pt", "run/best.pt")} == {k: before[k] for k in ("run/last.pt", "run/best.pt")}
    assert not [p for p in run_copy.iterdir() if p.name.startswith(".")], "a temporary file was left behind"
    monkeypatch.undo()
    assert load_checkpoint(run_copy, prefer="last")["train"]["epoch"] == 1


def test_full_disk_part_way_through_an_export_keeps_the_previous_export(cli, tmp_path, monkeypatch):
    """The third file of a --force export finds the disk full: the two before it must not be swapped in."""
    import cnnkit.fileio

    code, _, err = cli("export-idx", "mnist-sample", "--out", tmp_path / "idx", "--limit", "50")
    assert code == 0, err
    before = digests(tmp_path / "idx")
    real_write, calls = cnnkit.fileio.atomic_write_bytes, []

    def full_on_the_third(path, payload):
        calls.append(Path(path).name)
        if len(calls) < 3:
            return real_write(path, payload)
        with cnnkit.fileio.atomic_path(path) as tmp:
            tmp.write_bytes(payload[: len(payload) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cnnkit.fileio, "atomic_write_bytes", full_on_the_third)
    code, _, err = cli("export-idx", "mnist-sample", "--out", tmp_path / "idx", "--limit", "60", "--force")
    lines = assert_clean_failure(code, err)
    # True on both counts: the file named is the one the user asked for, and the previous export is whole.
    assert lines[0] == f"error: the disk is full: {tmp_path / 'idx' / calls[2]}"
    assert "previous files were left" in lines[1]
    assert digests(tmp_path / "idx") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"], "the temporary export folder was left behind"


@pytest.fixture
def small_tmpfs(tmp_path):
    """A real 1 MiB tmpfs, where this machine allows mounting one (root with CAP_SYS_ADMIN)."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    try:
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        result = None
    if result is None or result.returncode != 0:
        pytest.skip("cannot mount a tmpfs here; the patched-write tests above cover a full disk")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path, leave: int) -> None:
    """Fill the file system holding `directory` until about `leave` bytes remain."""
    free = shutil.disk_usage(directory).free
    with open(directory / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - leave))


def test_real_full_disk_during_checkpoint(cli, finished_run, small_tmpfs):
    run = Path(shutil.copytree(finished_run, small_tmpfs / "run"))
    before = digests(run)
    fill(small_tmpfs, leave=16 * 1024)  # room for config.json, not for a checkpoint
    code, _, err = cli("train", "--resume", run, "--epochs", "2")
    lines = assert_clean_failure(code, err, after_output=True)
    assert "the disk is full" in lines[0] and "last.pt" in lines[0]  # torch's own failure, named and translated
    after = digests(run)
    assert after["run/last.pt"] == before["run/last.pt"] and after["run/best.pt"] == before["run/best.pt"]
    (small_tmpfs / "filler").unlink()
    assert load_checkpoint(run, prefer="last")["train"]["epoch"] == 1


def test_real_full_disk_during_an_export(cli, small_tmpfs):
    out = small_tmpfs / "idx"
    code, _, err = cli("export-idx", "mnist-sample", "--out", out, "--limit", "50")
    assert code == 0, err
    before = digests(out)
    fill(small_tmpfs, leave=300 * 1024)  # room for the new train images (235 KB), not for the test split too
    code, _, err = cli("export-idx", "mnist-sample", "--out", out, "--limit", "300", "--force")
    lines = assert_clean_failure(code, err)
    assert lines[0].startswith(f"error: the disk is full: {out}/")
    assert digests(out) == before
    assert sorted(p.name for p in small_tmpfs.iterdir()) == ["filler", "idx"]


# ---- read-only places ------------------------------------------------------------------------
# Simulated with hostile.make_read_only (writes under a root fail with EROFS): as root, chmod stops nothing.


def test_read_only_run_root_fails_before_training(cli, small_idx, tmp_path, monkeypatch):
    make_read_only(monkeypatch, tmp_path / "ro")
    code, _, err = cli("train", "perceptron", "--dataset", small_idx, "--out", tmp_path / "ro" / "runs")
    lines = assert_clean_failure(code, err)
    assert "cannot write to run directory" in lines[0] and "Read-only file system" in lines[0]
    assert "epoch" not in err
    assert not (tmp_path / "ro").exists()


def test_read_only_run_directory_is_not_resumed(cli, run_copy, monkeypatch):
    before = digests(run_copy)
    make_read_only(monkeypatch, run_copy)
    code, _, err = cli("train", "--resume", run_copy, "--epochs", "2")
    assert "not writable" in assert_clean_failure(code, err)[0]
    assert "epoch" not in err
    assert digests(run_copy) == before


def test_read_only_data_root_without_the_dataset_is_an_error_before_training(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("CNNKIT_MIRROR", "http://127.0.0.1:9/")  # never the network: the check comes first
    (tmp_path / "ro").mkdir()
    make_read_only(monkeypatch, tmp_path / "ro")
    code, _, err = cli("train", "perceptron", "--dataset", "mnist", "--data-dir", tmp_path / "ro")
    lines = assert_clean_failure(code, err)
    assert "read-only" in lines[0].lower()
    assert "epoch" not in err and list((tmp_path / "ro").iterdir()) == []


def test_read_only_image_folder_still_trains_and_is_left_unchanged(cli, cifar_folder, tmp_path, monkeypatch):
    before = digests(cifar_folder)
    make_read_only(monkeypatch, cifar_folder)
    code, out, err = cli("train", "lenet", "--dataset", cifar_folder, "--epochs", "1", "--limit", "64",
                         "--out", tmp_path / "runs", "--quiet")
    assert code == 0, err
    assert digests(cifar_folder) == before  # no decode cache written into it, nothing changed
    assert (tmp_path / "runs").is_dir()


# ---- Ctrl-C during feature caching -----------------------------------------------------------


def test_ctrl_c_during_feature_extraction_exits_130_and_leaves_no_half_cache(pets_folder, tmp_path):
    import torchvision

    torch.manual_seed(0)
    weights = tmp_path / "mobilenet-random.pth"
    torch.save(torchvision.models.mobilenet_v2().state_dict(), weights)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("CNNKIT_DEBUG", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "cnnkit", "finetune", "mobilenet_v2", "--mode", "features", "--weights", str(weights),
         "--dataset", str(pets_folder), "--out", str(tmp_path / "runs"), "--batch-size", "8"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    )
    cache = cache_root()
    deadline = time.monotonic() + 120
    # The decoded images are cached first; the backbone runs over them next: interrupt it then.
    while not list(cache.glob("decoded-*.pt")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    features = list(cache.glob("features-*.pt"))
    assert not features, "the extraction was interrupted, yet a feature cache was written"
    assert not [p for p in cache.iterdir() if p.name.startswith(".")], "a temporary file was left behind"
    for decoded in cache.glob("decoded-*.pt"):  # the image cache written before the interrupt is whole
        assert torch.load(decoded, weights_only=True)["images"].dtype == torch.uint8
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("*.pt"))


def test_a_kill_between_last_pt_and_metrics_csv_is_healed_by_the_resume(tiny_run, tmp_path, cli):
    """last.pt is written before metrics.csv: a kill in between left the CSV an epoch short for good,
    since resuming a finished run trained nothing and wrote nothing. The checkpoint's history is the record."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run("perceptron", epochs=2), run)
    rows = (run / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3  # header and two epochs
    (run / "metrics.csv").write_text("\n".join(rows[:-1]) + "\n")  # what the kill left
    code, out, err = cli("train", "--resume", run, "--quiet")
    assert code == 0, err
    assert (run / "metrics.csv").read_text().splitlines() == rows
