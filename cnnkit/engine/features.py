"""Feature extraction for `cnnkit finetune --mode features`.

The frozen backbone runs once over the data; what it feeds the head is kept
as a float tensor and cached on disk, so the linear head trains in seconds and
a second run with the same backbone, weights and data skips the backbone.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from cnnkit.data.dataset import FileSplit, TensorSplit

FEATURE_CACHE_VERSION = 1


class HeadOnFeatures(nn.Module):
    """Feeds cached features to the head of a full model.

    The Trainer trains this module, so optimizer, progress, metrics, resume and
    Ctrl-C work as for any run, while state_dict() and load_state_dict() are the
    full model's: the checkpoint holds backbone and head, like any other.
    """

    def __init__(self, full: nn.Module, head_name: str):
        super().__init__()
        self.full = full
        self.head_name = head_name

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.full.get_submodule(self.head_name)(features)

    def state_dict(self, *args, **kwargs):
        return self.full.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return self.full.load_state_dict(state_dict, strict=strict, assign=assign)


def identity_transform(features: torch.Tensor, train: bool = False, generator=None) -> torch.Tensor:
    """The batch transform of a features run: features are already model input."""
    return features


@torch.no_grad()
def extract_features(model: nn.Module, head: nn.Module, batches, transform, device: torch.device,
                     amp: bool) -> TensorSplit:
    """Run the model once in eval mode and keep what reaches the head (its input)."""
    captured: list[torch.Tensor] = []
    labels_seen: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda module, args: captured.append(args[0].detach().float().cpu()))
    was_training = model.training
    model.eval()
    try:
        for images, labels in batches.epoch(0):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                model(transform(images, train=False))
            labels_seen.append(labels.cpu())
    finally:
        hook.remove()
        model.train(was_training)
    return TensorSplit(torch.cat(captured), torch.cat(labels_seen))


def split_fingerprint(split) -> str:
    """A digest of exactly the images a split holds: pixels for tensors, files and stats for streams."""
    digest = hashlib.sha1()
    if isinstance(split, TensorSplit):
        images = split.images.contiguous()
        digest.update(f"{tuple(images.shape)}|{images.dtype}".encode())
        digest.update(images.numpy().data)
    elif isinstance(split, FileSplit):
        digest.update(f"files|{split.resize_to}".encode())
        for path in split.files:
            stat = Path(path).stat()
            digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    digest.update(split.labels.contiguous().numpy().data)
    return digest.hexdigest()


def weights_fingerprint(path: Path) -> str:
    """The weights file by path, size and modification time (as the decoded-image cache does)."""
    path = Path(path).resolve()
    stat = path.stat()
    return f"{path}|{stat.st_size}|{stat.st_mtime_ns}"


def state_digest(model: nn.Module, skip: str) -> str:
    """A digest of a model's weights and buffers but those under `skip` (the new head: drawn by the seed, and
    no part of the features), for weights that come from no file of cnnkit's (a user's file loads its own)."""
    digest = hashlib.sha1()
    for name, tensor in model.state_dict().items():
        if name.startswith(f"{skip}."):
            continue
        digest.update(f"{name}|{tuple(tensor.shape)}|{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def feature_cache_key(model_name: str, weights: str, preprocessing: dict, train_split, val_split, amp: bool) -> str:
    """`weights`: weights_fingerprint of the weights file, or state_digest of the model."""
    parts = [
        f"v{FEATURE_CACHE_VERSION}", model_name, weights,
        repr(sorted(preprocessing.items())), f"amp={amp}",
        split_fingerprint(train_split), split_fingerprint(val_split),
    ]
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:20]


def load_cached_features(path: Path) -> tuple[TensorSplit, TensorSplit] | None:
    from cnnkit.fileio import load_cache

    saved = load_cache(path)  # None when missing or damaged: extract again, never trust it
    if not (isinstance(saved, dict) and {"train", "train_labels", "val", "val_labels"} <= saved.keys()):
        return None
    return TensorSplit(saved["train"], saved["train_labels"]), TensorSplit(saved["val"], saved["val_labels"])


def save_cached_features(path: Path, train: TensorSplit, val: TensorSplit) -> bool:
    from cnnkit.fileio import atomic_torch_save

    payload = {"train": train.images, "train_labels": train.labels, "val": val.images, "val_labels": val.labels}
    try:
        atomic_torch_save(path, payload)
        return True
    except OSError:
        return False  # a read-only data folder still trains; it extracts again next time
