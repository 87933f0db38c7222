"""Standard output that cannot be written: a pipe whose reader left, a closed fd, a full disk.

cnnkit behaves like a standard tool. A reader that has had enough (`| head -1`) ends the command
quietly with 141 (128 + SIGPIPE, what the shell shows for `yes | head -1`'s yes). A closed or
full stdout is one true `error: cannot write to standard output: ...` line, exit 1, and never
the hint about files being left as they were (no file was written).

These run the installed command in a subprocess: only there is stdout a real file descriptor.
The broken pipe is made deterministic by closing its read end before cnnkit starts writing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import assert_clean_failure
from hostile import picture

SIGPIPE_EXIT = 141


def cnnkit_into(stdout, *args, cwd: Path, preexec_fn=None) -> subprocess.CompletedProcess:
    """Run `python -m cnnkit ARGS` in `cwd` with `stdout` (an fd or file) as its standard output.

    `cwd` is a scratch folder: `-m` puts the working directory first on sys.path, so run from
    a checkout it would import that checkout's cnnkit, whatever PYTHONPATH says.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("CNNKIT_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "cnnkit", *map(str, args)], stdout=stdout, stderr=subprocess.PIPE,
                          text=True, env=env, cwd=cwd, timeout=300, preexec_fn=preexec_fn)


def into_pipe_nobody_reads(*args, cwd: Path) -> subprocess.CompletedProcess:
    """A real pipe whose reader has already gone (`| head -1` after its line): every write is EPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return cnnkit_into(write_end, *args, cwd=cwd)
    finally:
        os.close(write_end)


def assert_quiet_stop(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == SIGPIPE_EXIT, done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
    assert not any(line.startswith("error:") for line in done.stderr.splitlines()), done.stderr


def assert_stdout_error(done: subprocess.CompletedProcess, reason: str) -> None:
    lines = assert_clean_failure(done.returncode, done.stderr, 1, after_output=True)  # notes may come first
    assert lines[0] == f"error: cannot write to standard output: {reason}", done.stderr
    assert "disk is full" not in done.stderr and "left as they were" not in done.stderr, done.stderr
    assert "Exception ignored" not in done.stderr, done.stderr


def test_summary_into_a_pipe_whose_reader_left_stops_quietly(tmp_path):
    assert_quiet_stop(into_pipe_nobody_reads("summary", "lenet", cwd=tmp_path))


def test_help_into_a_pipe_whose_reader_left_stops_quietly(tmp_path):
    # Help is printed by Typer while parsing, outside any command: the same rule holds there.
    assert_quiet_stop(into_pipe_nobody_reads("--help", cwd=tmp_path))


def test_predict_csv_into_a_pipe_whose_reader_left_stops_quietly(tiny_run, tmp_path):
    from PIL import Image

    run = tiny_run()
    for index in range(3):
        Image.fromarray(picture((28, 28), seed=index)).save(tmp_path / f"digit{index}.png")
    assert_quiet_stop(into_pipe_nobody_reads("predict", tmp_path, "--model", run, "--csv", "--device", "cpu", cwd=tmp_path))


def test_closed_stdout_is_one_error_line(tmp_path):
    # `cnnkit summary lenet >&-`: before, Python dropped every line silently and cnnkit exited 0.
    done = cnnkit_into(subprocess.DEVNULL, "summary", "lenet", cwd=tmp_path, preexec_fn=lambda: os.close(1))
    assert_stdout_error(done, "Bad file descriptor")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("args", [["summary", "lenet"], ["--version"]], ids=["summary", "version"])
def test_stdout_on_a_full_disk_is_one_error_line_about_stdout(tmp_path, args):
    with open("/dev/full", "w") as full:
        done = cnnkit_into(full, *args, cwd=tmp_path)
    assert_stdout_error(done, "No space left on device")
