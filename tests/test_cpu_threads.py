"""CPU training picks its intra-op thread count from the size of a step (cnnkit.engine.device)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cnnkit.engine.device import MACS_PER_THREAD, cpu_threads_for, forward_macs, usable_cores
from cnnkit.models import get_model

from conftest import run_cnnkit

# The CIFAR tutorial's LeNet, by hand: three 5x5 convs (to 28x28x6, 10x10x16, 1x1x120) and Linear 120->64->10.
LENET_MACS = 6 * 3 * 25 * 28 * 28 + 16 * 6 * 25 * 10 * 10 + 120 * 16 * 25 + 120 * 64 + 64 * 10


def test_forward_macs_counts_the_tutorial_lenet():
    model = get_model("lenet", in_channels=3, image_size=32)
    assert forward_macs(model, (14, 3, 32, 32)) == 14 * LENET_MACS


def test_counting_leaves_batchnorm_and_the_mode_alone():
    model = get_model("resnet18", in_channels=3, num_classes=10, image_size=64).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert forward_macs(model, (8, 3, 64, 64)) > 0
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("macs, wanted", [(9e6, 1), (MACS_PER_THREAD - 1, 1), (2 * MACS_PER_THREAD, 2), (1e12, None)])
def test_threads_follow_the_work_per_step(macs, wanted):
    assert cpu_threads_for(macs) == min(wanted or usable_cores(), usable_cores())


@pytest.mark.skipif(usable_cores() < 2, reason="needs two cores to have a choice")
@pytest.mark.parametrize("omp", [None, "2"])
def test_a_small_model_trains_on_one_thread_unless_the_user_chooses(omp, tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    env = {"OMP_NUM_THREADS": omp} if omp else None
    done = run_cnnkit("train", "lenet", "--epochs", "1", "--limit", "64", "--out", tmp_path, "--device", "cpu", env=env)
    assert done.returncode == 0, done.stderr
    config = json.loads((Path(done.stdout.strip().splitlines()[-1]) / "config.json").read_text())
    assert config["cpu_threads"] == (2 if omp else 1)  # LeNet at batch 64: 42M multiply-adds per forward pass
