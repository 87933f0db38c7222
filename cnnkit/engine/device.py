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
            return torch.device("cuda", _local_rank() if "LOCAL_RANK" in os.environ else torch.cuda.current_device())
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return _cpu()
    if name == "cpu":
        return _cpu()
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: CUDA is not available on this machine", "use --device cpu (or auto)")
        index = _cuda_index(name) if ":" in name else _local_rank()
        if index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return torch.device("cuda", index)
    if name == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise UsageError("--device mps: Apple's MPS backend is not available here", "use --device cpu (or auto)")
        return torch.device("mps")
    raise UsageError(f"unknown device '{name}'", "use auto, cpu, cuda, cuda:N or mps")


def describe_device(requested: str | None, device: torch.device) -> str:
    """What a run trains on and why, in words: `cpu (auto: no CUDA device)`, `cuda:0 (NVIDIA H200, auto)`."""
    requested = (requested or "auto").strip().lower()
    if device.type == "cuda":
        what = f"{device} ({torch.cuda.get_device_name(device)}, {'auto' if requested == 'auto' else 'asked for'})"
    elif requested == "auto":
        what = f"{device} (auto: {'Apple MPS' if device.type == 'mps' else 'no CUDA device'})"
    else:
        what = f"{device} (asked for)"
    return what

def _local_rank() -> int:
    """torchrun's LOCAL_RANK, checked with the rest of its variables (0 outside torchrun)."""
    from cnnkit.engine.distributed import world

    return world().local_rank


def _cuda_index(name: str) -> int:
    index = name.split(":", 1)[1].strip()
    if not index.isdigit():
        raise UsageError(f"unknown device '{name}'", "use auto, cpu, cuda, cuda:N or mps")
    return int(index)


def _cpu() -> torch.device:
    # Match intra-op threads to the cores this process may use (containers often allow fewer),
    # unless the user chose a number with OMP_NUM_THREADS (torchrun sets it too).
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(usable_cores())
    return torch.device("cpu")


# Forward multiply-adds per batch that make another CPU thread worth its hand-offs. Measured on 2 shared
# vCPUs: LeNet at batch 14 (9M) trains 2x faster on one thread than on two, the MNIST cnn at batch 64
# (340M) 1.2x faster on two, and in between it is a toss-up (README: Quick start, and Performance).
MACS_PER_THREAD = 50e6


def cpu_threads_for(forward_macs: float) -> int:
    """Intra-op threads for training steps whose forward pass does `forward_macs` multiply-adds."""
    return max(1, min(usable_cores(), int(forward_macs // MACS_PER_THREAD)))


def forward_macs(model: torch.nn.Module, input_shape: tuple[int, ...]) -> float:
    """Multiply-adds of one forward pass at `input_shape`, counted by torch's FLOP counter on one image."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    param = next(model.parameters(), None)
    x = torch.zeros((1, *input_shape[1:]), device=param.device if param is not None else "cpu")
    try:
        model.eval()  # BatchNorm must not count this image in its running statistics
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 2 * input_shape[0]


# ---- bf16 on the CPU (issue 18) ----------------------------------------------------------
# Instructions that do bf16 dot products in hardware. Without them oneDNN emulates bf16 with float32 math
# plus conversions, and autocast makes a CPU run slower, not faster.
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (empty where there is no /proc/cpuinfo)."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_bf16() -> str | None:
    """The native bf16 instructions this CPU has and torch dispatches to ("AMX", "AVX-512-BF16"), or None.

    torch's capability must be AVX-512 or better too: ATEN_CPU_CAPABILITY=avx2 (or an old build) means
    torch will not use them, and then bf16 is emulated.
    """
    if not torch.backends.cpu.get_cpu_capability().startswith("AVX512"):
        return None
    flags = cpu_flags()
    if "amx_bf16" in flags:
        return "AMX"
    return "AVX-512-BF16" if "avx512_bf16" in flags else None
