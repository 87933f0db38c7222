"""cnnkit: image classification with convolutional networks, on PyTorch and torchvision.

The public API is imported lazily so that `import cnnkit` (and `cnnkit --help`)
does not pay for importing torch.
"""

import os as _os

from cnnkit.version import __version__

# Idle OpenMP threads should sleep, not spin. On a busy or shared machine spinning
# threads wait for descheduled siblings, and a small CNN trained 5x slower with 2
# threads than with 1 (measured on 2 cores under load). It must be set before torch
# loads its OpenMP runtime; a value the user set wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__all__ = ["__version__", "get_model", "list_models", "get_dataset", "list_datasets"]


def __getattr__(name):
    if name in ("get_model", "list_models"):
        from cnnkit import models

        return getattr(models, name)
    if name == "get_dataset":
        from functools import partial

        from cnnkit.data.resolve import load_dataset
        from cnnkit.hub.install import fetch_missing

        return partial(load_dataset, on_missing=fetch_missing)  # a missing catalog dataset is downloaded
    if name == "list_datasets":
        from cnnkit.data.catalog import list_datasets

        return list_datasets
    raise AttributeError(f"module 'cnnkit' has no attribute {name!r}")
