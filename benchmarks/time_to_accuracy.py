"""Time to accuracy (issue 18): cnnkit's default command against the tutorial's own loop, each in its own process.

    python benchmarks/time_to_accuracy.py [--cifar10 DIR] [--photos DIR] [--rounds N] [--only lenet-cifar10,...]

The clock starts just before the process is started (imports, data loading and model building count) and
stops at the first validation that reaches the case's target; the process is then stopped. The figure is
cnnkit's time over the tutorial's (lower is better; the issue asks 0.35x for LeNet / CIFAR-10 and 0.5x for
the cnn / mnist-sample). Contenders alternate round by round and the table shows medians; the machine's
load is printed before and after, since seconds on a shared machine are noisy.

Cases:
- lenet-cifar10: the CIFAR LeNet on a CIFAR-10 folder (train/ and test/ of 32x32 JPEGs) to 50% test accuracy.
  It needs the full CIFAR-10 (`--cifar10 DIR`; 50,000 / 10,000 images) and is skipped without it. On
  tests/data/cifar10-sample (400 images) it runs, but that is no measure of accuracy.
- cnn-mnist: tutorial 000's cnn (121,514 parameters) on the packaged mnist-sample (8,000 / 2,000) to 97%.
- cnn-photos: the same cnn on a folder of photos (default tests/data/pets-sample, 100 cats and dogs) written
  at 64x64, every fifth photo held out as test/, to 70% (a target the tutorial loop reaches).
Both sides run with OMP_WAIT_POLICY=PASSIVE (what cnnkit sets for itself), so the figure is about the
recipe and the pipeline, not OpenMP's spinning.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
MNIST_SAMPLE = REPO / "cnnkit" / "data" / "sample"
PETS_SAMPLE = REPO / "tests" / "data" / "pets-sample"
PHOTO_SIZE = 64

# One validation line each side prints: cnnkit's epoch line (stderr) and tutorial_loops.py's (stdout).
CNNKIT_LINE = re.compile(r"^epoch (\d+)/\d+.*\| val loss \S+ acc ([\d.]+)%")
TUTORIAL_LINE = re.compile(r"^epoch (\d+) val_acc ([\d.]+)")


@dataclass
class Case:
    name: str
    target: float
    data: Path
    about: str  # what the data is, said in the table
    tutorial: list[str]
    cnnkit: list[str]
    goal: float | None = None  # the ratio the issue asks for, if any
    notes: list[str] = field(default_factory=list)


@dataclass
class Result:
    seconds: float | None  # None: the target was not reached
    epoch: int
    acc: float


def run_until(command: list[str], pattern: re.Pattern, scale: float, target: float, env: dict) -> Result:
    """Start `command`, read its lines as they come, stop it at the first validation >= target."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
    best, epoch, lines = 0.0, 0, []
    try:
        for line in process.stdout:
            lines.append(line)
            match = pattern.match(line.strip())
            if not match:
                continue
            epoch, acc = int(match.group(1)), float(match.group(2)) / scale
            best = max(best, acc)
            if acc >= target:
                return Result(time.perf_counter() - started, epoch, acc)
        if process.wait() != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{''.join(lines[-20:])}")
        return Result(None, epoch, best)
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait()


def environment() -> dict:
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def photo_folder(source: Path, out: Path, size: int) -> Path:
    """`source` as a train/ and test/ folder of size x size JPEGs (shorter side resized, centre crop)."""
    from PIL import Image, ImageOps

    for class_dir in sorted(p for p in source.iterdir() if p.is_dir()):
        files = sorted(f for f in class_dir.iterdir() if f.suffix.lower() in (".jpg", ".jpeg", ".png"))
        for i, path in enumerate(files):
            split = "test" if i % 5 == 0 else "train"
            target = out / split / class_dir.name / f"{path.stem}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(path) as image:
                ImageOps.fit(image.convert("RGB"), (size, size)).save(target, quality=95)
    return out


def cases(args, tmp: Path, env: dict) -> list[Case]:
    py, tutorial = sys.executable, str(HERE / "tutorial_loops.py")
    cnnkit = [py, "-m", "cnnkit", "train"]
    runs = ["--out", str(tmp / "runs")]
    found = []
    if args.cifar10:
        small = sum(1 for _ in Path(args.cifar10, "train").rglob("*.*")) < 50_000
        found.append(Case(
            "lenet-cifar10", 0.50, args.cifar10,
            f"{args.cifar10}" + (" (a sample: no measure of accuracy)" if small else ""),
            [py, tutorial, "lenet-cifar10", str(args.cifar10), "--epochs", str(args.tutorial_epochs)],
            cnnkit + ["lenet", "--dataset", str(args.cifar10), *runs], goal=0.35))
    else:
        print("lenet-cifar10: skipped: it needs the full CIFAR-10 folder (--cifar10 DIR with train/ and test/); "
              "it is not on this machine", flush=True)
    found.append(Case(
        "cnn-mnist", 0.97, MNIST_SAMPLE, "mnist-sample (8,000 train / 2,000 test)",
        [py, tutorial, "cnn-mnist", str(MNIST_SAMPLE), "--epochs", str(args.tutorial_epochs)],
        cnnkit + ["cnn", "--dataset", "mnist-sample", *runs], goal=0.5))
    photos = photo_folder(args.photos, tmp / "photos", PHOTO_SIZE)
    count = sum(1 for _ in photos.rglob("*.jpg"))
    case = Case(
        "cnn-photos", args.photo_target, photos, f"{args.photos.name} at {PHOTO_SIZE} px ({count} photos, 1 in 5 test)",
        [py, tutorial, "cnn-photos", str(photos), "--epochs", str(args.photo_epochs), "--size", str(PHOTO_SIZE)],
        cnnkit + ["cnn", "--dataset", str(photos), "--epochs", str(args.photo_epochs),
                  "--image-size", str(PHOTO_SIZE), *runs])
    found.append(case)
    return found


def median_result(results: list[Result]) -> Result:
    """The median round by time; a round that never reached the target counts as the slowest."""
    return sorted(results, key=lambda r: r.seconds if r.seconds is not None else float("inf"))[len(results) // 2]


def describe(result: Result) -> str:
    if result.seconds is None:
        return f"not reached (best {result.acc:.1%} in {result.epoch} epochs)"
    return f"{result.seconds:.1f} s (epoch {result.epoch}, {result.acc:.1%})"


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cifar10", type=Path, help="a CIFAR-10 folder with train/ and test/ (the full one)")
    parser.add_argument("--photos", type=Path, default=PETS_SAMPLE, help="a folder of photos, one folder per class")
    parser.add_argument("--photo-target", type=float, default=0.70)
    parser.add_argument("--photo-epochs", type=int, default=30, help="both sides' epochs on the photos")
    parser.add_argument("--tutorial-epochs", type=int, default=10, help="the tutorial loops' most epochs")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", help="comma-separated case names")
    args = parser.parse_args()
    env = environment()
    print(f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}); {load()}; python {sys.version.split()[0]}",
          flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="cnnkit-tta-") as tmp:
        for case in cases(args, Path(tmp), env):
            if args.only and case.name not in args.only.split(","):
                continue
            ours, theirs = [], []
            for round_ in range(args.rounds):
                theirs.append(run_until(case.tutorial, TUTORIAL_LINE, 1.0, case.target, env))
                ours.append(run_until(case.cnnkit, CNNKIT_LINE, 100.0, case.target, env))
                shutil.rmtree(Path(tmp) / "runs", ignore_errors=True)
                print(f"{case.name} round {round_ + 1}: tutorial {describe(theirs[-1])}, cnnkit {describe(ours[-1])}; "
                      f"{load()}", flush=True)
            tutorial, cnnkit = median_result(theirs), median_result(ours)
            ratio = cnnkit.seconds / tutorial.seconds if cnnkit.seconds and tutorial.seconds else None
            verdict = "" if case.goal is None or ratio is None else (" met" if ratio <= case.goal else " MISSED")
            rows.append((f"{case.name} to {case.target:.0%}", case.about, describe(tutorial), describe(cnnkit),
                         "n/a" if ratio is None else f"{ratio:.2f}x" + (f" (goal {case.goal}x:{verdict})" if case.goal else "")))
            for note in case.notes:
                print(f"note: {case.name}: {note}", flush=True)
    print(f"\nafter: {load()}")
    headers = ("case", "data", "tutorial loop", "cnnkit defaults", "cnnkit / tutorial")
    print("| " + " | ".join(headers) + " |")
    print("|" + " --- |" * len(headers))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
