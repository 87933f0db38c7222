"""Case 4: ResNet18 and MobileNetV2 at 224x224, training and inference images/s.

Both loops use the same batch size and the same synthetic 224x224 RGB images.
The seed loop is the transfer-learning tutorial's: PIL -> ToTensor ->
Normalize per image in a DataLoader, SGD, fp32. cnnkit trains with its
defaults through its engine (on CUDA that means bf16 autocast and
channels_last, switched on automatically) and infers through the evaluation
path `cnnkit evaluate` uses. On a CPU only a handful of batches run: 224 px
is slow on 2 cores, and the ratio, not the absolute figure, is the point.
"""

from __future__ import annotations

import time

import torch

from common import seed_style_evaluate, seed_style_train, synthetic_idx_dir
from harness import (Context, PeakMemory, Row, cnnkit_train, compile_verdict, compiled_run, interleaved, median, mib,
                     rate_text, ratio_text, target_note, train_seconds)

from cnnkit.data.batches import make_batches
from cnnkit.data.dataset import TensorSplit
from cnnkit.data.idx import read_idx
from cnnkit.engine.config import TrainConfig
from cnnkit.engine.evaluation import run_evaluation
from cnnkit.engine.config import eval_batch_size
from cnnkit.models import get_model

MODELS = ("resnet18", "mobilenet_v2")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def sizes(ctx: Context) -> tuple[int, int, int]:
    """(images, batch size, cnnkit epochs): on a GPU a warm-up epoch first, then the measured one."""
    if ctx.device.type == "cuda":
        return 4096, 256, 2
    return (32, 16, 1) if ctx.quick else (96, 32, 1)


def case(ctx: Context) -> list[Row]:
    n, batch, epochs = sizes(ctx)
    device = ctx.device
    data = synthetic_idx_dir(ctx.tmp / "photos-224", n, (224, 224, 3))
    images, labels = read_idx(data / "train-images-idx3-ubyte"), read_idx(data / "train-labels-idx1-ubyte")
    eval_split = TensorSplit(torch.from_numpy(images.copy()).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels.copy()).long())
    eval_batch = eval_batch_size(batch)
    rounds = 1 if ctx.quick else ctx.rounds
    rows = []
    for name in MODELS:
        def seed() -> dict:
            torch.manual_seed(0)
            model = get_model(name, in_channels=3, num_classes=10, image_size=224).to(device)
            with PeakMemory(device) as memory:
                train_rate = seed_style_train(model, images, labels, batch_size=batch, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                                              device=device)
                if device.type == "cuda":  # the first pass at a new batch shape pays for cuDNN's set-up
                    seed_style_evaluate(model, images, labels, batch_size=eval_batch, mean=IMAGENET_MEAN, std=IMAGENET_STD, device=device)
                _, infer_rate = seed_style_evaluate(model, images, labels, batch_size=eval_batch, mean=IMAGENET_MEAN,
                                                    std=IMAGENET_STD, device=device)
            return {"train": train_rate, "infer": infer_rate, "peak": memory.peak}

        config = TrainConfig(model=name, dataset=str(data), epochs=epochs, batch_size=batch, out=str(ctx.tmp / "runs"),
                             device=str(device))

        def ours() -> dict:
            run = cnnkit_train(config, device)
            setup = run.trainer.s
            batches = make_batches(eval_split, channels=3, size=(224, 224), batch_size=eval_batch, device=device, shuffle=False)
            with PeakMemory(device) as memory:
                for _ in range(2 if device.type == "cuda" else 1):  # on CUDA the second pass is the one timed
                    started = time.perf_counter()
                    result = run_evaluation(setup.model, batches, setup.transform, setup.num_classes, device=device,
                                            amp=setup.amp, k=1)
                    infer_rate = result.count / (time.perf_counter() - started)
            return {"train": run.rate, "infer": infer_rate, "peak": max(run.peak, memory.peak),
                    "train_s": train_seconds(run), "amp": setup.amp,
                    "channels_last": getattr(setup.transform, "channels_last", False)}

        results = interleaved({"seed": seed, "cnnkit": ours}, rounds)
        seed_mem, our_mem = mib(median(results["seed"], "peak")), mib(median(results["cnnkit"], "peak"))
        for kind in ("train", "infer"):
            theirs, mine = median(results["seed"], kind), median(results["cnnkit"], kind)
            label = f"4. {name} 224px {'training' if kind == 'train' else 'inference'}, batch {batch if kind == 'train' else eval_batch}"
            rows.append(Row(label, rate_text(theirs), rate_text(mine), ratio_text(mine, theirs), seed_mem=seed_mem, cnnkit_mem=our_mem))
        last = results["cnnkit"][-1]
        rows[-2].notes.append(f"{n} images; cnnkit amp (bf16) {'on' if last['amp'] else 'off'}, channels_last "
                              f"{'on' if last['channels_last'] else 'off'}; seed fp32"
                              + ("; cnnkit's rate is its second epoch (the first warms cuDNN up)" if epochs > 1 else ""))
        if device.type == "cuda" and name == "resnet18":
            rows[-2].notes.append(target_note(median(results["cnnkit"], "train"), 10000,
                                              "ResNet18 training at least 10,000 img/s (bf16, channels_last)"))
        if ctx.compile:
            rows[-2].compiled = compile_verdict(median(results["cnnkit"], "train_s"), lambda: compiled_run(config, device),
                                                median(results["cnnkit"], "train"))
    return rows
