"""The one reporter in its three modes: rich bars on a terminal, plain lines in a log, warnings only when quiet."""

from __future__ import annotations

import ast
import io
import re
from pathlib import Path

import pytest

import cnnkit
from cnnkit.reporting import QUIET, Reporter, human_bytes

LABEL = "[bold]pets :cat:"  # user text: markup and an emoji code must print as spelled
SKIPPED = [("/data/[i]a.jpg", "truncated file"), ("/data/b.png", "not an image")]


class Terminal(io.StringIO):
    """What rich takes for a terminal: a stream whose isatty() says yes."""

    def isatty(self) -> bool:
        return True


def exercise(reporter: Reporter, tmp_path: Path) -> None:
    """One of everything a command reports: a note, warnings, skipped images, an epoch, a task, a download."""
    reporter.note(f"note: resizing {LABEL}")
    reporter.warn(f"odd file {LABEL}")
    reporter.skipped(SKIPPED)
    reporter.start(f"epoch 1/1 {LABEL}", total=3)
    for _ in range(3):
        reporter.advance(lambda: "loss 0.1000")
    reporter.finish(f"epoch 1/1 {LABEL}: loss 0.1000")
    with reporter.task(f"decoding {LABEL}", 4) as advance:
        for _ in range(4):
            advance()
    transfer = reporter.transfer(f"{LABEL}.zip", "https://example.org/pets.zip", total=4096)
    for _ in range(4):
        transfer.advance(1024)
    transfer.close()
    partial = tmp_path / "pets.zip.partial"
    partial.write_bytes(b"x" * 2048)
    reporter.transfer("pets.zip", "https://example.org/pets.zip", total=4096, already=2048).interrupted(partial)


WARNINGS = [
    f"warning: odd file {LABEL}",
    "warning: skipped unreadable image /data/[i]a.jpg: truncated file",
    "warning: skipped unreadable image /data/b.png: not an image",
]


def test_a_log_gets_plain_lines_one_per_epoch_and_a_few_per_download(tmp_path):
    log = io.StringIO()
    reporter = Reporter(stream=log)
    assert not reporter.live
    exercise(reporter, tmp_path)
    lines = log.getvalue().splitlines()
    assert lines[:4] == [f"note: resizing {LABEL}", *WARNINGS]
    assert lines[4] == f"epoch 1/1 {LABEL}: loss 0.1000"  # the epoch's one line; the task prints nothing
    assert lines[5] == f"downloading {LABEL}.zip (4.0 KiB) from https://example.org/pets.zip"
    assert [line.split(" at ")[0] for line in lines[6:9]] == [f"  {LABEL}.zip: {p}%" for p in (25, 50, 75)]
    assert lines[9].startswith(f"  {LABEL}.zip: 4.0 KiB in ")
    assert lines[10] == "downloading pets.zip (4.0 KiB) from https://example.org/pets.zip, resuming at 2.0 KiB"
    assert lines[11] == f"kept {tmp_path / 'pets.zip.partial'} (2.0 KiB); run again to resume"
    assert len(lines) == 12
    assert "\r" not in log.getvalue() and "\x1b" not in log.getvalue()  # no bar, no colour codes in a file


def test_quiet_prints_the_warnings_and_nothing_else(tmp_path):
    log = io.StringIO()
    reporter = Reporter(quiet=True, stream=log)
    exercise(reporter, tmp_path)
    assert log.getvalue().splitlines() == WARNINGS


def test_a_terminal_gets_rich_bars_with_their_labels_as_text(tmp_path):
    screen = Terminal()
    reporter = Reporter(stream=screen)
    assert reporter.live
    exercise(reporter, tmp_path)
    text = screen.getvalue()
    assert "\x1b[" in text  # bars drawn and erased in place (cursor and colour codes)
    for shown in (f"epoch 1/1 {LABEL}", f"decoding {LABEL}", f"{LABEL}.zip", f"note: resizing {LABEL}",
                  f"epoch 1/1 {LABEL}: loss 0.1000", f"kept {tmp_path / 'pets.zip.partial'}", *WARNINGS):
        assert shown in text, f"{shown!r} not shown as spelled:\n{text!r}"
    assert "downloading" not in text  # the bar says it; the log lines are for logs
    assert "🐱" not in text


def test_a_quiet_terminal_draws_no_bar(tmp_path):
    screen = Terminal()
    reporter = Reporter(quiet=True, stream=screen)
    assert not reporter.live
    exercise(reporter, tmp_path)
    assert re.sub(r"\x1b\[[0-9;]*m", "", screen.getvalue()).splitlines() == WARNINGS  # colour only


def test_the_shared_quiet_reporter_writes_to_the_stderr_of_the_moment(capsys):
    QUIET.note("not shown")
    QUIET.warn("shown")
    assert capsys.readouterr().err == "warning: shown\n"


@pytest.mark.parametrize("n, text", [(None, "?"), (0, "0 B"), (1023, "1,023 B"), (1536, "1.5 KiB"), (5 * 2**30, "5.0 GiB")])
def test_human_bytes(n, text):
    assert human_bytes(n) == text


def _cnnkit_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] == "cnnkit"}


def test_the_reporter_is_a_bottom_helper_that_data_reaches_without_the_engine():
    package = Path(cnnkit.__file__).parent
    assert _cnnkit_imports(package / "reporting.py") == set()
    lower = [p for folder in ("data", "hub") for p in sorted((package / folder).glob("**/*.py"))]
    assert lower
    upward = {str(p.relative_to(package)): sorted(name for name in _cnnkit_imports(p)
                                                  if name.split(".")[1:2] in (["engine"], ["cli"]))
              for p in lower}
    assert not {path: names for path, names in upward.items() if names}
