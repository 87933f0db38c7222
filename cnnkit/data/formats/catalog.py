"""Catalog names (mnist, fashion-mnist, cifar10, cats-dogs, mnist-sample): each loads as its entry says."""

from __future__ import annotations

from cnnkit.data.catalog import CatalogEntry, get_entry, list_datasets, load_mnist_sample, load_torchvision
from cnnkit.data.dataset import Dataset
from cnnkit.data.spec import CATALOG_PRIORITY, DatasetFormat, DatasetSpec, LoadOptions, register_format


def claim(text: str) -> DatasetSpec | None:
    key = text.strip().lower()
    return DatasetSpec("catalog", key) if key in list_datasets() else None


def load(spec: DatasetSpec, options: LoadOptions) -> Dataset:
    from cnnkit.data.formats.folder import load_image_folder

    entry: CatalogEntry = get_entry(spec.name)
    if entry.layout == "shipped":
        return Dataset.of_tensors(spec, *load_mnist_sample())
    root = entry.image_root(options.data_dir)  # raises DatasetMissing for an image dataset that is not there
    if root is not None:
        return load_image_folder(root, spec, options, channels=None, resize_to=None)
    return Dataset.of_tensors(spec, *load_torchvision(entry, options.data_dir, options.on_missing))


def image_root(spec: DatasetSpec, data_dir):
    return get_entry(spec.name).image_root(data_dir)


register_format(DatasetFormat("catalog", claim, load, image_root, CATALOG_PRIORITY))
