"""`--resume` continues a run with the settings it was started with: refuse options that would be ignored.

What may change is what engine/runner.py `resume_training` takes (plus how the result is printed).
"""

from __future__ import annotations

from typing import Any

from cnnkit.errors import UsageError

# Parameter names (Python side) that --resume honours; everything else belongs to the run.
MAY_CHANGE = ("resume", "epochs", "device", "workers", "auto_batch", "json_output", "quiet")
MAY_CHANGE_FLAGS = "--epochs, --device, --workers and --auto-batch"


def refuse_fixed_options(ctx: Any) -> None:
    """A UsageError naming every option typed on the command line that --resume cannot apply.

    Only the command line counts: an environment variable (CNNKIT_DATA, CNNKIT_MEMORY_BUDGET) is a
    standing setting of the shell, not a request to change this run. Typer ships its own copy of Click,
    so the context and its ParameterSource are matched by name, not by importing click.
    """
    given = [_label(param) for param in ctx.command.params
             if param.name not in MAY_CHANGE and _source(ctx, param.name) == "COMMANDLINE"]
    if given:
        raise UsageError(
            f"--resume continues the run with its own settings; it cannot take {', '.join(given)}",
            f"only {MAY_CHANGE_FLAGS} may change on resume; start a new run for other settings",
        )


def _source(ctx: Any, name: str) -> str | None:
    source = ctx.get_parameter_source(name)
    return source.name if source is not None else None


def _label(param: Any) -> str:
    if param.param_type_name == "argument":
        return param.name.upper()  # MODEL
    label = max(param.opts, key=len)  # --batch-size rather than -b
    secondary = getattr(param, "secondary_opts", None)
    return f"{label}/{max(secondary, key=len)}" if secondary else label  # --amp/--no-amp
