"""What a run tells the user about itself beyond the numbers: imbalance, a loss that does not move, early stopping.

Each rule is a small function of plain values, so the trainer calls it where it already has them.
"""

from __future__ import annotations

import math

import torch

from cnnkit.data.stats import class_counts, imbalance_ratio, imbalance_warning, is_imbalanced

BALANCE_MODES = ("sampler", "loss")
# An epoch's mean training loss this close to ln(classes) is what a model that predicts the uniform
# distribution scores: it learnt nothing. A learning run leaves it within the first epoch (LeNet on
# mnist-sample's first epoch averages 0.6 against ln 10 = 2.30).
STUCK_TOLERANCE = 0.02  # label smoothing (train's default) puts a collapsed model's loss a little above ln(C)
STUCK_ACC_MARGIN = 0.02  # training accuracy this little above the largest class's share is chance
# A run's first few steps sit at ln(C) whatever happens next (300 photos are 5 steps an epoch at batch 64):
# only a run that has taken this many optimizer steps can be said to be stuck there.
STUCK_MIN_STEPS = 50


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per-class weights n / (classes * count), scikit-learn's "balanced": each class weighs the same in total.

    The one weighting --balance uses, for the sampler (per image) and the loss (per class, `weight=`).
    A class with no images gets 0 (nothing to weigh).
    """
    counts = torch.bincount(labels.cpu().long(), minlength=num_classes).double()
    present = int((counts > 0).sum())
    return torch.where(counts > 0, counts.sum() / (present * counts.clamp_min(1)), 0.0).float()


def sample_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Each image's draw weight for the balanced sampler: its class's weight."""
    return class_weights(labels, num_classes)[labels.cpu().long()].double()


def train_imbalance_warning(labels: torch.Tensor, num_classes: int, balance: str | None) -> str | None:
    """inspect-dataset's warning for the training split, and what to do about it, or None if it is balanced."""
    ratio = imbalance_ratio(class_counts(labels.cpu().long(), num_classes))
    if not is_imbalanced(ratio):
        return None
    advice = (f"--balance {balance} is on" if balance else
              "accuracy flatters the majority class: read the balanced accuracy, or pass --balance sampler|loss")
    return f"{imbalance_warning('train', ratio)}; {advice}"


def loss_is_stuck(train_loss: float, train_acc: float, labels: torch.Tensor, num_classes: int) -> bool:
    """True when an epoch's mean training loss sits at ln(classes), the uniform guess, and its accuracy is
    no better than always naming the largest class: a run on its way down passes ln(classes) while
    already right more often than that."""
    largest_share = max(class_counts(labels.cpu().long(), num_classes)) / max(1, len(labels))
    return abs(train_loss - math.log(num_classes)) < STUCK_TOLERANCE and train_acc <= largest_share + STUCK_ACC_MARGIN


def stuck_loss_warning(epoch: int, train_loss: float, num_classes: int, lr: float, option: str) -> tuple[str, str]:
    return (f"the training loss sat at {train_loss:.4f}, ln({num_classes}) = {math.log(num_classes):.4f}, through epoch {epoch}: "
            "the model predicts every class alike and is learning nothing",
            f"the learning rate may be too high ({option} {lr:g}; try {lr / 10:g}, or find one with "
            "`cnnkit lr-find`), or the labels carry no signal (check the class folders)")


def early_stop(epoch: int, since: int, best_epoch: int, patience: int | None, best_val_acc: float) -> dict | None:
    """The record of an early stop after `epoch` (1-based), or None to go on.

    `since` is the epoch the count starts from: the best epoch, or the start of the current phase if later.
    """
    if not patience or epoch - since < patience:
        return None
    return {"epoch": epoch, "best_epoch": best_epoch, "patience": patience, "best_val_acc": best_val_acc}


def early_stop_record(value) -> dict | None:
    """A checkpoint's early-stop record if it is one early_stop wrote, else None (an edited file resumes as not stopped)."""
    keys = ("epoch", "best_epoch", "patience", "best_val_acc")
    if not isinstance(value, dict) or not all(isinstance(value.get(k), (int, float)) for k in keys):
        return None
    return {k: value[k] for k in keys}


def early_stop_note(stop: dict) -> str:
    return (f"note: stopped early after epoch {stop['epoch']}: validation accuracy has not improved for "
            f"{stop['patience']} epoch(s) (--patience {stop['patience']}); best {stop['best_val_acc']:.2%} "
            f"at epoch {stop['best_epoch']}, kept in best.pt")
