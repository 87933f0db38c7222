"""One training step (forward, loss, backward, optimizer), and what --auto-batch does when it does not fit."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.reporting import Reporter


class TrainStep:
    """Runs a batch as one forward pass, or, once it has run out of memory under --auto-batch, in pieces."""

    def __init__(self, forward: nn.Module, criterion: nn.Module, *, amp: bool, batch_size: int, auto_batch: bool,
                 ddp: bool, reporter: Reporter):
        self.forward, self.criterion, self.amp = forward, criterion, amp
        self.batch_size, self.auto_batch, self.ddp = batch_size, auto_batch, ddp
        self.reporter = reporter
        self.pieces = 1  # forward passes per batch; doubles at each out-of-memory error under --auto-batch

    def __call__(self, optimizer: torch.optim.Optimizer, x: torch.Tensor, labels: torch.Tensor):
        """(logits, mean loss) of the batch, after the optimizer step."""
        while True:
            try:
                return self._run(optimizer, x, labels)
            except torch.cuda.OutOfMemoryError:
                pass  # leave the except block first: the exception holds the failed step's tensors
            optimizer.zero_grad(set_to_none=True)
            if x.is_cuda:
                torch.cuda.empty_cache()
            if not self.auto_batch or 2 * self.pieces > labels.shape[0]:
                raise self.out_of_memory_error()
            self.pieces *= 2
            self.reporter.warn(
                f"out of memory at {-(-labels.shape[0] // (self.pieces // 2))} images per forward pass: "
                f"retrying with each batch in {self.pieces} pieces (same batch size {self.batch_size} per step)"
            )

    def _run(self, optimizer: torch.optim.Optimizer, x: torch.Tensor, labels: torch.Tensor):
        optimizer.zero_grad(set_to_none=True)
        if self.pieces == 1:
            logits, loss = self._forward(x, labels)
            loss.backward()
            optimizer.step()
            return logits, loss
        # Gradient accumulation: each piece's mean loss weighted by its share adds up to the batch's mean loss,
        # so the step, the schedule and the checkpoint are those of the whole batch.
        pieces = list(zip(x.tensor_split(self.pieces), labels.tensor_split(self.pieces)))
        all_logits, loss = [], torch.zeros((), device=x.device)
        for i, (xs, ys) in enumerate(pieces):
            last = i == len(pieces) - 1  # under DDP: one gradient all-reduce per step, after the last piece
            with self.forward.no_sync() if self.ddp and not last else contextlib.nullcontext():
                logits, piece_loss = self._forward(xs, ys)
                piece_loss = piece_loss * (ys.shape[0] / labels.shape[0])
                piece_loss.backward()
            all_logits.append(logits.detach())
            loss += piece_loss.detach()
        optimizer.step()
        return torch.cat(all_logits), loss

    def _forward(self, x: torch.Tensor, labels: torch.Tensor):
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.amp):
            logits = self.forward(x)
            return logits, self.criterion(logits.float(), labels)

    def out_of_memory_error(self) -> CnnkitError:
        size = self.batch_size
        if self.pieces > 1 or size == 1:
            images = -(-size // self.pieces)
            return CnnkitError(
                f"the device ran out of memory even at {images} image{'s' if images > 1 else ''} per forward pass "
                f"(batch size {size} in {self.pieces} pieces)",
                "use a smaller model or input size; the run's last checkpoint is intact",
            )
        hint = f"try --batch-size {max(1, size // 2)}"
        if not self.auto_batch:
            hint += ", or --auto-batch to split batches that do not fit"
        return CnnkitError(f"the device ran out of memory at batch size {size}", hint + "; the run's last checkpoint is intact")
