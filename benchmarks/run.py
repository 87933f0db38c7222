"""cnnkit against the seed tutorials' loops: every benchmark case, side by side in one process, one table.

    python benchmarks/run.py [--device cpu|cuda] [--quick] [--compile] [--only 1,3] [--rounds N]

Cases (issue 7): 1 LeNet on CIFAR-10-shaped data at batch 14 and at cnnkit's
default batch; 2 the tutorial's MNIST `cnn`; 3 time to 97% test accuracy on
mnist-sample; 4 ResNet18 and MobileNetV2 at 224x224, training and inference;
5 `cnnkit predict` on 1,000 JPEGs against one image at a time (predict_speed.py);
6 a folder too big for the memory budget, streamed, with RSS per epoch.
Each case interleaves its contenders round by round and reports medians.
`--quick` keeps the whole run to a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import sys
import tempfile
import time
from pathlib import Path

import cnnkit  # noqa: F401  (first: it sets OpenMP's wait policy before torch loads, for both loops alike)
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the case modules import `common` and `harness` as siblings

import bench_backbones  # noqa: E402
import bench_lenet  # noqa: E402
import bench_mnist_cnn  # noqa: E402
import bench_time_to_accuracy  # noqa: E402
import memory_stream  # noqa: E402
from common import tutorial_threads  # noqa: E402
from harness import Context, Row, mib, process_peak_rss  # noqa: E402

from cnnkit.engine.device import resolve_device, usable_cores  # noqa: E402


def predict_case(ctx: Context) -> list[Row]:
    """Case 5 lives in predict_speed.py (written with `cnnkit predict`); run it when it is there."""
    path = HERE / "predict_speed.py"
    if not path.is_file():
        return [Row("5. cnnkit predict, 1,000 JPEGs", notes=["predict_speed.py is not in benchmarks/ yet"])]
    spec = importlib.util.spec_from_file_location("predict_speed", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if hasattr(module, "case"):
        return module.case(ctx)
    return [Row("5. cnnkit predict, 1,000 JPEGs", notes=["predict_speed.py has no case(ctx); run it on its own"])]


CASES = {
    1: bench_lenet.case,
    2: bench_mnist_cnn.case,
    3: bench_time_to_accuracy.case,
    4: bench_backbones.case,
    5: predict_case,
    6: memory_stream.case,
}


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    else:
        where = f"{platform.processor() or platform.machine()}, {usable_cores()} cores"
    return f"{where}; torch {torch.__version__}, Python {platform.python_version()}, {platform.system()}"


def print_table(rows: list[Row], compile: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    headers = ["case", "seed", "cnnkit", "ratio", "seed acc", "cnnkit acc", "seed peak mem", "cnnkit peak mem"]
    if compile:
        headers.append("--compile (compile time included)")
    table = Table(*headers, show_lines=False)
    for r in rows:
        cells = [r.case, r.seed, r.cnnkit, r.ratio, r.seed_acc, r.cnnkit_acc, r.seed_mem, r.cnnkit_mem]
        table.add_row(*(cells + [r.compiled] if compile else cells))
    console = Console(width=250)
    console.print(table)
    notes = [f"- {r.case.split(':')[0].split(',')[0]}: {n}" for r in rows for n in r.notes]
    if notes:
        console.print("\n".join(notes), markup=False, highlight=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (cuda:N)")
    parser.add_argument("--quick", action="store_true", help="small sizes and fewer rounds: a few minutes on 2 CPU cores")
    parser.add_argument("--compile", action="store_true", help="also time cnnkit with torch.compile (compile time included)")
    parser.add_argument("--only", default="", help="comma list of case numbers to run (default: all)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds per case (default 3; 1 for the slow cases)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    chosen = [int(c) for c in args.only.split(",") if c.strip()] or list(CASES)
    rows: list[Row] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cnnkit-bench-") as tmp:
        for number in chosen:
            ctx = Context(device=device, quick=args.quick, compile=args.compile, tmp=Path(tmp) / f"case{number}",
                          rounds=args.rounds or 3)
            ctx.tmp.mkdir(parents=True)
            case_started = time.perf_counter()
            print(f"case {number}...", file=sys.stderr, flush=True)
            tutorial_threads()  # each case starts where a fresh process would: cnnkit's training sets its own count
            rows.extend(CASES[number](ctx))
            print(f"case {number} took {time.perf_counter() - case_started:.0f}s", file=sys.stderr, flush=True)
    print(f"cnnkit vs the seed tutorials' loops on {machine(device)}, device {device}"
          f"{' (--quick)' if args.quick else ''}; medians of interleaved rounds; "
          f"{time.perf_counter() - started:.0f}s in all, process peak RSS {mib(process_peak_rss())}")
    print_table(rows, args.compile)


if __name__ == "__main__":
    main()
