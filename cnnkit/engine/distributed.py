"""torchrun and DistributedDataParallel: process group setup and the few collectives cnnkit needs.

Every function is a no-op in a plain single-process run, so the engine calls
them unconditionally.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

TIMEOUT_ENV = "CNNKIT_DDP_TIMEOUT"
DEFAULT_TIMEOUT_S = 120  # a dead peer stops the others within this, even outside torchrun


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def world() -> World:
    """The process's place as torchrun describes it in the environment."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    return World(int(os.environ.get("RANK", "0")), size, int(os.environ.get("LOCAL_RANK", "0")),
                 int(os.environ.get("LOCAL_WORLD_SIZE", str(size))))


def init(device: torch.device) -> World:
    """Join the process group (nccl on CUDA, gloo otherwise) when launched by torchrun."""
    place = world()
    if place.enabled and not dist.is_initialized():
        timeout = timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)))
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend, timeout=timeout)
    return place


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def all_reduce_sum(*tensors: torch.Tensor) -> None:
    if active():
        for tensor in tensors:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank if it is True on any: ranks must agree to stop together."""
    if not active():
        return flag
    value = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def broadcast(obj):
    """Rank 0's value of a picklable object, on every rank."""
    if not active():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def gather(obj) -> list | None:
    """Every rank's object, as a list on rank 0 (None elsewhere)."""
    if not active():
        return [obj]
    out = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out


def shutdown() -> None:
    if active():
        dist.destroy_process_group()


def on_rank_zero(action):
    """Run `action()` on rank 0 alone and return its result on every rank.

    A CnnkitError on rank 0 (a run directory in use, say) is raised on every rank, so the others do not
    wait in a collective for a peer that has stopped.
    """
    from cnnkit.errors import CnnkitError

    if not active():
        return action()
    outcome = (None, None)
    if dist.get_rank() == 0:
        try:
            outcome = (action(), None)
        except CnnkitError as exc:
            broadcast((None, (type(exc), exc.message, exc.hint)))
            raise
    result, failure = broadcast(outcome)
    if failure is not None:
        kind, message, hint = failure
        raise kind(message, hint)
    return result
