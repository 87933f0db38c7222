"""No per-batch host synchronisation in the training loop (issue 7).

On a GPU every read of a device value on the host (`.item()`, `float(t)`,
`.cpu()`, `if t:` ...) stalls the pipeline, so the engine keeps its metrics on
the device and reads them once per epoch. This check needs no GPU: it wraps
those Tensor methods with counters that count only calls made directly from
cnnkit's own source files (PyTorch's optimizers read CPU step counters with
`.item()`; those are not ours), trains one epoch of N batches and one of 3N,
and requires the same count from every call site. A read per batch would
triple. A control test proves the counter sees such a read when there is one.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections import Counter
from pathlib import Path

import pytest
import torch

import cnnkit
from cnnkit.data.batches import make_batches
from cnnkit.data.dataset import TensorSplit
from cnnkit.data.transforms import BatchTransform
from cnnkit.engine.config import TrainConfig
from cnnkit.engine.evaluation import run_evaluation
from cnnkit.reporting import Reporter
from cnnkit.engine.runner import start_training
from cnnkit.engine.setup import prepare
from cnnkit.engine.trainer import Trainer
from cnnkit.models import get_model

CNNKIT_DIR = str(Path(cnnkit.__file__).resolve().parent) + os.sep
# Items a DataLoader fetches are read on the host (in worker processes, normally): not a device sync.
DATALOADER_DIR = str(Path(torch.utils.data.__file__).resolve().parent) + os.sep
# Every Tensor method that copies a value to the host (and so waits for the device).
HOST_READS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__", "__index__")


class HostReadCounter:
    """Counts host reads by call site ("method file:line") for calls whose immediate caller is in cnnkit/."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.calls: Counter = Counter()
        self.active = False
        for name in HOST_READS:
            monkeypatch.setattr(torch.Tensor, name, self._wrap(name, getattr(torch.Tensor, name)))

    def _wrap(self, name: str, original):
        def counted(tensor, *args, **kwargs):
            if self.active:
                caller = sys._getframe(1)
                path = caller.f_code.co_filename
                if path.startswith(CNNKIT_DIR) and not fetched_by_dataloader(caller):
                    self.calls[f"{name} {path[len(CNNKIT_DIR):]}:{caller.f_lineno}"] += 1
            return original(tensor, *args, **kwargs)

        return counted

    def count(self, action) -> Counter:
        self.calls = Counter()
        self.active = True
        try:
            action()
        finally:
            self.active = False
        return self.calls


def fetched_by_dataloader(frame) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith(DATALOADER_DIR):
            return True
        frame = frame.f_back
    return False


def grown(small: Counter, large: Counter) -> dict:
    """Call sites read more often when there were more batches."""
    return {site: (small[site], n) for site, n in large.items() if n > small[site]}


def train(tmp_path: Path, name: str, limit: int, *, reporter: Reporter | None = None, **overrides) -> dict:
    config = TrainConfig(epochs=1, limit=limit, out=str(tmp_path / "runs"), name=name, device="cpu", **overrides)
    return start_training(config, reporter or Reporter(quiet=True))


BATCH = 32
N = 4  # batches in the short epoch; the long one has 3N


def mnist_in_memory():
    return dict(model="mlp", dataset="mnist-sample", batch_size=BATCH, augment="flip,crop,rotate,jitter")


def cifar_streamed(folder):
    # A 1-byte memory budget forces the DataLoader path; workers=0 keeps its reads in this process.
    # Batch 16: the sample's 300 training images hold 3N of them.
    return dict(model="lenet", dataset=str(folder), batch_size=16, memory_budget="1", workers=0)


@pytest.mark.parametrize("source", ["tensor-resident", "streamed"])
def test_training_reads_from_the_device_do_not_grow_with_batches(tmp_path, monkeypatch, cifar_folder, source):
    options = mnist_in_memory() if source == "tensor-resident" else cifar_streamed(cifar_folder)
    batch = options["batch_size"]
    counter = HostReadCounter(monkeypatch)
    few = counter.count(lambda: train(tmp_path, "few", N * batch, **options))
    many = counter.count(lambda: train(tmp_path, "many", 3 * N * batch, **options))
    runs = sorted((tmp_path / "runs").iterdir())
    assert [r.name for r in runs] == ["few", "many"] and all((r / "last.pt").is_file() for r in runs)
    # The epoch-end reads (metrics, checkpoint) are there: the counter is live, and they are per epoch.
    assert sum(few.values()) > 0
    assert not grown(few, many), f"host reads per batch in the training loop: {grown(few, many)}"


def test_the_counter_catches_a_read_per_batch(tmp_path, monkeypatch):
    """Control: a progress display that refreshes its live stats after every batch makes the
    engine read loss and accuracy from the device per batch; the check must see that growth."""

    class EveryBatch(Reporter):
        def advance(self, stats_fn=None) -> None:
            if stats_fn is not None:
                stats_fn()

    counter = HostReadCounter(monkeypatch)
    options = mnist_in_memory()
    few = counter.count(lambda: train(tmp_path, "few", N * BATCH, reporter=EveryBatch(quiet=True), **options))
    many = counter.count(lambda: train(tmp_path, "many", 3 * N * BATCH, reporter=EveryBatch(quiet=True), **options))
    growth = grown(few, many)
    assert growth, "the counter missed reads made once per batch"
    assert all(site.split()[1].startswith(f"engine{os.sep}trainer.py") for site in growth)
    assert all(after - before == 2 * N for before, after in growth.values())  # one read per extra batch


def test_evaluation_reads_from_the_device_do_not_grow_with_batches(monkeypatch):
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (12 * BATCH, 1, 28, 28), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (12 * BATCH,), generator=generator)
    model = get_model("mlp", in_channels=1, num_classes=10, image_size=28)
    transform = BatchTransform([0.5], [0.25], 1, 28)

    def evaluate(count: int):
        batches = make_batches(TensorSplit(images[:count], labels[:count]), channels=1, size=(28, 28),
                               batch_size=BATCH, device=torch.device("cpu"), shuffle=False)
        result = run_evaluation(model, batches, transform, 10, device=torch.device("cpu"), k=3, keep_predictions=True)
        assert result.count == count

    counter = HostReadCounter(monkeypatch)
    few, many = counter.count(lambda: evaluate(N * BATCH)), counter.count(lambda: evaluate(3 * N * BATCH))
    assert sum(few.values()) > 0
    assert not grown(few, many), f"host reads per batch in evaluation: {grown(few, many)}"


# ---- on a real GPU -----------------------------------------------------------------------
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.cuda
@cuda
def test_cuda_training_uses_bf16_and_channels_last_and_never_syncs_per_batch(tmp_path):
    def run(name: str, limit: int, **overrides):
        config = TrainConfig(model="cnn", dataset="mnist-sample", epochs=1, limit=limit, batch_size=64,
                             out=str(tmp_path), name=name, device="cuda", **overrides)
        setup = prepare(config, Reporter(quiet=True))
        # Count the synchronising CUDA calls PyTorch itself reports, for the whole run.
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                summary = Trainer(setup, Reporter(quiet=True)).fit()
        finally:
            torch.cuda.set_sync_debug_mode("default")
        syncs = sum("synchronizing" in str(w.message) for w in caught)
        return setup, summary, syncs

    setup, _, few_syncs = run("few", 8 * 64)
    assert setup.amp is True and setup.transform.channels_last is True
    first_conv = next(m for m in setup.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.weight.is_contiguous(memory_format=torch.channels_last)
    _, summary, many_syncs = run("many", 24 * 64)
    assert summary["val_acc"] > 0.5
    assert many_syncs == few_syncs, f"{few_syncs} synchronising calls with 8 batches, {many_syncs} with 24"
    no_amp, _, _ = run("no-amp", 64, amp=False)
    assert no_amp.amp is False
