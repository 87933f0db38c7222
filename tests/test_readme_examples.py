"""The README's self-contained examples run as written.

Convention: a line `<!-- test -->` right before a fenced code block marks the block as runnable. A
```console block runs its `$ ` lines (output lines are left out); any other block runs every line, as
bash does (comments and `\\` continuations included). Each block is one `bash -euo pipefail` script, run
in an empty temporary folder that holds what the README's examples name as the user's files:

- `tests/data/cifar10-sample/` and `tests/data/pets-sample/`: copies of the repository's samples
- `photos/`: the 100 cat and dog photos (Cat/, Dog/); `cat.jpg`: one of them
- `digits/` (8 PNG digits of mnist-sample) and `digit.png`

`cnnkit` there is this checkout's command, with tiny runs: a `train` or `finetune` that does not
`--resume` gets `--epochs 1 --limit 64` appended (the last value of an option wins), so a block checks
that the example works, not how well it trains. `python` is the interpreter running the tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
README = Path(os.environ.get("CNNKIT_README", ROOT / "README.md"))  # another file, to try marks before they land
MARK = "<!-- test -->"
TINY = ["--epochs", "1", "--limit", "64"]
BLOCK_TIMEOUT_S = 240

WRAPPER = f"""#!{sys.executable}
import sys
args = sys.argv[1:]
if args[:1] in (["train"], ["finetune"]) and "--resume" not in args:
    args += {TINY!r}
from cnnkit.cli import app
app(args, prog_name="cnnkit")
"""


def marked_blocks(text: str) -> list[tuple[int, str]]:
    """(line number of the block's opening fence, its script) for each block marked `<!-- test -->`."""
    lines = text.splitlines()
    blocks = []
    for number, line in enumerate(lines):
        if line.strip() != MARK:
            continue
        start = next((i for i in range(number + 1, len(lines)) if lines[i].strip()), None)
        if start is None or not lines[start].startswith("```"):
            raise AssertionError(f"README line {number + 1}: {MARK} is not followed by a code block")
        end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("```"))
        body = lines[start + 1:end]
        if lines[start].strip() == "```console":
            body = [line[2:] for line in _console_commands(body)]
        blocks.append((start + 1, "\n".join(body) + "\n"))
    return blocks


def _console_commands(body: list[str]) -> list[str]:
    """The `$ ` lines of a console block, with the lines a trailing backslash continues."""
    commands, continued = [], False
    for line in body:
        if line.startswith("$ ") or continued:
            commands.append(line if line.startswith("$ ") else "$ " + line)
            continued = line.rstrip().endswith("\\")
    return commands


def test_the_convention_reads_bash_and_console_blocks():
    text = "\n".join([
        "intro", MARK, "", "```bash", "run=$(cnnkit train cnn --quiet)   # a comment", "cnnkit evaluate \"$run\"", "```",
        "```bash", "not marked", "```",
        MARK, "```console", "$ cnnkit summary lenet \\", "    --explain", "output line", "$ cnnkit summary --list", "```",
    ])
    assert marked_blocks(text) == [
        (4, 'run=$(cnnkit train cnn --quiet)   # a comment\ncnnkit evaluate "$run"\n'),
        (12, "cnnkit summary lenet \\\n    --explain\ncnnkit summary --list\n"),
    ]
    with pytest.raises(AssertionError, match="not followed by a code block"):
        marked_blocks(f"{MARK}\ntext\n")


def workspace(root: Path) -> dict[str, str]:
    """The folder a block runs in, and the environment that puts the tiny `cnnkit` first on PATH."""
    from PIL import Image

    from cnnkit.data.catalog import load_mnist_sample

    for name in ("cifar10-sample", "pets-sample"):
        shutil.copytree(DATA / name, root / "tests" / "data" / name)
    shutil.copytree(DATA / "pets-sample", root / "photos")
    shutil.copy(next(iter(sorted((DATA / "pets-sample" / "Cat").iterdir()))), root / "cat.jpg")
    splits, _ = load_mnist_sample()
    (root / "digits").mkdir()
    for index in range(8):
        Image.fromarray(splits["test"].images[index, 0].numpy()).save(root / "digits" / f"{index}.png")
    shutil.copy(root / "digits" / "0.png", root / "digit.png")
    bin_dir = root / ".bin"
    bin_dir.mkdir()
    (bin_dir / "cnnkit").write_text(WRAPPER)
    (bin_dir / "cnnkit").chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)
    path = os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")])
    source = str(Path(__import__("cnnkit").__file__).parents[1])  # this checkout, wherever the test runs from
    pythonpath = os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PATH": path, "PYTHONPATH": pythonpath, "CNNKIT_DATA": str(root / "data")}
    env.pop("CNNKIT_DEBUG", None)
    return env


BLOCKS = marked_blocks(README.read_text(encoding="utf-8")) if README.is_file() else []


def test_the_readme_marks_examples_to_run():
    assert BLOCKS, "README.md has no <!-- test --> blocks (or is missing): nothing of it would be checked"


@pytest.mark.parametrize("line, script", BLOCKS, ids=[f"README.md:{line}" for line, _ in BLOCKS])
def test_readme_example_runs_as_written(tmp_path, line, script):
    env = workspace(tmp_path)
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)
    assert result.returncode == 0, f"README.md:{line} failed (exit {result.returncode}):\n{script}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr and "error:" not in result.stderr, result.stderr[-3000:]
