"""cnnkit: image classification with convolutional networks, on PyTorch and torchvision.

The public API is imported lazily so that `import cnnkit` (and `cnnkit --help`)
does not pay for importing torch.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "get_model", "list_models", "get_dataset", "list_datasets"]


def __getattr__(name):
    if name in ("get_model", "list_models"):
        from cnnkit import models

        return getattr(models, name)
    if name == "get_dataset":
        from cnnkit.data.resolve import load_dataset

        return load_dataset
    if name == "list_datasets":
        from cnnkit.data.catalog import list_datasets

        return list_datasets
    raise AttributeError(f"module 'cnnkit' has no attribute {name!r}")
