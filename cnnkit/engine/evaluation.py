"""Running a model over a split: loss, accuracy, top-k and the confusion matrix, accumulated on the device."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cnnkit.engine.distributed import all_reduce_sum


@dataclass
class EvalResult:
    count: int
    loss: float
    accuracy: float
    topk_accuracy: float
    k: int
    confusion: torch.Tensor  # (classes, classes): rows true, columns predicted
    predictions: torch.Tensor | None = None  # (N,) predicted labels, in batch order
    probabilities: torch.Tensor | None = None  # (N,) probability of the predicted class
    true_probabilities: torch.Tensor | None = None  # (N,) probability of the true class
    labels: torch.Tensor | None = None

    @property
    def balanced_accuracy(self) -> float:
        return balanced_accuracy(self.confusion)


def balanced_accuracy(confusion: torch.Tensor) -> float:
    """Mean recall over the classes present (rows true, columns predicted), as scikit-learn's
    balanced_accuracy_score: on 200 cats and 30 dogs, always saying "cat" scores 50%, not 87%."""
    support = confusion.sum(1)
    present = support > 0
    if not present.any():
        return 0.0
    recall = confusion.diag().double()[present] / support[present].double()
    return float(recall.mean())


def eval_logits(model, x: torch.Tensor, amp: bool) -> torch.Tensor:
    """Eval-mode logits in float32. A batch that does not fit in device memory runs in halves:
    in eval mode every image's logits are independent of the rest of its batch, so the result is the same."""
    try:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            return model(x).float()
    except torch.cuda.OutOfMemoryError:
        if x.shape[0] == 1:
            raise
    if x.is_cuda:
        torch.cuda.empty_cache()
    return torch.cat([eval_logits(model, half, amp) for half in x.tensor_split(2)])


@torch.no_grad()
def run_evaluation(model, batches, transform, num_classes: int, *, device, amp: bool = False, k: int = 5,
                   keep_predictions: bool = False) -> EvalResult:
    """Evaluate in eval mode. Sums stay on the device and are read once at the end."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    topk_correct = torch.zeros((), dtype=torch.long, device=device)
    confusion = torch.zeros(num_classes * num_classes, dtype=torch.long, device=device)
    count = 0
    keep = []
    k = max(1, min(k, num_classes))
    for images, labels in batches.epoch(0):  # unshuffled: every epoch is the same
        logits = eval_logits(model, transform(images, train=False), amp)
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").double()
        predicted = logits.argmax(1)
        correct += (predicted == labels).sum()
        topk_correct += (logits.topk(k, 1).indices == labels[:, None]).any(1).sum()
        confusion += torch.bincount(labels * num_classes + predicted, minlength=num_classes * num_classes)
        count += labels.shape[0]
        if keep_predictions:
            probs = logits.softmax(1)
            keep.append((predicted, probs.gather(1, predicted[:, None])[:, 0], probs.gather(1, labels[:, None])[:, 0], labels))
    model.train(was_training)
    # Under torchrun each rank saw its shard; the sums make it the whole split's figures.
    count_t = torch.tensor(count, dtype=torch.long, device=device)
    all_reduce_sum(loss_sum, correct, topk_correct, confusion, count_t)
    count = int(count_t)
    result = EvalResult(
        count=count,
        loss=float(loss_sum) / max(1, count),
        accuracy=int(correct) / max(1, count),
        topk_accuracy=int(topk_correct) / max(1, count),
        k=k,
        confusion=confusion.view(num_classes, num_classes).cpu(),
    )
    if keep:
        result.predictions, result.probabilities, result.true_probabilities, result.labels = (
            torch.cat(parts).cpu() for parts in zip(*keep)
        )
    return result
