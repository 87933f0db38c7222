"""The `cnnkit` command line. Each command lives in its own thin module.

Importing a command module registers it on `app`; the import order is the order
in `cnnkit --help`. None of these modules imports torch at the top level.
"""

from cnnkit.cli.app import app
from cnnkit.cli import (  # noqa: F401  (registration side effects)
    download,
    inspect,
    summary,
    visualize,
    train,
    finetune,
    lr_find,
    evaluate,
    predict,
    export_idx,
    export,
    recipes,
    report,
)

__all__ = ["app"]
