"""Dataset specs: the shipped sample, image folders (in memory, cached, streamed), IDX directories."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnkit.data.batches import TensorBatches, epoch_order
from cnnkit.data.dataset import FileSplit, TensorSplit, train_val_splits
from cnnkit.data.idx import write_idx
from cnnkit.data.memory import parse_bytes
from cnnkit.data.resolve import load_dataset
from cnnkit.errors import DataError, UsageError

from conftest import assert_clean_failure, digests, write_idx_pair
from hostile import idx_header, write_bad_checkpoint


def test_mnist_sample_split():
    ds = load_dataset("mnist-sample")
    train, test = ds.splits["train"], ds.splits["test"]
    assert (len(train), len(test)) == (8000, 2000)
    assert train.images.shape[1:] == (1, 28, 28) and train.images.dtype == torch.uint8
    assert ds.classes == [str(d) for d in range(10)]
    # every class is present in both splits, roughly balanced
    assert torch.bincount(test.labels, minlength=10).min() > 150


def test_image_folder_with_train_and_test(cifar_folder):
    ds = load_dataset(str(cifar_folder))
    assert ds.kind == "folder" and ds.channels == 3 and ds.size == (32, 32)
    assert ds.classes[:3] == ["airplane", "automobile", "bird"]
    assert (len(ds.splits["train"]), len(ds.splits["test"])) == (300, 100)
    assert isinstance(ds.splits["train"], TensorSplit)


def test_decoded_folder_is_cached_in_the_cache_directory(cifar_folder, cache_dir):
    first = load_dataset(str(cifar_folder)).splits["train"]
    caches = list(cache_dir.glob("decoded-*.pt"))
    assert len(caches) == 2  # train and test
    again = load_dataset(str(cifar_folder)).splits["train"]
    assert torch.equal(first.images, again.images)
    # a changed file invalidates the cache
    victim = next((cifar_folder / "train" / "cat").iterdir())
    Image.new("RGB", (32, 32), (255, 0, 0)).save(victim)
    changed = load_dataset(str(cifar_folder)).splits["train"]
    assert not torch.equal(first.images, changed.images)


def test_a_damaged_cache_is_decoded_again_not_trusted(cifar_folder, cache_dir):
    first = load_dataset(str(cifar_folder)).splits["train"]
    cache = max(cache_dir.glob("decoded-*.pt"), key=lambda c: c.stat().st_size)  # train's
    write_bad_checkpoint(cache, cache, "bit-flip")  # one pixel byte: torch.load alone would return it
    assert not torch.equal(torch.load(cache, weights_only=True)["images"], first.images)
    again = load_dataset(str(cifar_folder)).splits["train"]
    assert torch.equal(again.images, first.images)
    assert torch.equal(torch.load(cache, weights_only=True)["images"], first.images)  # and the cache is whole again


def test_class_folders_split_deterministically_by_seed(pets_folder):
    ds = load_dataset(str(pets_folder))
    assert list(ds.splits) == ["train"] and ds.classes == ["Cat", "Dog"]
    a_train, a_val, source = train_val_splits(ds, None, seed=3)
    b_train, b_val, _ = train_val_splits(ds, None, seed=3)
    c_train, c_val, _ = train_val_splits(ds, None, seed=4)
    assert source == "20% of train" and (len(a_train), len(a_val)) == (80, 20)
    assert torch.equal(a_val.images, b_val.images)
    assert not torch.equal(a_val.images, c_val.images)


def test_corrupt_files_are_skipped_and_named(cifar_folder):
    cat = cifar_folder / "train" / "cat"
    (cat / "truncated.jpg").write_bytes((cat / "0000.jpg").read_bytes()[:200] if (cat / "0000.jpg").exists() else next(cat.iterdir()).read_bytes()[:200])
    (cat / "notes.jpg").write_text("this is not a picture")
    (cat / "empty.png").write_bytes(b"")
    (cat / "Thumbs.db").write_bytes(b"junk")
    (cat / ".hidden.jpg").write_bytes(b"junk")
    ds = load_dataset(str(cifar_folder))
    skipped = {Path(path).name for path, _ in ds.skipped}
    assert skipped == {"truncated.jpg", "notes.jpg", "empty.png"}
    assert len(ds.splits["train"]) == 300


def test_mixed_sizes_and_modes_decode_to_one_shape(tmp_path):
    for cls, makers in {
        "a": [lambda: Image.new("RGB", (50, 40), "red"), lambda: Image.new("CMYK", (20, 30)), lambda: Image.new("P", (64, 64))],
        "b": [lambda: Image.new("RGBA", (10, 10), (0, 0, 0, 0)), lambda: Image.new("I;16", (33, 33), 40000), lambda: Image.new("L", (1, 1))],
    }.items():
        (tmp_path / cls).mkdir()
        for i, make in enumerate(makers):
            make().save(tmp_path / cls / f"{i}.{'tif' if i == 1 and cls == 'b' else 'png' if cls == 'b' else 'jpg' if i != 2 else 'png'}")
    ds = load_dataset(str(tmp_path), image_size=24)
    assert ds.size == (24, 24) and ds.channels == 3
    assert ds.splits["train"].images.shape == (6, 3, 24, 24)
    assert any("sizes" in note for note in ds.notes)


def test_streaming_when_over_the_memory_budget(cifar_folder):
    ds = load_dataset(str(cifar_folder), budget=1000)
    assert isinstance(ds.splits["train"], FileSplit) and ds.streamed
    assert any("streaming" in note for note in ds.notes)


@pytest.mark.parametrize(
    "layout,message",
    [("empty", "no class folders"), ("empty-class", "has no images"), ("file", "is a file")],
)
def test_bad_folders_are_clear_errors(tmp_path, layout, message):
    root = tmp_path / "ds"
    root.mkdir()
    if layout == "empty-class":
        (root / "cat").mkdir()
        (root / "dog").mkdir()
        Image.new("RGB", (8, 8)).save(root / "cat" / "x.png")
    if layout == "file":
        root = tmp_path / "file.txt"
        root.write_text("x")
    with pytest.raises(DataError) as info:
        load_dataset(str(root))
    assert message in info.value.message


def test_unknown_dataset_suggests_catalog_names():
    with pytest.raises(DataError) as info:
        load_dataset("cifar-10")
    assert "cifar10" in info.value.hint


def test_idx_directory(tmp_path):
    rng = np.random.default_rng(0)
    write_idx_pair(tmp_path, "train", rng.integers(0, 256, (50, 12, 12), dtype=np.uint8), rng.integers(0, 3, 50).astype(np.uint8))
    write_idx_pair(tmp_path, "t10k", rng.integers(0, 256, (20, 12, 12), dtype=np.uint8), rng.integers(0, 3, 20).astype(np.uint8), gz=True)
    (tmp_path / "classes.txt").write_text("circle\nsquare\ntriangle\n")
    ds = load_dataset(str(tmp_path))
    assert ds.kind == "idx" and ds.classes == ["circle", "square", "triangle"]
    assert (len(ds.splits["train"]), len(ds.splits["test"])) == (50, 20)
    assert ds.splits["train"].images.shape == (50, 1, 12, 12)


def test_idx_count_mismatch_is_an_error(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((5, 4, 4), np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4, np.uint8))
    with pytest.raises(DataError, match="5 images but"):
        load_dataset(str(tmp_path))


def test_a_gzip_longer_than_its_header_is_refused_after_reading_only_the_header(tmp_path):
    """A small header followed by 64 MB of zeros (a 64 KB gz): read what the header declares, then stop."""
    import gzip
    import tracemalloc

    from cnnkit.data.idx import read_idx

    bomb = tmp_path / "train-images-idx3-ubyte.gz"
    bomb.write_bytes(gzip.compress(idx_header(0x08, (2, 4, 4)) + bytes(64 << 20), compresslevel=1, mtime=0))
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="longer than its header says"):
            read_idx(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"read {peak} bytes into memory for a 32-byte payload"


def test_a_gzip_too_small_for_its_declared_dims_is_refused_before_decompressing(tmp_path):
    import gzip
    import tracemalloc

    from cnnkit.data.idx import read_idx

    bomb = tmp_path / "train-images-idx3-ubyte.gz"
    # 1000 x 1000 x 1000 = 1 GB declared by a file of a few dozen bytes: deflate cannot expand that far.
    bomb.write_bytes(gzip.compress(idx_header(0x08, (1000, 1000, 1000)) + bytes(100), mtime=0))
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="1000x1000x1000"):
            read_idx(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


@pytest.mark.parametrize("labels, message", [
    (np.array([0, 1.7, 2, 1, 0, 2], np.float32), "float32 labels"),
    (np.array([0, 1, 2, 1, 0, 200_000], np.int32), "at most 100000 classes"),
    (np.array([0, 1, 2, 1, 0, -3], np.int32), "negative"),
])
def test_idx_labels_must_be_small_non_negative_integers(cli, tmp_path, labels, message):
    root = tmp_path / "idx"
    root.mkdir()
    write_idx_pair(root, "train", np.zeros((6, 8, 8), np.uint8), labels)
    before = digests(root)
    code, _, stderr = cli("inspect-dataset", root)
    assert message in assert_clean_failure(code, stderr)[0]
    assert digests(root) == before


def test_plain_and_gz_idx_files_that_differ_are_an_error_naming_both(cli, tmp_path):
    root = tmp_path / "idx"
    root.mkdir()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 8, 8), dtype=np.uint8)
    write_idx_pair(root, "train", images, np.array([0, 1, 0, 1, 0, 1], np.uint8))
    write_idx(root / "train-images-idx3-ubyte.gz", images)  # the same data compressed: fine
    assert cli("inspect-dataset", root, "--json")[0] == 0
    write_idx(root / "train-images-idx3-ubyte.gz", 255 - images)  # an older or newer copy: which one?
    code, _, stderr = cli("inspect-dataset", root)
    error = assert_clean_failure(code, stderr)[0]
    assert "train-images-idx3-ubyte " in error and "train-images-idx3-ubyte.gz" in error and "different" in error


def test_epoch_order_is_a_function_of_seed_and_epoch():
    assert torch.equal(epoch_order(100, 1, 0, True), epoch_order(100, 1, 0, True))
    assert not torch.equal(epoch_order(100, 1, 0, True), epoch_order(100, 1, 1, True))
    split = TensorSplit(torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1), torch.arange(10))
    batches = TensorBatches(split, 4, torch.device("cpu"), shuffle=True, seed=0)
    full = [b[1] for b in batches.epoch(2)]
    resumed = [b[1] for b in batches.epoch(2, start_batch=1)]
    assert len(full) == 3 and all(torch.equal(a, b) for a, b in zip(full[1:], resumed))
    assert sorted(torch.cat(full).tolist()) == list(range(10))


def test_memory_budget_sizes():
    assert parse_bytes("4G") == 4 << 30 and parse_bytes("512M") == 512 << 20 and parse_bytes("1000") == 1000
    with pytest.raises(UsageError):
        parse_bytes("lots")


def test_training_on_folder_idx_and_stream(cli, cifar_folder, tmp_path):
    (cifar_folder / "train" / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    code, out, err = cli("train", "lenet", "--dataset", str(cifar_folder), "--epochs", "1", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["skipped_images"] == 1 and "broken.jpg" in err
    code, out, err = cli("train", "lenet", "--dataset", str(cifar_folder), "--epochs", "1",
                         "--memory-budget", "1K", "--workers", "0")
    assert code == 0, err
    assert "streaming" in err and "skipped images" in out
    assert err.count("broken.jpg") == 1  # one warning line per bad file


def test_resize_and_center_crop_match_torchvision():
    import torchvision.transforms as T

    from cnnkit.data.images import resize_and_crop

    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8))
    ours = np.asarray(resize_and_crop(photo, (224, 224), resize_to=256))
    reference = np.asarray(T.Compose([T.Resize(256), T.CenterCrop(224)])(photo))
    assert np.array_equal(ours, reference)


def test_folder_of_one_size_is_not_recropped(pets_folder):
    ds = load_dataset(str(pets_folder), image_size=224, resize_to=256)
    photo = sorted((pets_folder / "Cat").iterdir())[0]
    expected = torch.from_numpy(np.asarray(Image.open(photo).convert("RGB")).copy()).permute(2, 0, 1)
    assert ds.size == (180, 180)
    assert any(torch.equal(expected, img) for img in ds.splits["train"].images[:50])


def _camera_jpegs(root: Path, size=(1200, 900)) -> Path:
    """Six same-size photos-like JPEGs in two class folders (width x height = size)."""
    rng = np.random.default_rng(0)
    base = np.linspace(0, 255, size[0] * size[1] * 3).reshape(size[1], size[0], 3)
    for c, cls in enumerate(("cat", "dog")):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            pixels = np.clip(base * (0.5 + 0.2 * c) + rng.integers(0, 40, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, "RGB").save(root / cls / f"IMG_{i}.jpg", quality=85)
    return root


def test_large_same_size_photos_are_decoded_at_the_model_size(cli, tmp_path):
    root = _camera_jpegs(tmp_path / "photos")
    code, out, err = cli("train", "lenet", "--dataset", root, "--epochs", "1", "--out", tmp_path / "runs", "--json")
    assert code == 0, err
    run_dir = Path(json.loads(out)["run_dir"])
    data = torch.load(run_dir / "best.pt", map_location="cpu", weights_only=True)["data"]
    assert data["size"] == [32, 32]
    # What the training run held in memory: N x C x 32 x 32, not N x C x 900 x 1200.
    dataset = load_dataset(str(root), image_size=32, max_size=32)
    assert tuple(dataset.splits["train"].images.shape) == (6, 3, 32, 32)
    assert any("at 32x32" in note for note in dataset.notes)
    code, out, err = cli("evaluate", run_dir, "--split", "val", "--json")  # decoded alike from the checkpoint
    assert code == 0, err


def test_reduced_scale_jpeg_decoding_matches_a_full_decode_closely(tmp_path):
    from cnnkit.data.images import load_image, resize_and_crop

    root = _camera_jpegs(tmp_path / "photos", size=(2000, 1500))  # 3 Mpixels: decoded at reduced scale
    path = root / "cat" / "IMG_0.jpg"
    fast = load_image(path, 3, (32, 32)).float()
    with Image.open(path) as image:
        full = torch.from_numpy(np.array(resize_and_crop(image.convert("RGB"), (32, 32)))).permute(2, 0, 1).float()
    assert fast.shape == full.shape == (3, 32, 32)
    assert (fast - full).abs().mean() < 4.0  # DCT scaling then bilinear vs full decode then bilinear


# ---- the spec parser and its formats ---------------------------------------------------------


def _npz_format():
    """A format a user could add: a directory holding images.npz (uint8 N,H,W) and labels.npz, read with numpy."""
    from cnnkit.data.dataset import Dataset
    from cnnkit.data.spec import directory_format

    def load(spec, options):
        images = torch.from_numpy(np.load(spec.path / "images.npz")["arr_0"]).unsqueeze(1)
        labels = torch.from_numpy(np.load(spec.path / "labels.npz")["arr_0"].astype(np.int64))
        return Dataset.of_tensors(spec, {"train": TensorSplit(images, labels)}, ["even", "odd"])

    return directory_format("npz-pair", lambda path: (path / "images.npz").is_file(), load)


@pytest.fixture
def npz_format():
    from cnnkit.data.spec import register_format, unregister_format

    fmt = register_format(_npz_format())
    yield fmt
    unregister_format(fmt.name)


def test_a_format_registered_elsewhere_is_parsed_and_loads(npz_format, cli, tmp_path):
    from cnnkit.data.parse import parse_spec

    folder = tmp_path / "digits-npz"
    folder.mkdir()
    # A stray image folder inside would make it an ImageFolder if the new format were not asked first.
    (folder / "extra").mkdir()
    Image.new("L", (8, 8)).save(folder / "extra" / "0.png")
    labels = np.arange(40) % 2
    np.savez(folder / "images.npz", (labels[:, None, None] * 200 + np.zeros((40, 12, 12))).astype(np.uint8))
    np.savez(folder / "labels.npz", labels)

    spec = parse_spec(str(folder))
    assert (spec.kind, spec.name, spec.path) == ("npz-pair", "digits-npz", folder.resolve())
    data = load_dataset(str(folder))
    assert (data.kind, data.classes, data.channels, data.size, len(data.split("train"))) == ("npz-pair", ["even", "odd"], 1, (12, 12), 40)
    assert data.spec == str(folder.resolve())
    code, out, err = cli("inspect-dataset", folder, "--json")  # and every command reads it through the registry
    assert code == 0, err
    assert json.loads(out)["splits"]["train"]["class_counts"] == {"even": 20, "odd": 20}


def test_without_the_registration_the_same_folder_is_an_image_folder(tmp_path):
    folder = tmp_path / "digits-npz"
    (folder / "extra").mkdir(parents=True)
    Image.new("L", (8, 8)).save(folder / "extra" / "0.png")
    np.savez(folder / "images.npz", np.zeros((2, 4, 4), np.uint8))
    assert load_dataset(str(folder)).kind == "folder"


def test_a_format_name_registered_twice_is_refused(npz_format):
    from cnnkit.data.spec import register_format

    with pytest.raises(ValueError, match="registered twice"):
        register_format(_npz_format())


def test_catalog_names_win_over_a_folder_of_the_same_name(tmp_path, monkeypatch):
    from cnnkit.data.parse import parse_spec

    monkeypatch.chdir(tmp_path)
    (tmp_path / "mnist").mkdir()
    write_idx_pair(tmp_path / "mnist", "train", np.zeros((2, 4, 4), np.uint8), np.array([0, 1], np.uint8))
    assert parse_spec(" MNIST ").kind == "catalog"
    assert parse_spec("./mnist").kind == "idx"


def test_a_missing_catalog_dataset_goes_to_the_callers_on_missing(tmp_path):
    from cnnkit.data.catalog import DatasetMissing

    calls = []

    def on_missing(entry, data_dir):
        calls.append((entry.name, entry.layout, data_dir))
        raise DataError("offline in this test")

    with pytest.raises(DataError, match="offline in this test"):
        load_dataset("fashion-mnist", tmp_path, on_missing=on_missing)
    assert calls == [("fashion-mnist", "idx-gz", tmp_path)]
    # No handler: the data layer never downloads; it says how to.
    with pytest.raises(DatasetMissing) as info:
        load_dataset("cifar10", tmp_path)
    assert "cnnkit download cifar10" in info.value.hint
    # cats-dogs (825 MB, no published checksum) is never fetched on demand, handler or not.
    with pytest.raises(DatasetMissing, match="PetImages/Cat and PetImages/Dog"):
        load_dataset("cats-dogs", tmp_path, on_missing=on_missing)
    assert len(calls) == 1


def test_every_catalog_entry_says_how_it_is_laid_out_and_named():
    from cnnkit.data.catalog import catalog, list_datasets

    entries = catalog()
    assert list(entries) == list_datasets() == ["mnist-sample", "mnist", "fashion-mnist", "cifar10", "cats-dogs"]
    for entry in entries.values():
        assert entry.classes and entry.description
        assert entry.downloadable == (entry.layout != "shipped")
        assert all(f.expected or not f.size_exact for f in entry.files)  # a checksum, or a size known to be rough
    assert entries["cats-dogs"].classes == ("Cat", "Dog")
    assert load_dataset("mnist-sample").classes == list(entries["mnist-sample"].classes)


def test_the_data_layer_imports_neither_the_hub_nor_the_cli():
    import ast

    import cnnkit.data

    root = Path(cnnkit.data.__file__).parent
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert not name.startswith(("cnnkit.hub", "cnnkit.cli")), f"{path.relative_to(root)} imports {name}"
