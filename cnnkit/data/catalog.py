"""The built-in datasets, one entry each: files, checksums, layout, classes and how each loads.

As torchvision's dataset classes hold theirs, an entry holds every fact of its dataset;
the downloader (cnnkit.hub) and the loaders look them up here. The torchvision datasets
take their file lists and MD5 sums from torchvision's own classes, so a torchvision
upgrade that moves a file moves it here too. Entries are built on first use (they need
torchvision); `list_datasets` does not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from cnnkit.errors import DataError

DIGITS = tuple(str(d) for d in range(10))
# The entries' names, known without building the entries (that imports torchvision); catalog() checks they agree.
NAMES = ("mnist-sample", "mnist", "fashion-mnist", "cifar10", "cats-dogs")
# CIFAR-10's batches.meta label names; the file itself is pinned by torchvision's MD5.
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CATS_DOGS_URL = (
    "https://download.microsoft.com/download/3/E/1/3E1C3F21-ECDB-4869-8368-6DEBA77B919F/kagglecatsanddogs_5340.zip"
)
# Upstream sizes in bytes, only for the --list table and progress bars; the sums decide.
_KNOWN_SIZES = {
    ("mnist", "train-images-idx3-ubyte.gz"): 9_912_422,
    ("mnist", "train-labels-idx1-ubyte.gz"): 28_881,
    ("mnist", "t10k-images-idx3-ubyte.gz"): 1_648_877,
    ("mnist", "t10k-labels-idx1-ubyte.gz"): 4_542,
    ("fashion-mnist", "train-images-idx3-ubyte.gz"): 26_421_880,
    ("fashion-mnist", "train-labels-idx1-ubyte.gz"): 29_515,
    ("fashion-mnist", "t10k-images-idx3-ubyte.gz"): 4_422_102,
    ("fashion-mnist", "t10k-labels-idx1-ubyte.gz"): 5_148,
    ("cifar10", "cifar-10-python.tar.gz"): 170_498_071,
}
# No checksum is published for the PetImages zip; this is only the order of magnitude
# (TensorFlow Datasets pins the older 3367a zip at 824,894,548 bytes).
_CATS_DOGS_APPROX_SIZE = 825_000_000
# A download that brings more than its file's byte_limit is stopped (an endless body
# would fill the disk). With no size known, the ceiling sits well above the largest
# catalog file (Cats vs. Dogs, ~825 MB).
UNKNOWN_SIZE_LIMIT = 4 * 2**30


class DatasetMissing(DataError):
    """A catalog dataset that is not in the data root (and that nobody installed when asked)."""


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch. Exactly one of md5 / sha256_prefix is set, or neither (trust on first use)."""

    name: str
    urls: tuple[str, ...]
    md5: str | None = None
    sha256_prefix: str | None = None
    size: int | None = None
    size_exact: bool = True  # False: `size` is an order of magnitude (Cats vs. Dogs, weights' rounded MB)

    @property
    def byte_limit(self) -> int:
        """The most bytes a download of this file may bring before it is stopped."""
        if self.size is None:
            return UNKNOWN_SIZE_LIMIT
        # An exact size is the limit: any other size fails the checksum anyway. An
        # approximate one gets an eighth more, and a MiB for small files.
        return self.size if self.size_exact else self.size + self.size // 8 + 2**20

    @property
    def expected(self) -> tuple[str, str] | None:
        """(algorithm, expected hex) or None when nothing is published."""
        if self.md5:
            return "md5", self.md5
        if self.sha256_prefix:
            return "sha256", self.sha256_prefix
        return None


@dataclass(frozen=True)
class CatalogEntry:
    """A built-in dataset.

    layout: "shipped" (IDX files inside the package), "idx-gz" (gz files in
    torchvision's <Class>/raw folder), "cifar-tar" (a tar.gz extracted to `folder`),
    "pets-zip" (a zip of class folders extracted to `folder`). `folder` is relative to
    the data root. `extracted` lists (relative path, md5) of files inside an archive,
    which is how an extracted dataset is verified without keeping its archive.
    `classes` are the class names in label order; for "pets-zip" they are also the
    class folders. `fetch_when_missing`: a command that needs the dataset downloads it
    (through the caller's `on_missing`) instead of failing with the download hint.
    """

    name: str
    description: str
    layout: str
    classes: tuple[str, ...]
    folder: str = ""
    files: tuple[RemoteFile, ...] = ()
    extracted: tuple[tuple[str, str], ...] = field(default=())
    torchvision_class: str | None = None  # the torchvision.datasets class that reads the installed files
    fetch_when_missing: bool = False

    @property
    def size(self) -> int | None:
        sizes = [f.size for f in self.files]
        return None if None in sizes else sum(sizes)

    @property
    def downloadable(self) -> bool:
        return bool(self.files)

    def missing_hint(self) -> str:
        return (
            f"run `cnnkit download {self.name}` (or `cnnkit download {self.name} --from FILE` with files fetched by hand, "
            f"or --mirror URL); datasets live under --data-dir"
        )

    def image_root(self, data_dir: Path) -> Path | None:
        """The folder of class folders for a dataset of image files; None for tensor datasets."""
        if self.layout != "pets-zip":
            return None
        root = Path(data_dir) / self.folder
        if not all((root / name).is_dir() for name in self.classes):
            expected = " and ".join(f"{self.folder}/{name}" for name in self.classes)
            raise DatasetMissing(f"dataset '{self.name}' is not in {data_dir} (expected {expected})", self.missing_hint())
        return root


def _torchvision_idx(name: str, class_name: str, description: str, classes) -> CatalogEntry:
    import torchvision.datasets as tvd

    cls = getattr(tvd, class_name)
    files = tuple(
        RemoteFile(file, tuple(f"{mirror}{file}" for mirror in cls.mirrors), md5=md5, size=_KNOWN_SIZES.get((name, file)))
        for file, md5 in cls.resources
    )
    return CatalogEntry(name, description, "idx-gz", tuple(classes or cls.classes), f"{class_name}/raw", files,
                        torchvision_class=class_name, fetch_when_missing=True)


def _cifar10() -> CatalogEntry:
    from torchvision.datasets import CIFAR10

    archive = RemoteFile(CIFAR10.filename, (CIFAR10.url,), md5=CIFAR10.tgz_md5, size=_KNOWN_SIZES.get(("cifar10", CIFAR10.filename)))
    members = [*CIFAR10.train_list, *CIFAR10.test_list, [CIFAR10.meta["filename"], CIFAR10.meta["md5"]]]
    return CatalogEntry(
        "cifar10", "CIFAR-10: 50,000 / 10,000, 32x32 RGB, 10 classes", "cifar-tar", CIFAR10_CLASSES, CIFAR10.base_folder,
        (archive,), extracted=tuple((file, md5) for file, md5 in members), torchvision_class="CIFAR10",
        fetch_when_missing=True,
    )


def _cats_dogs() -> CatalogEntry:
    archive = RemoteFile(CATS_DOGS_URL.rsplit("/", 1)[-1], (CATS_DOGS_URL,), size=_CATS_DOGS_APPROX_SIZE, size_exact=False)
    # Not fetched on demand: 825 MB with no published checksum is for `cnnkit download` to decide.
    return CatalogEntry("cats-dogs", "Kaggle Cats vs. Dogs (PetImages): ~25,000 photos, 2 classes", "pets-zip",
                        ("Cat", "Dog"), "PetImages", (archive,))


_CATALOG: dict[str, CatalogEntry] | None = None


def catalog() -> dict[str, CatalogEntry]:
    """Every built-in dataset by name, built once; tests swap entries in it."""
    global _CATALOG
    if _CATALOG is None:
        entries = [
            CatalogEntry("mnist-sample", "MNIST test set shipped with cnnkit: 8,000 train / 2,000 test, 28x28 grey",
                         "shipped", DIGITS),
            # torchvision names MNIST's classes "0 - zero", ...; the digits themselves are the names here.
            _torchvision_idx("mnist", "MNIST", "MNIST handwritten digits: 60,000 / 10,000, 28x28 grey", DIGITS),
            _torchvision_idx("fashion-mnist", "FashionMNIST", "Fashion-MNIST clothing: 60,000 / 10,000, 28x28 grey", None),
            _cifar10(),
            _cats_dogs(),
        ]
        if [e.name for e in entries] != list(NAMES):
            raise AssertionError("catalog.NAMES and the catalog entries disagree")
        _CATALOG = {entry.name: entry for entry in entries}
    return _CATALOG


def get_entry(name: str) -> CatalogEntry:
    return catalog()[name]


def list_datasets() -> list[str]:
    return list(NAMES)


def sample_dir() -> Path:
    return Path(str(resources.files("cnnkit.data") / "sample"))


def load_mnist_sample():
    """The MNIST test set, split deterministically: every fifth image is held out for test."""
    import numpy as np
    import torch

    from cnnkit.data.dataset import TensorSplit
    from cnnkit.data.idx import read_idx

    folder = sample_dir()
    images = torch.from_numpy(read_idx(folder / "t10k-images-idx3-ubyte.gz").copy()).unsqueeze(1)
    labels = torch.from_numpy(read_idx(folder / "t10k-labels-idx1-ubyte.gz").astype(np.int64))
    test = torch.arange(len(labels)) % 5 == 0
    return {
        "train": TensorSplit(images[~test], labels[~test]),
        "test": TensorSplit(images[test], labels[test]),
    }, list(DIGITS)


def _open_torchvision(entry: CatalogEntry, root: Path, train: bool, on_missing):
    import torchvision.datasets as tvd

    cls = getattr(tvd, entry.torchvision_class)
    try:
        return cls(root=str(root), train=train, download=False)
    except RuntimeError:
        pass
    if on_missing is None or not entry.fetch_when_missing:
        raise DatasetMissing(f"dataset '{entry.name}' is not in {root}", entry.missing_hint())
    on_missing(entry, root)
    try:
        return cls(root=str(root), train=train, download=False)
    except RuntimeError as exc:
        raise DataError(f"dataset '{entry.name}' in {root} cannot be read after download ({exc})",
                        entry.missing_hint()) from None


def load_torchvision(entry: CatalogEntry, data_dir: Path, on_missing=None):
    """The train and test splits of a torchvision dataset as uint8 tensors, and the entry's classes."""
    import numpy as np
    import torch

    from cnnkit.data.dataset import TensorSplit

    splits = {}
    for split, train in (("train", True), ("test", False)):
        ds = _open_torchvision(entry, data_dir, train, on_missing)
        data = torch.as_tensor(np.asarray(ds.data))
        images = data.unsqueeze(1) if data.ndim == 3 else data.permute(0, 3, 1, 2).contiguous()
        splits[split] = TensorSplit(images, torch.as_tensor(np.asarray(ds.targets), dtype=torch.long))
    return splits, list(entry.classes)
