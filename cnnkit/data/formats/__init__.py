"""The built-in dataset formats. Each module registers its format on import; a new format
is one more module here and its name in this import."""

from cnnkit.data.formats import catalog, folder, idx, npz  # noqa: F401
