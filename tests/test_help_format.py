"""Help at 80 columns and Typer's own usage errors, through the installed command."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import assert_clean_failure, run_cnnkit

def command_names() -> list[str]:
    import typer

    from cnnkit.cli import app

    return sorted(typer.main.get_command(app).list_commands(None))


COMMANDS = command_names()  # every command the app has, so a new one is checked too
NARROW = {"COLUMNS": "80", "TERMINAL_WIDTH": "80"}


def all_help() -> dict[str, str]:
    """Every command's --help at 80 columns, printed in one process (one start of Python, not eleven)."""
    code = (
        "import sys\nfrom cnnkit.cli import app\n"
        f"for name in {[None, *COMMANDS]!r}:\n"
        "    print('=====', name)\n"
        "    try:\n        app([name, '--help'] if name else ['--help'], prog_name='cnnkit')\n"
        "    except SystemExit:\n        pass\n"
        "print('=====', 'torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, **NARROW}).stdout
    sections = re.split(r"^===== (\S+)\n", out, flags=re.M)[1:]
    return dict(zip(sections[::2], sections[1::2]))


@pytest.fixture(scope="module")
def helps() -> dict[str, str]:
    return all_help()


def test_help_does_not_import_torch_with_completion_on(helps):
    assert "--install-completion" in helps["None"]
    assert list(helps)[-1] == "False"  # the last marker says whether torch was imported


@pytest.mark.parametrize("command", ["None", *COMMANDS])
def test_help_fits_80_columns_uncut_and_without_flag_placeholders(helps, command):
    text = helps[command]
    assert text.strip(), f"no help for {command}"
    body = [line for line in text.splitlines() if not line.startswith("Usage:")]
    assert max(map(len, body)) <= 80, "\n".join(line for line in body if len(line) > 80)
    assert "…" not in text and not any(line.rstrip().endswith("...") for line in body), text
    assert "<bool>" not in text and "╭" not in text


def test_the_commands_list_shows_whole_summaries(helps):
    # Click cut these to "check their..." beside the name; now they wrap.
    assert "checksums and install them where train finds them." in helps["None"]


def test_each_example_is_a_line_of_its_own(helps):
    examples = helps["train"].split("Examples:")[1]
    assert " | " not in examples
    lines = [line.strip() for line in examples.splitlines() if line.strip()]
    assert "cnnkit train lenet" in lines and "run=$(cnnkit train cnn --epochs 1 --quiet)" in lines
    assert "3,244,244" not in helps["summary"] and "--input-size 3,224,224" in helps["summary"]


@pytest.mark.parametrize("args, message, hint", [
    (["train", "--epoch", "3"], "error: no such option: --epoch", "hint: did you mean --epochs? see cnnkit train --help"),
    (["train", "--epochs", "x"], "error: invalid value for '--epochs'", "hint: see cnnkit train --help"),
    (["train", "--optimizer", "sgdd"], "error: invalid value for '--optimizer'", "hint: see cnnkit train --help"),
    (["evaluate"], "error: missing argument 'checkpoint'", "hint: see cnnkit evaluate --help"),
    (["--bogus"], "error: no such option: --bogus", "hint: see cnnkit --help"),
    (["trian"], "error: no such command 'trian'", "hint: see cnnkit --help"),
])
def test_usage_errors_are_one_error_and_one_hint_line(tmp_path, args, message, hint):
    result = run_cnnkit(*args, cwd=tmp_path, env=NARROW)
    lines = assert_clean_failure(result.returncode, result.stderr, 2)
    assert len(lines) == 2 and lines[0].startswith(message) and lines[1] == hint, result.stderr
    assert "Usage:" not in result.stderr and "╭" not in result.stderr and result.stdout == ""
