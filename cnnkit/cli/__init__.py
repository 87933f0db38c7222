"""The `cnnkit` command line. Each command lives in its own thin module."""

from importlib import import_module

from cnnkit.cli.app import app

# Each module registers its command on import. Order is the order in --help.
COMMAND_MODULES = (
    "download", "inspect", "summary", "visualize", "train", "finetune", "evaluate", "predict", "export",
)

for _name in COMMAND_MODULES:
    try:
        import_module(f"cnnkit.cli.{_name}")
    except ModuleNotFoundError as _exc:  # a command not built yet in this checkout
        if _exc.name != f"cnnkit.cli.{_name}":
            raise

__all__ = ["app"]
