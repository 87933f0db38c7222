"""Case 2: tutorial 000's MNIST `cnn` (5x5 convs 16 | 32, 32 | 64, padding 2: 121,514 parameters,
10.41 M mult-adds) on MNIST-shaped data.

The seed loop is the MNIST tutorial's recipe: Adam lr 1e-3 at batch 64, with
Normalize((0.1307,), (0.3081,)) per image. cnnkit trains with its defaults
(AdamW, one-cycle, lr 5e-3, batch 64). One epoch each, same synthetic images.
"""

from __future__ import annotations

import torch

from common import seed_style_train, synthetic_idx_dir
from harness import (Context, PeakMemory, Row, cnnkit_train, compile_verdict, compiled_run, interleaved, median, mib,
                     rate_text, ratio_text, target_note, train_seconds)

from cnnkit.data.idx import read_idx
from cnnkit.engine.config import TrainConfig
from cnnkit.models import get_model

SEED_BATCH = 64
SEED_LR = 1e-3
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)


def case(ctx: Context) -> list[Row]:
    n = 60000 if ctx.device.type == "cuda" else (3000 if ctx.quick else 10000)
    data = synthetic_idx_dir(ctx.tmp / "mnist-shaped", n, (28, 28))
    images, labels = read_idx(data / "train-images-idx3-ubyte"), read_idx(data / "train-labels-idx1-ubyte")
    device = ctx.device

    def seed() -> dict:
        torch.manual_seed(0)
        model = get_model("cnn", in_channels=1, num_classes=10, image_size=28).to(device)
        with PeakMemory(device) as memory:
            rate = seed_style_train(model, images, labels, batch_size=SEED_BATCH, lr=SEED_LR, optimizer="adam",
                                    mean=MNIST_MEAN, std=MNIST_STD, device=device)
        return {"rate": rate, "peak": memory.peak}

    config = TrainConfig(model="cnn", dataset=str(data), epochs=1, out=str(ctx.tmp / "runs"), device=str(device))

    def ours() -> dict:
        result = cnnkit_train(config, device)
        return {"rate": result.rate, "peak": result.peak, "train_s": train_seconds(result)}

    results = interleaved({"seed": seed, "cnnkit": ours}, ctx.rounds)
    seed_rate, our_rate = median(results["seed"], "rate"), median(results["cnnkit"], "rate")
    row = Row("2. MNIST cnn, MNIST-shaped, batch 64", rate_text(seed_rate), rate_text(our_rate), ratio_text(our_rate, seed_rate),
              seed_mem=mib(median(results["seed"], "peak")), cnnkit_mem=mib(median(results["cnnkit"], "peak")))
    row.notes.append(f"{n:,} images, 1 epoch; seed: Adam 1e-3, batch 64; cnnkit: its defaults "
                     f"({TrainConfig().optimizer}, {TrainConfig().schedule}, lr {TrainConfig().lr:g}, batch {TrainConfig().batch_size})")
    goal = 30 if device.type == "cuda" else 3
    row.notes.append(target_note(our_rate / seed_rate, goal, f"at least {goal}x the seed loop"))
    if ctx.compile:
        row.compiled = compile_verdict(median(results["cnnkit"], "train_s"), lambda: compiled_run(config, device), our_rate)
    return [row]
