"""cnnkit recipes: the built-in recipes, one per tutorial experiment, with what the tutorial printed."""

from __future__ import annotations

from cnnkit.cli.app import app
from cnnkit.cli.common import JsonOption, handle_errors, print_json


@app.command(epilog="Examples:\n"
             "  cnnkit recipes\n"
             "  cnnkit train --recipe lenet-cifar10\n"
             "  cnnkit train --recipe lenet-cifar10 --epochs 1 --print-config\n"
             "  cnnkit recipes --json")
@handle_errors
def recipes(json_output: JsonOption = False) -> None:
    """List the built-in recipes: name, command, tutorial and section, what each sets, the tutorial's numbers."""
    from cnnkit.engine.recipes import RECIPES

    if json_output:
        print_json([{"name": r.name, "command": r.command, "tutorial": r.source, "experiment": r.experiment,
                     "sets": r.sets, "printed_val_acc": list(r.printed), "printed_note": r.printed_note}
                    for r in RECIPES])
        return
    from rich.table import Table
    from rich.text import Text

    from cnnkit.cli.common import stdout_console

    # One recipe per row, everything but its name folded into one column: 80 columns hold it.
    table = Table(show_lines=True, expand=False)
    table.add_column("recipe", no_wrap=True)
    table.add_column("tutorial, what it sets, what the tutorial printed (val acc per epoch)", overflow="fold")
    for r in RECIPES:
        sets = " ".join(f"{key}={_short(value)}" for key, value in r.sets.items())
        printed = " ".join(f"{v:.4g}" for v in r.printed) or "-"
        if r.printed_note:
            printed += f" ({r.printed_note})"
        # Text objects, not markup: the console prints markup as it is (see stdout_console)
        table.add_row(Text.assemble(r.name, "\n", (r.command, "dim")),
                      Text.assemble(f"{r.source}: {r.experiment}\n", (sets, "dim"), "\nprinted: ", printed))
    stdout_console().print(table)


def _short(value) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)
