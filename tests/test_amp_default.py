"""bf16 autocast by default where the CPU does bf16 in hardware (issue 18): detection, default, --no-amp, summary."""

from __future__ import annotations

import json

import pytest
import torch

from cnnkit.engine import device as device_module
from cnnkit.engine.config import default_amp
from cnnkit.engine.device import cpu_bf16, cpu_flags

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def fake_cpuinfo(tmp_path, flags: str):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    return path


def test_cpu_flags_reads_the_flags_line(tmp_path):
    assert cpu_flags(str(fake_cpuinfo(tmp_path, "fpu sse2 avx2 avx512f avx512_bf16"))) >= {"avx512_bf16", "avx2"}
    assert cpu_flags(str(tmp_path / "missing")) == frozenset()


@pytest.mark.parametrize(("capability", "flags", "expected"), [
    ("AVX512", "avx512f avx512_bf16", "AVX-512-BF16"),
    ("AVX512", "avx512f avx512_bf16 amx_tile amx_bf16", "AMX"),
    ("AVX512", "avx512f", None),  # AVX-512 without bf16: emulated
    ("AVX2", "avx2 avx512_bf16", None),  # ATEN_CPU_CAPABILITY=avx2: torch will not use them
    ("DEFAULT", "", None),
])
def test_cpu_bf16_needs_the_instructions_and_torch_using_them(monkeypatch, tmp_path, capability, flags, expected):
    info = fake_cpuinfo(tmp_path, flags)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(device_module, "cpu_flags", lambda: cpu_flags(str(info)))
    assert cpu_bf16() == expected
    assert default_amp(None, CPU) is (expected is not None)
    assert default_amp(False, CPU) is False  # --no-amp refuses it
    assert default_amp(True, CPU) is True


def test_this_machine_matches_its_own_flags():
    """No stand-ins: on this CPU the default follows /proc/cpuinfo and torch's real capability."""
    native = torch.backends.cpu.get_cpu_capability().startswith("AVX512") and bool(
        {"avx512_bf16", "amx_bf16"} & cpu_flags())
    assert default_amp(None, CPU) is native
    assert default_amp(None, CUDA) is True and default_amp(False, CUDA) is False


def test_summary_says_what_precision_was_used(cli, tmp_path):
    """--amp is recorded in the JSON summary; --no-amp trains in float32 and the table says so."""
    common = ("train", "perceptron", "--epochs", "1", "--limit", "64", "--device", "cpu", "--out", str(tmp_path))
    code, stdout, stderr = cli(*common, "--name", "amp", "--amp", "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["amp"] is True
    code, stdout, stderr = cli(*common, "--name", "no-amp", "--no-amp")
    assert code == 0, stderr
    assert "precision" in stdout and "float32" in stdout and "bf16" not in stdout
