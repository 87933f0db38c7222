"""Run directories: --name is one folder name, folders are made atomically, never taken over, and locked.

Also `--resume`: it continues only a run cnnkit wrote, in that run's directory, and refuses the options it
could not apply instead of dropping them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import assert_clean_failure, digests, write_digits_idx

TRAIN = ["perceptron", "--epochs", "1", "--batch-size", "32", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    """128 training and 32 test digits of the shipped MNIST sample, as an IDX directory."""
    return write_digits_idx(tmp_path_factory.mktemp("digits"), train=128, test=32)


@pytest.fixture(scope="module")
def finished(digits, tiny_run) -> Path:
    return tiny_run("perceptron", dataset=digits, limit=None, val_split=None, batch_size=32, name="one", schedule="none")


@pytest.fixture
def run(finished, tmp_path) -> Path:
    return Path(shutil.copytree(finished, tmp_path / "runs" / "one"))


@pytest.fixture
def held():
    """Hold run directories' locks as another cnnkit process does: flock on run/.lock (flock conflicts
    between open files even within one process)."""
    import fcntl

    taken = []

    def hold(run: Path) -> None:
        fd = os.open(run / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        taken.append(fd)

    yield hold
    for fd in taken:
        os.close(fd)


# ---- --name ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../x", "ABS", "a/b", ".", "..", ""])
def test_name_is_one_folder_name(cli, digits, tmp_path, name):
    deep = tmp_path / "work" / "deeper"
    deep.mkdir(parents=True)
    os.chdir(deep)
    name = str(tmp_path / "abs") if name == "ABS" else name
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code, _, err = cli("train", *TRAIN, "--dataset", digits, "--out", "runs", "--name", name)
    assert "--name" in assert_clean_failure(code, err, expected_code=2)[0]
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written anywhere


def test_existing_folder_without_a_run_is_never_written_into(cli, digits, tmp_path):
    mine = tmp_path / "runs" / "mine"
    mine.mkdir(parents=True)
    for name in ("config.json", "metrics.csv", "best.pt"):
        (mine / name).write_text(f"my own {name}\n")
    precious = tmp_path / "precious"
    precious.write_bytes(b"keep me\n" * 100)
    (mine / ".write-test").symlink_to(precious)
    before = digests(tmp_path)
    code, _, err = cli("train", *TRAIN, "--dataset", digits, "--out", tmp_path / "runs", "--name", "mine")
    lines = assert_clean_failure(code, err)
    assert "already exists and is not empty" in lines[0] and "--name" in lines[1]
    assert digests(tmp_path) == before
    assert sorted(p.name for p in mine.iterdir()) == [".write-test", "best.pt", "config.json", "metrics.csv"]


def test_existing_run_is_pointed_to_resume(cli, digits, run):
    before = digests(run)
    code, _, err = cli("train", *TRAIN, "--dataset", digits, "--out", run.parent, "--name", run.name)
    lines = assert_clean_failure(code, err)
    assert "already holds a run" in lines[0] and f"--resume {run}" in lines[1]
    assert digests(run) == before


def test_empty_existing_folder_may_be_used(cli, digits, tmp_path):
    """Base already allows this; kept so the stricter rule does not refuse an empty folder."""
    (tmp_path / "runs" / "fresh").mkdir(parents=True)
    code, out, err = cli("train", *TRAIN, "--dataset", digits, "--out", tmp_path / "runs", "--name", "fresh")
    assert code == 0, err
    assert Path(out.strip().splitlines()[-1]) == tmp_path / "runs" / "fresh"
    assert sorted(p.name for p in (tmp_path / "runs" / "fresh").iterdir()) == [
        "best.pt", "config.json", "curves.png", "last.pt", "metrics.csv", "report.html"]  # the lock is gone with its holder


# ---- created atomically, locked while training --------------------------------------------------


def test_runs_started_together_get_different_folders(tmp_path):
    """The first run's folder is still empty while it loads data: the second must not take it."""
    from cnnkit.engine.rundir import new_run_dir, release_run_lock

    first = new_run_dir(tmp_path, "lenet", "digits", None)
    try:
        second = new_run_dir(tmp_path, "lenet", "digits", None)
        release_run_lock(second)
    finally:
        release_run_lock(first)
    assert first == tmp_path / "lenet-digits" and second == tmp_path / "lenet-digits-2"


def test_second_writer_of_a_run_is_refused_and_its_temporaries_kept(cli, run, held):
    held(run)  # another process is training in it...
    writing = run / ".last.pt.1a2b3c4d.tmp"  # ...and is half-way through writing a checkpoint
    writing.write_bytes(b"half a checkpoint")
    before = digests(run)
    code, _, err = cli("train", "--resume", run, "--epochs", "2")
    lines = assert_clean_failure(code, err)
    assert "in use by another cnnkit process" in lines[0]
    assert digests(run) == before and writing.exists()


def test_same_name_while_another_run_holds_the_empty_folder(cli, digits, tmp_path, held):
    folder = tmp_path / "runs" / "shared"
    folder.mkdir(parents=True)
    held(folder)
    code, _, err = cli("train", *TRAIN, "--dataset", digits, "--out", tmp_path / "runs", "--name", "shared")
    assert "in use by another cnnkit process" in assert_clean_failure(code, err)[0]
    assert [p.name for p in folder.iterdir()] == [".lock"]


def test_kill_9_leaves_no_stale_lock(cli, run):
    """flock belongs to the process: once the holder is killed, the run can be resumed at once."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from cnnkit.engine.rundir import lock_run_dir; "
         "lock_run_dir(Path(sys.argv[1])); print('locked', flush=True); time.sleep(60)", str(run)],
        stdout=subprocess.PIPE, text=True, cwd=run.parent)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, _, err = cli("train", "--resume", run, "--epochs", "2")
        assert "in use" in assert_clean_failure(code, err)[0]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    code, _, err = cli("train", "--resume", run, "--epochs", "2", "--quiet")
    assert code == 0, err
    assert not (run / ".lock").exists()


# ---- --resume -------------------------------------------------------------------------------


def test_resume_of_a_checkpoint_outside_its_run_directory_writes_nothing_there(cli, run, tmp_path):
    downloads = tmp_path / "Downloads"
    downloads.mkdir()
    shutil.copy(run / "last.pt", downloads / "model.pt")
    (downloads / "notes.txt").write_text("mine\n")
    before = digests(downloads)
    code, _, err = cli("train", "--resume", downloads / "model.pt", "--epochs", "2")
    lines = assert_clean_failure(code, err)
    assert "model.pt" in lines[0] and "run" in lines[0]
    assert digests(downloads) == before and sorted(p.name for p in downloads.iterdir()) == ["model.pt", "notes.txt"]


@pytest.mark.parametrize("command", ["train", "finetune"])
def test_resume_refuses_options_it_cannot_apply(cli, run, command):
    before = digests(run)
    code, _, err = cli(command, "--resume", run, "--epochs", "2", "--dataset", "cifar10", "--lr", "0.5",
                       "-b", "3", "--optimizer", "sgd", "--out", "elsewhere", "--name", "other")
    lines = assert_clean_failure(code, err, expected_code=2)
    for option in ("--dataset", "--lr", "--batch-size", "--optimizer", "--out", "--name"):
        assert option in lines[0], option
    assert "--epochs" not in lines[0]  # it may change: the hint says so
    assert "--epochs" in lines[1] and "--device" in lines[1] and "--workers" in lines[1] and "--auto-batch" in lines[1]
    assert digests(run) == before and not Path("elsewhere").exists()


def test_resume_takes_the_options_that_may_change_and_ignores_the_environment(cli, run, monkeypatch):
    """--epochs/--device/--workers/--auto-batch change a resumed run; an exported CNNKIT_DATA is no request."""
    monkeypatch.setenv("CNNKIT_DATA", "/nowhere")
    code, _, err = cli("train", "--resume", run, "--epochs", "2", "--device", "cpu", "--workers", "0", "--quiet")
    assert code == 0, err
    assert (run / "metrics.csv").read_text().count("\n") == 3  # header and two epochs
