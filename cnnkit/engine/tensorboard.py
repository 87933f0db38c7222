"""--tensorboard: the run's curves as TensorBoard event files in RUN/tb/ (the optional `tensorboard` package).

The checkpoint's history is the record, as for metrics.csv: every start and resume rewrites the events
from it (purge_step=0 hides what an earlier process wrote), so a kill never leaves them short or doubled.
"""

from __future__ import annotations

from pathlib import Path

from cnnkit.errors import UsageError

TB_DIR = "tb"


def require_tensorboard() -> None:
    """A clean error naming the extra, before any data is read."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise UsageError("--tensorboard needs the tensorboard package, which is not installed",
                         "pip install 'cnnkit[tensorboard]' (or pip install tensorboard)") from None


class TensorBoardLog:
    """train/val loss and accuracy and the learning rate per epoch, and val per --val-every step."""

    def __init__(self, run_dir: Path, history: list[dict], val_history: list[dict]):
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / TB_DIR), purge_step=0)
        for row in history:
            self.epoch(row, flush=False)
        for row in val_history:
            self.val_step(row, flush=False)
        self.writer.flush()

    def epoch(self, row: dict, flush: bool = True) -> None:
        step = row["step"]
        for tag, key in (("loss/train", "train_loss"), ("loss/val", "val_loss"), ("accuracy/train", "train_acc"),
                         ("accuracy/val", "val_acc"), ("balanced_accuracy/val", "val_bal_acc"), ("lr", "lr")):
            if row.get(key) is not None:
                self.writer.add_scalar(tag, row[key], step)
        self.writer.add_scalar("epoch", row["epoch"], step)
        if flush:
            self.writer.flush()

    def val_step(self, row: dict, flush: bool = True) -> None:
        for tag, key in (("loss/val_step", "val_loss"), ("accuracy/val_step", "val_acc"),
                         ("balanced_accuracy/val_step", "val_bal_acc")):
            if row.get(key) is not None:
                self.writer.add_scalar(tag, row[key], row["step"])
        if flush:
            self.writer.flush()

    def close(self) -> None:
        self.writer.close()
