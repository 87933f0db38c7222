"""Per-class precision, recall, F1 and support, read off a confusion matrix."""

from __future__ import annotations

import torch


def class_report(confusion: torch.Tensor, classes: list[str]) -> dict:
    """Rows of the matrix are true classes, columns predicted ones (as run_evaluation builds it).

    A class that is never predicted (or never present) gets 0 for the undefined
    ratio, as scikit-learn does with zero_division=0.
    """
    counts = confusion.double()
    hits = counts.diag()
    support = counts.sum(1)
    predicted = counts.sum(0)
    precision = torch.where(predicted > 0, hits / predicted.clamp_min(1), 0.0)
    recall = torch.where(support > 0, hits / support.clamp_min(1), 0.0)
    both = precision + recall
    f1 = torch.where(both > 0, 2 * precision * recall / both.clamp_min(1e-12), 0.0)
    per_class = [
        {"class": name, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(classes, precision, recall, f1, support)
    ]
    total = float(support.sum())

    def averages(weights: torch.Tensor) -> dict:
        scale = float(weights.sum()) or 1.0
        return {key: float((values * weights).sum()) / scale for key, values in
                (("precision", precision), ("recall", recall), ("f1", f1))} | {"support": int(total)}

    return {
        "per_class": per_class,
        "macro_avg": averages(torch.ones_like(support)),
        "weighted_avg": averages(support),
    }
