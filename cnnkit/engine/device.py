"""Pick the training device and set up the CPU thread count."""

from __future__ import annotations

import os

import torch

from cnnkit.errors import UsageError


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def resolve_device(name: str = "auto") -> torch.device:
    """auto, cpu, cuda, cuda:N or mps; a device that is not there is a one-line error."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) if "LOCAL_RANK" in os.environ else torch.cuda.current_device())
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return _cpu()
    if name == "cpu":
        return _cpu()
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: CUDA is not available on this machine", "use --device cpu (or auto)")
        index = int(name.split(":", 1)[1]) if ":" in name else int(os.environ.get("LOCAL_RANK", 0))
        if index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return torch.device("cuda", index)
    if name == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise UsageError("--device mps: Apple's MPS backend is not available here", "use --device cpu (or auto)")
        return torch.device("mps")
    raise UsageError(f"unknown device '{name}'", "use auto, cpu, cuda, cuda:N or mps")


def _cpu() -> torch.device:
    # Match intra-op threads to the cores this process may use (containers often allow fewer),
    # unless the user chose a number with OMP_NUM_THREADS (torchrun sets it too).
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(usable_cores())
    return torch.device("cpu")
