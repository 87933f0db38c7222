"""--loss: the losses of tutorial 003's zoo that apply to single-label classification, each on logits.

Every criterion takes the model's logits (N, C) and integer labels (N,), as nn.CrossEntropyLoss does, and
returns the batch's mean loss; what each needs of the logits (log-softmax, softmax, one-hot targets) is
done here, so models keep returning logits and evaluate/predict stay as they are.

Validation loss, the `val_loss` of the summary and metrics.csv, and evaluate's loss are always
cross-entropy (engine/evaluation.py), whatever --loss trains with, so runs with different losses compare;
`train_loss` is the --loss value.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnkit.errors import UsageError

# kl-div's target without --label-smoothing: a one-hot target makes KL(target || p) cross-entropy exactly,
# so it smooths a little by default to be the distinct loss the tutorial shows.
KL_DEFAULT_SMOOTHING = 0.1

# Losses that take label smoothing (a soft target makes sense for them); the others refuse it.
SMOOTHABLE = ("cross-entropy", "kl-div", "bce", "mse", "l1", "smooth-l1")
LOSSES = ("cross-entropy", "nll", "bce", "mse", "l1", "smooth-l1", "multi-margin", "kl-div", "poisson-nll")
# Losses that take per-class weights (--balance loss): the ones whose torch form has `weight=` per class.
WEIGHTABLE = ("cross-entropy", "nll", "multi-margin")

# The rest of the zoo, and why each does not fit one label per image.
NOT_FOR_CLASSIFICATION = {
    "triplet": "it compares anchor/positive/negative embeddings, not class scores with a label",
    "margin-ranking": "it ranks pairs of scores (x1, x2) by a +1/-1 target, not one label per image",
    "cosine-embedding": "it scores whether two embeddings are alike (+1/-1), not a label per image",
    "hinge-embedding": "it takes a distance and a +1/-1 similar/dissimilar target, not a class label",
    "ctc": "it aligns a sequence of frames with a shorter label sequence (speech, handwriting lines)",
    "multi-label-margin": "it is for several labels per image; cnnkit's datasets have one",
    "soft-margin": "it is two-class (+1/-1 targets) per output, for multi-label tasks; use bce for one-vs-rest",
}


def check_loss(name: str, label_smoothing: float = 0.0) -> str:
    """The loss's name if cnnkit trains with it; a UsageError saying why it cannot, otherwise."""
    key = name.strip().lower().replace("_", "-")
    if key in NOT_FOR_CLASSIFICATION:
        raise UsageError(f"--loss {name}: {NOT_FOR_CLASSIFICATION[key]}",
                         f"single-label classification takes {', '.join(LOSSES)}")
    if key not in LOSSES:
        raise UsageError(f"--loss {name}: unknown loss", f"use one of {', '.join(LOSSES)}")
    if label_smoothing and key not in SMOOTHABLE:
        raise UsageError(f"--label-smoothing does not apply to --loss {key}: it compares with the label itself, "
                         "not with a target distribution", f"label smoothing applies to {', '.join(SMOOTHABLE)}")
    return key


def soft_targets(labels: torch.Tensor, classes: int, smoothing: float) -> torch.Tensor:
    """One-hot targets, label-smoothed as nn.CrossEntropyLoss smooths: (1 - s) on the label plus s / C everywhere."""
    return F.one_hot(labels, classes).float() * (1 - smoothing) + smoothing / classes


class OnTargets(nn.Module):
    """A loss that compares a transformed output (softmax, log-softmax, logits) with soft one-hot targets."""

    def __init__(self, name: str, output, loss, smoothing: float):
        super().__init__()
        self.name, self.output, self.loss, self.smoothing = name, output, loss, smoothing

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.loss(self.output(logits), soft_targets(labels, logits.shape[1], self.smoothing))


class OnLogProbs(nn.Module):
    """NLL on log-softmax: tutorial 001's and 004's models end in LogSoftmax and train with NLLLoss."""

    name = "nll"

    def __init__(self, weight: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.nll_loss(F.log_softmax(logits, dim=1), labels, weight=self.weight)


def build_loss(name: str, label_smoothing: float = 0.0, weight: torch.Tensor | None = None) -> nn.Module:
    """The training criterion for --loss NAME (checked again here, so the API fails as clearly as the CLI).

    `weight` is --balance loss's per-class weight; only the losses in WEIGHTABLE take one.
    """
    key = check_loss(name, label_smoothing)
    if weight is not None and key not in WEIGHTABLE:
        raise UsageError(f"--balance loss does not apply to --loss {key}: it has no per-class weight",
                         f"use --balance sampler, or a loss that takes class weights: {', '.join(WEIGHTABLE)}")
    s = label_smoothing
    if key == "cross-entropy":
        return nn.CrossEntropyLoss(weight=weight, label_smoothing=s)
    if key == "nll":
        return OnLogProbs(weight)
    if key == "multi-margin":
        return nn.MultiMarginLoss(weight=weight)
    softmax = lambda logits: logits.softmax(1)  # noqa: E731
    if key == "bce":  # one-vs-rest: one sigmoid per class on its logit
        return OnTargets(key, lambda logits: logits, nn.BCEWithLogitsLoss(), s)
    if key == "kl-div":
        return OnTargets(key, lambda logits: logits.log_softmax(1), nn.KLDivLoss(reduction="batchmean"),
                         s or KL_DEFAULT_SMOOTHING)
    if key == "poisson-nll":  # the logits are the log-rates: exp(logit) is each class's expected count
        return OnTargets(key, lambda logits: logits, nn.PoissonNLLLoss(log_input=True), 0.0)
    regression = {"mse": nn.MSELoss(), "l1": nn.L1Loss(), "smooth-l1": nn.SmoothL1Loss()}
    return OnTargets(key, softmax, regression[key], s)
