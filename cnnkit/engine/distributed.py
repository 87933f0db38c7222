"""torchrun and DistributedDataParallel: process group setup and the few collectives cnnkit needs.

Every function is a no-op in a plain single-process run, so the engine calls
them unconditionally.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from cnnkit.errors import UsageError

TIMEOUT_ENV = "CNNKIT_DDP_TIMEOUT"
DEFAULT_TIMEOUT_S = 120  # a dead peer stops the others within this, even outside torchrun
MAX_TIMEOUT_S = 7 * 24 * 3600  # a week; far past it, timedelta overflows


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


# The variables torchrun sets for each process. A run is distributed only when all of them are there and agree:
# a stray RANK=1 left in a shell must not turn a plain run into a silent "rank 1" that prints nothing.
PLACE_ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK")
RENDEZVOUS_ENV = ("MASTER_ADDR", "MASTER_PORT")
ENV_HINT = "unset RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE for a single process, or launch with torchrun"


def _env_int(name: str, low: int, high: int) -> int:
    text = os.environ[name].strip()
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise UsageError(f"environment variable {name}={os.environ[name]!r} must be an integer from {low} to {high}", ENV_HINT)
    return value


def world() -> World:
    """The process's place as torchrun describes it in the environment; a partial or inconsistent set is an error."""
    timeout_s()  # checked with the rest, before any work starts
    present = [name for name in (*PLACE_ENV, "LOCAL_WORLD_SIZE") if name in os.environ]
    if not present:
        return World()
    if "WORLD_SIZE" not in os.environ:
        raise UsageError(f"{', '.join(present)} set without WORLD_SIZE: these are torchrun's variables", ENV_HINT)
    size = _env_int("WORLD_SIZE", 1, 1 << 20)
    if size == 1:  # one process, as `torchrun --nproc-per-node 1` describes it: every rank must be 0
        for name in present[1:]:
            _env_int(name, 1 if name == "LOCAL_WORLD_SIZE" else 0, 1 if name == "LOCAL_WORLD_SIZE" else 0)
        return World()
    missing = [name for name in (*PLACE_ENV, *RENDEZVOUS_ENV) if not os.environ.get(name, "").strip()]
    if missing:
        raise UsageError(f"WORLD_SIZE={size} but {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set", ENV_HINT)
    rank = _env_int("RANK", 0, size - 1)
    local_size = _env_int("LOCAL_WORLD_SIZE", 1, size) if "LOCAL_WORLD_SIZE" in os.environ else size
    local_rank = _env_int("LOCAL_RANK", 0, local_size - 1)
    _env_int("MASTER_PORT", 1, 65535)
    return World(rank, size, local_rank, local_size)


def timeout_s() -> float:
    """CNNKIT_DDP_TIMEOUT: seconds a rank waits for its peers (a positive, finite number)."""
    text = os.environ.get(TIMEOUT_ENV)
    if text is None:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= MAX_TIMEOUT_S:  # nan fails this too
        raise UsageError(f"environment variable {TIMEOUT_ENV}={text!r} must be a positive number of seconds, at most {MAX_TIMEOUT_S}",
                         f"unset {TIMEOUT_ENV} for the default of {DEFAULT_TIMEOUT_S} s")
    return value


def init(device: torch.device) -> World:
    """Join the process group (nccl on CUDA, gloo otherwise) when launched by torchrun."""
    place = world()
    if place.enabled and not dist.is_initialized():
        timeout = timedelta(seconds=timeout_s())
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
