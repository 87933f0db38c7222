"""torchrun + DistributedDataParallel on CPU with gloo: accuracy, exact resume, reduced metrics, failures, two nodes, finetune."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cnnkit.data.batches import make_batches
from cnnkit.data.dataset import train_val_splits
from cnnkit.data.resolve import load_dataset
from cnnkit.engine.checkpoint import load_checkpoint, model_from_checkpoint, transform_from_checkpoint
from cnnkit.engine.config import eval_batch_size, recorded_config
from cnnkit.engine.evaluation import run_evaluation

from conftest import run_cnnkit

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")

# A constant learning rate, so a run resumed with a larger --epochs follows the same schedule.
# --val-limit 2000: the whole test split, which --limit alone would shrink in proportion (to 1000)
TRAIN = ["train", "mlp", "--limit", "4000", "--val-limit", "2000", "--schedule", "none", "--lr", "0.001", "--augment", "flip"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args, cwd: Path, nproc: int = 2, extra=(), timeout: int = 300, wait: bool = True):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), *extra, "-m", "cnnkit", *map(str, args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    if not any(e.startswith("--rdzv") for e in extra):
        command[3:3] = ["--master-port", str(free_port())]
    if not wait:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]["state_dict"]


def val_acc(run: Path) -> float:
    return float(list(csv.DictReader((run / "metrics.csv").open()))[-1]["val_acc"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One straight 2-process run, one 1-epoch run resumed to 2, and a 1-process run at the same global batch."""
    root = tmp_path_factory.mktemp("ddp")
    straight = torchrun(*TRAIN, "--epochs", "3", "--batch-size", "32", "--name", "straight", "--quiet", cwd=root)
    assert straight.returncode == 0, straight.stderr[-3000:]
    first = torchrun(*TRAIN, "--epochs", "2", "--batch-size", "32", "--name", "split", "--quiet", cwd=root)
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = torchrun("train", "--resume", "checkpoints/split", "--epochs", "3", "--quiet", cwd=root)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    single = run_cnnkit(*TRAIN, "--epochs", "3", "--batch-size", "64", "--name", "single", "--quiet", cwd=root)
    assert single.returncode == 0, single.stderr[-3000:]
    return root / "checkpoints", straight


def test_only_rank_zero_prints_and_writes(runs):
    root, straight = runs
    assert straight.stdout.strip().splitlines() == ["checkpoints/straight"]
    assert sorted(p.name for p in root.iterdir()) == ["single", "split", "straight"]
    assert sum(1 for _ in (root / "straight").glob("*.pt")) == 2


def test_accuracy_matches_a_single_process_run(runs):
    root, _ = runs
    assert abs(val_acc(root / "straight") - val_acc(root / "single")) <= 0.01


def test_checkpoint_loads_in_one_process_and_validation_is_whole_split(runs):
    root, _ = runs
    ckpt = load_checkpoint(root / "straight", prefer="last")
    assert ckpt["train"]["world_size"] == 2 and len(ckpt["train"]["rng_ranks"]) == 2
    assert not any(k.startswith("module.") for k in ckpt["model"]["state_dict"])
    model = model_from_checkpoint(ckpt)
    config = recorded_config(ckpt)
    dataset = load_dataset(ckpt["data"]["spec"])
    _, val, _ = train_val_splits(dataset, config.val_split, config.seed)
    batches = make_batches(val, channels=dataset.channels, size=dataset.size, device=torch.device("cpu"),
                           batch_size=eval_batch_size(config.batch_size), shuffle=False)
    result = run_evaluation(model, batches, transform_from_checkpoint(ckpt, "cpu"), 10, device=torch.device("cpu"))
    assert result.count == 2000
    assert abs(result.accuracy - ckpt["train"]["history"][-1]["val_acc"]) < 1e-9


def test_resume_under_torchrun_is_exact(runs):
    root, _ = runs
    a, b = state(root / "straight" / "last.pt"), state(root / "split" / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_dead_rank_stops_the_run_and_keeps_the_checkpoint(tmp_path):
    log = tmp_path / "stderr.log"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port()),
               "-m", "cnnkit", "train", "mlp", "--epochs", "50", "--limit", "1000", "--batch-size", "8", "--name", "dies"]
    with log.open("w") as err:  # a file, not a pipe: a full pipe would stall the survivors
        proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        deadline = time.monotonic() + 180
        while "epoch 1/50" not in log.read_text() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        victim = max(int(pid) for pid in workers)  # the agent's children are the ranks; the youngest is rank 1
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        proc.wait(timeout=120)
    assert proc.returncode != 0
    assert time.monotonic() - killed_at < 30, "the surviving rank did not stop promptly"
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "dies", prefer="last")
    assert ckpt["train"]["epoch"] >= 1
    model_from_checkpoint(ckpt)


def test_two_nodes_on_one_machine(tmp_path):
    port = free_port()
    extra = ["--nnodes", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "cnnkit-test"]
    nodes = [torchrun("train", "mlp", "--epochs", "1", "--limit", "1000", "--quiet", cwd=tmp_path, nproc=1, extra=extra, wait=False)
             for _ in range(2)]
    outputs = [node.communicate(timeout=240) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], [err[-2000:] for _, err in outputs]
    printed = [out.strip() for out, _ in outputs if out.strip()]
    assert printed == ["checkpoints/mlp-mnist-sample"]
    ckpt = load_checkpoint(tmp_path / printed[0], prefer="last")
    assert ckpt["train"]["world_size"] == 2


def test_finetune_under_torchrun_writes_one_run_and_shards_the_batches(tmp_path):
    import torchvision
    from PIL import Image

    weights = tmp_path / "resnet18-random.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    colours = {"red": (200, 30, 30), "blue": (30, 30, 200)}
    for split, count in (("train", 4), ("test", 1)):
        for name, colour in colours.items():
            (tmp_path / "tiny" / split / name).mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (16, 16), tuple(c + 5 * i for c in colour)).save(tmp_path / "tiny" / split / name / f"{i}.png")
    done = torchrun("finetune", "resnet18", "--weights", weights, "--dataset", tmp_path / "tiny", "--limit", "8",
                    "--head-epochs", "1", "--unfreeze-epochs", "1", "--batch-size", "2", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)  # one document: only rank 0 prints
    assert (summary["processes"], summary["global_batch"]) == (2, 4)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["resnet18-tiny"]
    ckpt = load_checkpoint(tmp_path / "checkpoints" / "resnet18-tiny", prefer="last")
    assert ckpt["train"]["world_size"] == 2 and len(ckpt["train"]["rng_ranks"]) == 2
    # 8 images, 2 per batch: each rank's shard of 4 is 2 batches an epoch (4 if every rank trained on all of them).
    assert ckpt["train"]["global_step"] == 2 * 2
    # The unfreeze phase trained the backbone too, the same on both ranks (rank 0's weights are the checkpoint's).
    assert not torch.equal(ckpt["model"]["state_dict"]["conv1.weight"], torch.load(weights, weights_only=True)["conv1.weight"])
