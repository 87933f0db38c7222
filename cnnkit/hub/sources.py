"""What `cnnkit download` can fetch: file names, upstream URLs and the sums they must match.

The torchvision datasets take their file lists and MD5 sums from torchvision's own
classes, and the ImageNet weights their URLs from torchvision's weight enums, so a
torchvision upgrade that moves a file moves it here too. The table is a plain dict
built once (`sources()`); tests add or swap entries in it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

# torch.hub's rule: the hex digits between the last "-" and the first "." of the
# file name are a prefix of the file's sha256 (hub.HASH_REGEX).
HASH_IN_NAME = re.compile(r"-([a-f0-9]*)\.")

CATS_DOGS_URL = (
    "https://download.microsoft.com/download/3/E/1/3E1C3F21-ECDB-4869-8368-6DEBA77B919F/kagglecatsanddogs_5340.zip"
)
WEIGHT_MODELS = ("vgg16", "resnet18", "mobilenet_v2", "alexnet")

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
class Source:
    """A dataset or a weights file and how it is laid out once installed.

    kind: "idx-gz" (gz files in torchvision's <Class>/raw folder), "cifar-tar"
    (a tar.gz extracted to `folder`), "pets-zip" (the PetImages zip), "weights".
    `folder` is relative to the data root, or to the torch hub dir for weights.
    `extracted` lists (relative path, md5) of files inside an archive, which is
    how an extracted dataset is verified without keeping its archive.
    """

    name: str
    kind: str
    description: str
    files: tuple[RemoteFile, ...]
    folder: str
    extracted: tuple[tuple[str, str], ...] = field(default=())

    @property
    def size(self) -> int | None:
        sizes = [f.size for f in self.files]
        return None if None in sizes else sum(sizes)


def _torchvision_idx(name: str, class_name: str, description: str) -> Source:
    import torchvision.datasets as tvd

    cls = getattr(tvd, class_name)
    files = tuple(
        RemoteFile(file, tuple(f"{mirror}{file}" for mirror in cls.mirrors), md5=md5, size=_KNOWN_SIZES.get((name, file)))
        for file, md5 in cls.resources
    )
    return Source(name, "idx-gz", description, files, f"{class_name}/raw")


def _cifar10() -> Source:
    from torchvision.datasets import CIFAR10

    archive = RemoteFile(CIFAR10.filename, (CIFAR10.url,), md5=CIFAR10.tgz_md5, size=_KNOWN_SIZES.get(("cifar10", CIFAR10.filename)))
    members = [*CIFAR10.train_list, *CIFAR10.test_list, [CIFAR10.meta["filename"], CIFAR10.meta["md5"]]]
    return Source(
        "cifar10", "cifar-tar", "CIFAR-10 python batches (torchvision)", (archive,), CIFAR10.base_folder,
        extracted=tuple((file, md5) for file, md5 in members),
    )


def _cats_dogs() -> Source:
    archive = RemoteFile(CATS_DOGS_URL.rsplit("/", 1)[-1], (CATS_DOGS_URL,), size=_CATS_DOGS_APPROX_SIZE, size_exact=False)
    return Source("cats-dogs", "pets-zip", "Kaggle Cats vs. Dogs, PetImages/{Cat,Dog} (Microsoft)", (archive,), "PetImages")


def weights_file(url: str, size: int | None = None) -> RemoteFile:
    """A weights file whose name carries its sha256 prefix, as torch.hub checks it.

    `size` comes from torchvision's `_file_size`, MB rounded to three decimals: approximate.
    """
    name = url.rsplit("/", 1)[-1]
    match = HASH_IN_NAME.search(name)
    return RemoteFile(name, (url,), sha256_prefix=match.group(1) if match and match.group(1) else None, size=size,
                      size_exact=False)


def _weights(model: str) -> Source:
    from cnnkit.models import get_spec
    from cnnkit.models.backbones import weights_enum

    entry = weights_enum(get_spec(model))
    megabytes = entry.meta.get("_file_size")
    size = int(megabytes * 1024 * 1024) if megabytes else None
    return Source(f"weights:{model}", "weights", f"{model} ImageNet weights (torchvision)", (weights_file(entry.url, size),), "checkpoints")


_TABLE: dict[str, Source] | None = None


def sources() -> dict[str, Source]:
    """Everything cnnkit knows how to download, keyed by dataset name or 'weights:<model>'."""
    global _TABLE
    if _TABLE is None:
        table = [
            _torchvision_idx("mnist", "MNIST", "MNIST digits, IDX .gz (torchvision)"),
            _torchvision_idx("fashion-mnist", "FashionMNIST", "Fashion-MNIST, IDX .gz (torchvision)"),
            _cifar10(),
            _cats_dogs(),
            *(_weights(model) for model in WEIGHT_MODELS),
        ]
        _TABLE = {source.name: source for source in table}
    return _TABLE


def dataset_names() -> list[str]:
    return [name for name, source in sources().items() if source.kind != "weights"]


def weights_key(model: str) -> str:
    """'weights:<canonical model name>' for a model name or alias."""
    from cnnkit.models import get_spec

    return f"weights:{get_spec(model).name}"


def hub_dir() -> Path:
    """torch.hub's directory (honours TORCH_HOME); weights go to its checkpoints/ folder."""
    import torch.hub

    return Path(torch.hub.get_dir())
