"""What every benchmark case shares: cnnkit runs with per-epoch hooks, peak memory, interleaved rounds, rows.

A case is a function `case(ctx) -> list[Row]`. It runs cnnkit and the
seed-style loop side by side in this process, interleaved round by round so a
burst of load from elsewhere hits every contender alike, and reports medians.
"""

from __future__ import annotations

import os
import resource
import statistics
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch

from cnnkit.engine.config import TrainConfig
from cnnkit.reporting import Reporter
from cnnkit.engine.setup import prepare
from cnnkit.engine.trainer import Trainer

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass
class Context:
    device: torch.device
    quick: bool
    compile: bool
    tmp: Path
    rounds: int


@dataclass
class Row:
    case: str
    seed: str = "-"
    cnnkit: str = "-"
    ratio: str = "-"
    seed_acc: str = "-"
    cnnkit_acc: str = "-"
    seed_mem: str = "-"
    cnnkit_mem: str = "-"
    compiled: str = "-"
    notes: list[str] = field(default_factory=list)


# ---- memory -------------------------------------------------------------------------
def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size now, from /proc (0 where there is no /proc)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def pss_bytes(pid: int | str = "self") -> int:
    """Proportional set size: shared pages split among the processes that share them, so a sum over
    a parent and its forked DataLoader workers does not count the same pages twice."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return rss_bytes(pid)


def child_pids() -> list[int]:
    pids = []
    for task in Path("/proc/self/task").glob("*/children"):
        try:
            pids.extend(int(p) for p in task.read_text().split())
        except OSError:
            pass
    return pids


def memory_with_workers() -> int:
    """Memory of this process and its direct children (DataLoader workers), as summed PSS."""
    return pss_bytes() + sum(pss_bytes(pid) for pid in child_pids())


class PeakMemory:
    """Peak memory while the block runs: the CUDA allocator's peak on a GPU; on the CPU, the summed PSS of
    this process and its DataLoader workers, sampled in a thread (ru_maxrss only ever rises, so it cannot
    tell the contenders of one process apart)."""

    def __init__(self, device: torch.device, every_s: float = 0.05):
        self.device, self.every_s = device, every_s
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.peak = memory_with_workers()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.every_s):
            self.peak = max(self.peak, memory_with_workers())

    def __exit__(self, *exc) -> bool:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, memory_with_workers())
        return False


def process_peak_rss() -> int:
    """The high-water mark of this process's RSS since it started (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


# ---- cnnkit runs --------------------------------------------------------------------
class EpochHook(Reporter):
    """A quiet Reporter that calls `on_epoch(trainer)` at the end of every epoch (after the checkpoint is saved)."""

    def __init__(self, on_epoch: Callable | None = None):
        super().__init__(quiet=True)
        self.on_epoch = on_epoch
        self.trainer: Trainer | None = None

    def finish(self, line: str) -> None:
        super().finish(line)
        if self.on_epoch is not None and self.trainer is not None:
            self.on_epoch(self.trainer)


class StopTraining(Exception):
    """Raised from an epoch hook to end a run early (e.g. once it reached the target accuracy)."""


@dataclass
class CnnkitRun:
    history: list[dict]
    trainer: Trainer
    wall_s: float
    peak: int

    @property
    def rate(self) -> float:
        """Images/s of the last epoch: the whole run when it has one epoch, the steady state after a warm-up epoch."""
        return self.history[-1]["images_per_s"]


def cnnkit_train(config: TrainConfig, device: torch.device, on_epoch: Callable | None = None) -> CnnkitRun:
    """Train through cnnkit's real engine (prepare + Trainer.fit), as `cnnkit train` does."""
    reporter = EpochHook(on_epoch)
    started = time.perf_counter()
    with PeakMemory(device) as memory:
        setup = prepare(config, reporter)
        trainer = Trainer(setup, reporter)
        reporter.trainer = trainer
        try:
            trainer.fit()
        except StopTraining:
            pass
    return CnnkitRun(list(trainer.state.history), trainer, time.perf_counter() - started, memory.peak)


def train_seconds(run: CnnkitRun) -> float:
    return sum(row["seconds"] for row in run.history)


def compiled_run(config: TrainConfig, device: torch.device) -> dict:
    """The same run with --compile and one more epoch: the time its first epochs took (compile included),
    to set against the plain run's, and its images/s in the extra epoch, once compiled."""
    run = cnnkit_train(replace(config, compile=True, epochs=config.epochs + 1), device)
    return {"seconds": sum(row["seconds"] for row in run.history[: config.epochs]), "steady": run.rate}


# ---- rounds and rows ----------------------------------------------------------------
def interleaved(contenders: dict[str, Callable[[], dict]], rounds: int) -> dict[str, list[dict]]:
    """Run every contender once per round, in turn; each returns a dict of figures."""
    results: dict[str, list[dict]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            results[name].append(run())
    return results


def median(results: list[dict], key: str) -> float | None:
    values = [r[key] for r in results if r.get(key) is not None]
    return statistics.median(values) if values else None


def rate_text(value: float | None, unit: str = "img/s") -> str:
    return "n/a" if value is None else f"{value:,.0f} {unit}"


def ratio_text(ours: float | None, theirs: float | None) -> str:
    if not ours or not theirs:
        return "n/a"
    return f"{ours / theirs:.1f}x"


def target_note(value: float | None, goal: float, what: str) -> str:
    """One line saying whether an issue-7 target was met: `value` must reach `goal`."""
    verdict = "n/a" if value is None else ("met" if value >= goal else "MISSED")
    return f"target: {what}: {verdict}"


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def compile_verdict(plain_seconds: float, compiled: Callable[[], dict], plain_rate: float | None = None) -> str:
    """Does torch.compile pay for itself on this case, compile time included?

    `compiled()` does the same work with --compile and returns {"seconds": ...} (compile time included)
    and, where it ran a second epoch, {"steady": images/s once compiled}, to say when it would break even.
    """
    try:
        result = compiled()
    except Exception as exc:  # no compiler toolchain, an unsupported backend, ...
        first = str(exc).splitlines()[0][:60] if str(exc) else ""
        return f"n/a ({type(exc).__name__}: {first})"
    seconds, steady = result["seconds"], result.get("steady")
    text = f"{seconds:.2f}s vs {plain_seconds:.2f}s: {'pays' if seconds < plain_seconds else 'does not pay'}"
    if steady and plain_rate:
        text += f"; then {steady:,.0f} vs {plain_rate:,.0f} img/s"
        if steady > plain_rate and seconds > plain_seconds:
            # Images after which the compiled run has made up its compile time.
            extra = seconds - plain_seconds
            text += f", even after ~{extra / (1 / plain_rate - 1 / steady):,.0f} more images"
    return text
