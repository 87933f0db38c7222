"""Case 5: predict a folder of 1,000 JPEGs, cnnkit's batched predictor against one image at a time.

Both run in this process on the same trained checkpoint and the same files,
interleaved round by round. The reference is the seed tutorials' way: for each
image, PIL open -> torchvision transforms -> model -> softmax. cnnkit goes
through the core API that `cnnkit predict` uses (decode in a thread pool one
batch ahead, one forward pass per batch).

Run on its own, it also times a single-image `cnnkit predict` command against
`python -c "import torch, torchvision"`: the start-up cost a script pays.

    python benchmarks/predict_speed.py [--images 1000] [--size 32] [--checkpoint RUN_OR_PT] [--threads N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cnnkit  # noqa: F401  (first: it sets OpenMP's wait policy before torch loads, for both loops alike)
import numpy as np
import torch
from PIL import Image

from harness import Context, Row, interleaved, median, rate_text, ratio_text

REPO = Path(__file__).resolve().parent.parent
CIFAR_SAMPLE = REPO / "tests" / "data" / "cifar10-sample"
CASE = "5. cnnkit predict, 1,000 JPEGs"


def make_jpegs(folder: Path, count: int, size: int) -> list[Path]:
    """Synthetic photos: colour gradients with noise, so JPEG has something to decode."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 1, size)
    paths = []
    for i in range(count):
        base = rng.uniform(0, 255, 3)
        image = base * ramp[:, None, None] + (255 - base) * ramp[None, :, None]
        image = np.clip(image + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
        path = folder / f"{i:05d}.jpg"
        Image.fromarray(image).save(path, quality=90)
        paths.append(path)
    return paths


def train_checkpoint(tmp: Path, device: torch.device) -> Path:
    """A real LeNet checkpoint: one epoch on a copy of the CIFAR-10 sample shipped with the tests."""
    from cnnkit.engine.config import TrainConfig
    from cnnkit.reporting import Reporter
    from cnnkit.engine.runner import start_training

    data = tmp / "cifar10-sample"
    shutil.copytree(CIFAR_SAMPLE, data)  # the decode cache goes beside the data: not into tests/
    config = TrainConfig(model="lenet", dataset=str(data), epochs=1, out=str(tmp / "runs"), device=str(device))
    return Path(start_training(config, Reporter(quiet=True))["run_dir"]) / "best.pt"


def reference_loop(checkpoint: dict, paths: list[Path], top_k: int, device: torch.device, image_size: int) -> list:
    """One image at a time, as in the tutorials: PIL -> transforms -> model (Resize only when sizes differ)."""
    from torchvision import transforms

    from cnnkit.engine.checkpoint import model_from_checkpoint

    data = checkpoint["data"]
    size = data["input_size"][1]
    resize = [transforms.Resize((size, size))] if image_size != size else []
    transform = transforms.Compose([*resize, transforms.ToTensor(), transforms.Normalize(data["mean"], data["std"])])
    model = model_from_checkpoint(checkpoint).to(device)
    mode = "L" if data["channels"] == 1 else "RGB"
    results = []
    with torch.no_grad():
        for path in paths:
            with Image.open(path) as image:
                x = transform(image.convert(mode)).unsqueeze(0).to(device)
            values, indices = model(x).softmax(1).topk(top_k, dim=1)
            results.append((indices[0].tolist(), values[0].tolist()))
    return results


def cnnkit_batched(checkpoint: dict, paths: list[Path], top_k: int, batch_size: int, device: torch.device) -> list:
    from cnnkit.engine.predict import CheckpointClassifier, predict_files

    classifier = CheckpointClassifier(checkpoint, device)
    return list(predict_files(classifier, paths, top_k=top_k, batch_size=batch_size))


def timed(run) -> dict:
    started = time.perf_counter()
    run()
    return {"seconds": time.perf_counter() - started}


def measure(tmp: Path, device: torch.device, *, images: int = 1000, size: int = 32, batch_size: int = 64,
            top_k: int = 5, rounds: int = 3, checkpoint: Path | None = None, threads: int | None = None) -> dict:
    from cnnkit.engine.checkpoint import load_checkpoint

    paths = make_jpegs(tmp / "images", images, size)
    checkpoint_path = checkpoint or train_checkpoint(tmp, device)
    loaded = load_checkpoint(checkpoint_path)
    if threads:  # after training, which sets the thread count to the usable cores
        torch.set_num_threads(threads)
    # Warm both up, and check they agree (decode and resize paths differ slightly, so nearly all, not all).
    reference = reference_loop(loaded, paths[:100], top_k, device, size)
    ours = cnnkit_batched(loaded, paths[:100], top_k, batch_size, device)
    agree = sum(r[0][0] == p.top[0][0] for r, p in zip(reference, ours))
    results = interleaved({
        "loop": lambda: timed(lambda: reference_loop(loaded, paths, top_k, device, size)),
        "cnnkit": lambda: timed(lambda: cnnkit_batched(loaded, paths, top_k, batch_size, device)),
    }, rounds)
    return {
        "images": len(paths), "size": size, "model": loaded["model"]["name"], "checkpoint": checkpoint_path,
        "loop_rate": len(paths) / median(results["loop"], "seconds"),
        "cnnkit_rate": len(paths) / median(results["cnnkit"], "seconds"),
        "agreement": agree / min(100, len(paths)), "batch_size": batch_size, "threads": torch.get_num_threads(),
    }


def case(ctx: Context) -> list[Row]:
    """The row `benchmarks/run.py` prints for this case."""
    m = measure(ctx.tmp, ctx.device, rounds=1 if ctx.quick else ctx.rounds)
    return [Row(
        CASE, seed=rate_text(m["loop_rate"]), cnnkit=rate_text(m["cnnkit_rate"]), ratio=ratio_text(m["cnnkit_rate"], m["loop_rate"]),
        notes=[f"{m['model']} on {m['size']}x{m['size']} JPEGs, batch {m['batch_size']}, {m['threads']} torch threads; "
               f"top-1 agreement with the one-at-a-time loop {m['agreement']:.0%}"],
    )]


def startup(args: list[str], runs: int) -> tuple[float, float, float]:
    """Median wall, fastest wall and median CPU (user + system) seconds of a command.

    On a shared machine the fastest run and the CPU time are the steadier figures.
    """
    import resource

    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), min(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", type=int, default=32, help="side of the synthetic JPEGs")
    parser.add_argument("--checkpoint", type=Path, help="a checkpoint or run directory; default: train LeNet on the CIFAR sample")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    parser.add_argument("--threads", type=int, help="torch threads; default: the usable cores, as the CLI sets")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--startup-runs", type=int, default=3, help="runs of each command for the start-up check (0: skip)")
    args = parser.parse_args()

    from cnnkit.engine.device import resolve_device, usable_cores

    device = resolve_device(args.device)  # on the CPU: threads matched to the usable cores, as the CLI does
    with tempfile.TemporaryDirectory(prefix="cnnkit-predict-bench-") as tmp:
        m = measure(Path(tmp), device, images=args.images, size=args.size, batch_size=args.batch_size,
                    rounds=args.rounds, checkpoint=args.checkpoint, threads=args.threads)
        print(f"{m['images']} JPEGs of {m['size']}x{m['size']}, model {m['model']}, device {device}, "
              f"{usable_cores()} usable cores, {m['threads']} torch threads; medians of {args.rounds} interleaved rounds")
        print(f"top-1 agreement on 100 images: {m['agreement']:.0%}")
        print(f"one image at a time (PIL -> transforms -> model): {m['loop_rate']:10,.0f} images/s")
        print(f"cnnkit batched (batch {m['batch_size']}, in-process decode):{m['cnnkit_rate']:10,.0f} images/s")
        print(f"ratio: {ratio_text(m['cnnkit_rate'], m['loop_rate'])}")
        if args.startup_runs:
            python = sys.executable
            one = sorted(Path(tmp, "images").iterdir())[0]
            bare = startup([python, "-c", "import torch, torchvision"], args.startup_runs)
            command = startup([python, "-m", "cnnkit", "predict", str(one), "--model", str(m["checkpoint"]), "--device", "cpu"],
                              args.startup_runs)
            for index, what in enumerate(("median wall", "fastest wall", "median CPU")):
                b, c = bare[index], command[index]
                print(f"start-up, {what} time of {args.startup_runs}: python -c 'import torch, torchvision' {b:.2f}s, "
                      f"cnnkit predict one image {c:.2f}s, difference {c - b:+.2f}s (target: at most +1.5s)")


if __name__ == "__main__":
    main()
