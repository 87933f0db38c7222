"""Batch sources for the engine: slices of a device-resident tensor, or a streaming DataLoader.

Both visit a split in the same order for a given (seed, epoch), and both can
start part-way through an epoch. That is what makes resume exact.
"""

from __future__ import annotations

from typing import Iterator

import torch

from cnnkit.data.dataset import FileSplit, Split, TensorSplit
from cnnkit.data.images import ImageReadError, load_image


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool, weights: torch.Tensor | None = None) -> torch.Tensor:
    if weights is not None:
        return balanced_order(weights, seed, epoch)
    if not shuffle:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


# ---- --balance sampler ----------------------------------------------------
def balanced_order(weights: torch.Tensor, seed: int, epoch: int) -> torch.Tensor:
    """An epoch of len(weights) images drawn with replacement, each with its weight, as WeightedRandomSampler does.

    A function of (seed, epoch) alone, like the shuffled order, so a resumed run draws the same images.
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.multinomial(weights, len(weights), replacement=True, generator=generator)


class BalanceHooks:
    """What --balance needs of a training batch source: its labels, and per-image draw weights."""

    sample_weights: torch.Tensor | None = None

    def class_labels(self) -> torch.Tensor:
        raise NotImplementedError

    def balance(self, weights: torch.Tensor) -> None:
        """Draw each epoch with these per-image weights (with replacement) instead of shuffling."""
        self.sample_weights = weights.cpu().double()


def shard(order: torch.Tensor, rank: int, world: int, pad: bool) -> torch.Tensor:
    """This rank's slice of a global order. Training pads (by wrapping) so every rank
    takes the same number of steps; validation does not, so every image counts once."""
    if world == 1:
        return order
    if pad and len(order) % world:
        order = torch.cat([order, order[: world - len(order) % world]])
    return order[rank::world]


class TensorBatches(BalanceHooks):
    """Batches cut from one uint8 tensor that lives on the device."""

    def __init__(self, split: TensorSplit, batch_size: int, device: torch.device, shuffle: bool, seed: int = 0,
                 rank: int = 0, world: int = 1, pad: bool = True):
        self.images = split.images.to(device)
        self.labels = split.labels.to(device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.device = device
        self.rank, self.world, self.pad = rank, world, pad
        self.skipped: list[tuple[str, str]] = []

    def __len__(self) -> int:
        return -(-len(shard(torch.arange(len(self.labels)), self.rank, self.world, self.pad)) // self.batch_size)

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = epoch_order(len(self.labels), self.seed, epoch, self.shuffle, self.sample_weights)
        order = shard(order, self.rank, self.world, self.pad).to(self.device)
        for start in range(start_batch * self.batch_size, len(order), self.batch_size):
            index = order[start : start + self.batch_size]
            yield self.images[index], self.labels[index]

    def class_labels(self) -> torch.Tensor:
        return self.labels.cpu()


class _FileDataset(torch.utils.data.Dataset):
    def __init__(self, split: FileSplit, channels: int, size: tuple[int, int]):
        self.split, self.channels, self.size = split, channels, size

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int):
        try:
            return load_image(self.split.files[i], self.channels, self.size, self.split.resize_to), int(self.split.labels[i])
        except ImageReadError as exc:
            return None, (str(exc.path), exc.reason)


def _ignore_sigint(_worker_id: int) -> None:
    # Ctrl-C reaches the whole process group; the main process decides when to stop.
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _collate(items):
    good = [(img, label) for img, label in items if img is not None]
    bad = [info for img, info in items if img is None]
    if not good:
        return None, None, bad
    return torch.stack([g[0] for g in good]), torch.tensor([g[1] for g in good]), bad


class StreamBatches(BalanceHooks):
    """Batches decoded from files by DataLoader workers, with pinned memory on CUDA."""

    def __init__(self, split: FileSplit, channels: int, size: tuple[int, int], batch_size: int,
                 device: torch.device, shuffle: bool, seed: int = 0, workers: int = 2,
                 rank: int = 0, world: int = 1, pad: bool = True):
        self.dataset = _FileDataset(split, channels, size)
        self.batch_size, self.device, self.shuffle, self.seed, self.workers = batch_size, device, shuffle, seed, workers
        self.rank, self.world, self.pad = rank, world, pad
        self.skipped: list[tuple[str, str]] = []

    def _order(self, epoch: int) -> list[int]:
        if self.world > 1 and self.pad and self.sample_weights is None:
            # Streamed training shards through PyTorch's own DistributedSampler.
            sampler = torch.utils.data.DistributedSampler(self.dataset, num_replicas=self.world, rank=self.rank,
                                                          shuffle=self.shuffle, seed=self.seed)
            sampler.set_epoch(epoch)
            return list(sampler)
        order = epoch_order(len(self.dataset), self.seed, epoch, self.shuffle, self.sample_weights)
        return shard(order, self.rank, self.world, self.pad).tolist()

    def class_labels(self) -> torch.Tensor:
        return torch.as_tensor(self.dataset.split.labels)

    def __len__(self) -> int:
        return -(-len(self._order(0)) // self.batch_size)

    def epoch(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._order(epoch)
        batches = [order[i : i + self.batch_size] for i in range(start_batch * self.batch_size, len(order), self.batch_size)]
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_sampler=batches, num_workers=self.workers, collate_fn=_collate,
            pin_memory=self.device.type == "cuda", persistent_workers=False,
            worker_init_fn=_ignore_sigint if self.workers else None,
        )
        seen = {path for path, _ in self.skipped}
        for images, labels, bad in loader:
            for path, reason in bad:
                if path not in seen:  # one warning per file, not one per epoch
                    seen.add(path)
                    self.skipped.append((path, reason))
            if images is None:
                continue
            yield images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)


def make_batches(split: Split, *, channels: int, size: tuple[int, int], batch_size: int, device: torch.device,
                 shuffle: bool, seed: int = 0, workers: int = 2, rank: int = 0, world: int = 1, pad: bool = True):
    if isinstance(split, TensorSplit):
        return TensorBatches(split, batch_size, device, shuffle, seed, rank, world, pad)
    return StreamBatches(split, channels, size, batch_size, device, shuffle, seed, workers, rank, world, pad)
