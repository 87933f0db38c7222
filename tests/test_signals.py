"""SIGTERM stops `cnnkit train` the way Ctrl-C does (issue 13).

`kill`, `timeout`, systemd, Docker and batch schedulers send SIGTERM before they
kill. It used to end the process at once, losing the epoch in progress; now the
batch finishes, last.pt is saved, the resume command is printed, and the exit
status is 143 (128 + 15), as the shell reports a SIGTERM. This needs the real
installed command in a subprocess: a signal is delivered to a process. The resume runs in-process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import torch

from conftest import assert_clean_failure

ARGS = ["train", "mlp", "--epochs", "4", "--limit", "2000", "--batch-size", "16", "--device", "cpu", "--name", "cut"]


def test_sigterm_saves_last_pt_prints_the_resume_command_and_exits_143(cli, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("CNNKIT_DEBUG", None)
    proc = subprocess.Popen([sys.executable, "-m", "cnnkit", *ARGS], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stderr:  # wait for epoch 1 to end, then stop a later one mid-epoch
        seen.append(line)
        if line.startswith("epoch 1/4"):
            break
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    err = "".join(seen) + err
    assert proc.returncode == 143, err
    lines = assert_clean_failure(1, err.replace("interrupted:", "error:"), after_output=True)  # the one closing line
    assert "saved" in lines[0] and "last.pt" in lines[0], err
    assert lines[1] == "hint: resume with: cnnkit train --resume checkpoints/cut", err
    assert "SIGTERM" in err  # the warning says which signal it heard
    assert out == ""
    saved = torch.load(tmp_path / "checkpoints/cut/last.pt", weights_only=True)["train"]
    assert 1 <= saved["epoch"] < 4 and saved["step_in_epoch"] > 0, "SIGTERM did not stop mid-epoch"

    code, out, err = cli("train", "--resume", "checkpoints/cut", "--quiet")  # cli runs in tmp_path too
    assert code == 0, err
    assert out.strip() == "checkpoints/cut"
    finished = torch.load(tmp_path / "checkpoints/cut/last.pt", weights_only=True)["train"]
    assert finished["epoch"] == 4 and finished["step_in_epoch"] == 0
    assert [row["epoch"] for row in finished["history"]] == [1, 2, 3, 4]
