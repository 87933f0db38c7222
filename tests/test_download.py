"""cnnkit download against a local HTTP server: checksums, resume, retries, mirrors, --from, layouts."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from download_helpers import FileServer, cifar_tarball, fake_mnist_train, md5, pets_zip, sha256
from conftest import assert_clean_failure

from cnnkit.hub import sources as tables
from cnnkit.data.catalog import sample_dir
from cnnkit.hub.sources import RemoteFile, weights_remote_file

MNIST_PATH = "/mnist/"  # the path of torchvision's first MNIST mirror, kept on ours
REAL_T10K = {p.name: p.read_bytes() for p in sample_dir().glob("t10k-*.gz")}
CATS_DOGS_PATH = "/download/3/E/1/3E1C3F21-ECDB-4869-8368-6DEBA77B919F/kagglecatsanddogs_5340.zip"


def serve_mnist(server: FileServer, train: dict[str, bytes], t10k: dict[str, bytes] = REAL_T10K) -> None:
    for name, data in {**train, **t10k}.items():
        server.files[MNIST_PATH + name] = data


def pin_mnist_train(monkeypatch, train: dict[str, bytes]) -> None:
    """The real train files are 60,000 images we do not ship: pin our small ones' MD5 instead.

    Only the two train entries change; the t10k files keep torchvision's real MD5 sums.
    """
    source = tables.sources()["mnist"]
    files = tuple(dataclasses.replace(f, md5=md5(train[f.name])) if f.name in train else f for f in source.files)
    monkeypatch.setitem(tables.sources(), "mnist", dataclasses.replace(source, files=files))


# A good download, end to end through torchvision's MNIST reader ---------------------------------


def test_mnist_download_installs_torchvision_layout_and_train_reads_it(cli, server, data_dir, monkeypatch):
    train = fake_mnist_train()
    serve_mnist(server, train)
    pin_mnist_train(monkeypatch, train)
    code, out, err = cli("download", "mnist", "--mirror", server.url, "--data-dir", data_dir)
    assert code == 0, err
    raw = data_dir / "MNIST" / "raw"
    for name, data in {**train, **REAL_T10K}.items():
        assert (raw / name).read_bytes() == data
        assert (raw / name.removesuffix(".gz")).is_file()
    assert not list(raw.glob("*.partial"))
    assert "downloaded" in out and "downloading t10k-images-idx3-ubyte.gz" in err
    assert "\r" not in err  # plain lines, not a redrawn bar, when stderr is not a terminal

    from cnnkit.data.idx import read_idx
    from cnnkit.data.resolve import load_dataset

    dataset = load_dataset("mnist", data_dir)
    real = read_idx(sample_dir() / "t10k-images-idx3-ubyte.gz")
    assert np.array_equal(dataset.splits["test"].images[:, 0].numpy(), real)
    assert len(dataset.splits["train"].labels) == 40

    # Idempotent: present and verified, so nothing is requested again.
    before = len(server.requests)
    code, out, err = cli("download", "mnist", "--mirror", server.url, "--data-dir", data_dir, "--json")
    assert code == 0, err
    assert json.loads(out)[0]["action"] == "already present"
    assert len(server.requests) == before
    # --force fetches again.
    code, out, _ = cli("download", "mnist", "--mirror", server.url, "--data-dir", data_dir, "--force", "--json")
    assert json.loads(out)[0]["action"] == "downloaded" and len(server.requests) == before + 4


def test_train_fetches_a_missing_catalog_dataset_through_the_downloader(server, data_dir, monkeypatch):
    train = fake_mnist_train()
    serve_mnist(server, train)
    pin_mnist_train(monkeypatch, train)
    monkeypatch.setenv("CNNKIT_MIRROR", server.url)
    from cnnkit.data.catalog import DatasetMissing
    from cnnkit.data.resolve import load_dataset
    from cnnkit.hub.install import fetch_missing

    with pytest.raises(DatasetMissing):  # the data layer itself never downloads
        load_dataset("mnist", data_dir)
    assert not server.requests
    dataset = load_dataset("mnist", data_dir, on_missing=fetch_missing)  # what train, evaluate, ... pass
    assert len(dataset.splits["test"].labels) == 10_000
    assert (data_dir / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()


# Checksums ------------------------------------------------------------------------------------


def test_checksum_mismatch_names_file_expected_and_actual_and_installs_nothing(cli, server, data_dir):
    train = fake_mnist_train()  # the table keeps torchvision's real MD5, which these cannot match
    serve_mnist(server, train)
    code, _, err = cli("download", "mnist", "--mirror", server.url, "--data-dir", data_dir)
    line = assert_clean_failure(code, err, after_output=True)[0]  # after the progress lines
    assert "train-images-idx3-ubyte.gz" in line
    assert "f68b3c2dcbeaaa9fbdd348bbdeb94873" in line  # torchvision's MD5
    assert md5(train["train-images-idx3-ubyte.gz"]) in line
    assert not any((data_dir / "MNIST" / "raw").iterdir())


def test_corrupt_download_leaves_the_previous_good_file_untouched(cli, server, data_dir, monkeypatch):
    train = fake_mnist_train()
    serve_mnist(server, train)
    pin_mnist_train(monkeypatch, train)
    assert cli("download", "mnist", "--mirror", server.url, "--data-dir", data_dir)[0] == 0
    good = data_dir / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz"
    before = good.read_bytes()
    corrupt = bytearray(before)
    corrupt[1000] ^= 0xFF
    server.files[MNIST_PATH + good.name] = bytes(corrupt)
    code, _, err = cli("download", "mnist", "--mirror", server.url, "--data-dir", data_dir, "--force")
    assert_clean_failure(code, err, after_output=True)  # after the progress lines
    assert "t10k-images-idx3-ubyte.gz" in err and "9fb629c4189551a2d022fa330f9573f3" in err and md5(bytes(corrupt)) in err
    assert good.read_bytes() == before
    assert not list(good.parent.glob("*.partial"))


# Resume, Range, retries -------------------------------------------------------------------------


def test_connection_cut_halfway_resumes_with_range(cli, server, data_dir, monkeypatch):
    train = fake_mnist_train()
    serve_mnist(server, train)
    pin_mnist_train(monkeypatch, train)
    path = MNIST_PATH + "t10k-images-idx3-ubyte.gz"
    half = len(REAL_T10K["t10k-images-idx3-ubyte.gz"]) // 2
    server.cut_after[path] = half
    code, _, err = cli("download", "mnist", "--mirror", server.url, "--data-dir", data_dir)
    assert code == 0, err
    hits = server.hits(path)
    assert [h.status for h in hits] == [200, 206]
    assert hits[1].range == f"bytes={half}-"
    assert "retrying" in err
    assert (data_dir / "MNIST/raw/t10k-images-idx3-ubyte.gz").read_bytes() == REAL_T10K["t10k-images-idx3-ubyte.gz"]


def test_server_without_range_support_starts_over(cli, server, data_dir, monkeypatch):
    train = fake_mnist_train()
    serve_mnist(server, train)
    pin_mnist_train(monkeypatch, train)
    server.range_support = False
    path = MNIST_PATH + "t10k-images-idx3-ubyte.gz"
    server.cut_after[path] = 300_000
    code, _, err = cli("download", "mnist", "--mirror", server.url, "--data-dir", data_dir)
    assert code == 0, err
    hits = server.hits(path)
    assert hits[1].range == "bytes=300000-" and hits[1].status == 200  # asked to resume, got the whole file
    assert (data_dir / "MNIST/raw/t10k-images-idx3-ubyte.gz").read_bytes() == REAL_T10K["t10k-images-idx3-ubyte.gz"]


def test_stale_partial_that_does_not_verify_is_fetched_once_from_scratch(server, data_dir, monkeypatch):
    from cnnkit.hub.download import fetch

    data = REAL_T10K["t10k-labels-idx1-ubyte.gz"]
    server.files["/f/" + "t10k-labels-idx1-ubyte.gz"] = data
    remote = RemoteFile("t10k-labels-idx1-ubyte.gz", ("https://example.org/f/t10k-labels-idx1-ubyte.gz",), md5=md5(data))
    dest = data_dir / remote.name
    dest.parent.mkdir(parents=True)
    Path(str(dest) + ".partial").write_bytes(b"x" * 100)  # not a prefix of the real file
    fetch(remote, dest, mirror=server.url)
    assert dest.read_bytes() == data
    assert [h.status for h in server.hits("/f/t10k-labels-idx1-ubyte.gz")] == [206, 200]


def test_server_errors_are_retried_with_backoff(cli, server, data_dir, monkeypatch):
    train = fake_mnist_train()
    serve_mnist(server, train)
    pin_mnist_train(monkeypatch, train)
    path = MNIST_PATH + "train-labels-idx1-ubyte.gz"
    server.fail_first[path] = 2
    code, _, err = cli("download", "mnist", "--mirror", server.url, "--data-dir", data_dir)
    assert code == 0, err
    assert [h.status for h in server.hits(path)] == [500, 500, 200]
    assert "HTTP 500" in err


def test_404_on_the_mirror_names_the_urls_tried(cli, server, data_dir):
    code, _, err = cli("download", "mnist", "--mirror", server.url, "--data-dir", data_dir)
    line = assert_clean_failure(code, err)[0]
    assert "404" in line and f"{server.url}mnist/train-images-idx3-ubyte.gz" in line
    assert f"{server.url}train-images-idx3-ubyte.gz" in line  # the flat fallback was tried too
    assert "--mirror" in err


def test_flat_mirror_folder_works_too(cli, server, data_dir, monkeypatch):
    train = fake_mnist_train()
    pin_mnist_train(monkeypatch, train)
    for name, data in {**train, **REAL_T10K}.items():
        server.files["/" + name] = data
    code, _, err = cli("download", "mnist", "--mirror", server.url, "--data-dir", data_dir)
    assert code == 0, err


# Offline --------------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("mirror", ["closed-port", "http://cnnkit-no-such-host.invalid/"])
def test_offline_fails_within_seconds_and_names_mirror_and_from(cli, data_dir, mirror):
    if mirror == "closed-port":  # picked when the test runs: test ids must be the same in every pytest-xdist worker
        mirror = f"http://127.0.0.1:{closed_port()}/"
    started = time.perf_counter()
    code, _, err = cli("download", "mnist", "--mirror", mirror, "--data-dir", data_dir)
    elapsed = time.perf_counter() - started
    assert_clean_failure(code, err)
    assert "no network" in err and "--mirror" in err and "--from" in err
    assert elapsed < 5, elapsed


def test_env_mirror_is_used(cli, server, data_dir, monkeypatch):
    monkeypatch.setenv("CNNKIT_MIRROR", server.url)
    code, _, err = cli("download", "mnist", "--data-dir", data_dir)
    assert_clean_failure(code, err, after_output=True)
    assert server.requests  # it asked our server (which has nothing)


# --from ---------------------------------------------------------------------------------------


def test_from_files_fetched_by_hand_installs_without_network(cli, data_dir, tmp_path, monkeypatch):
    train = fake_mnist_train()
    pin_mnist_train(monkeypatch, train)
    by_hand = tmp_path / "by-hand"
    by_hand.mkdir()
    for name, data in {**train, **REAL_T10K}.items():
        (by_hand / name).write_bytes(data)
    monkeypatch.setenv("CNNKIT_MIRROR", f"http://127.0.0.1:{closed_port()}/")  # any fetch would fail
    code, out, err = cli("download", "mnist", "--from", by_hand, "--data-dir", data_dir, "--json")
    assert code == 0, err
    assert json.loads(out)[0]["action"] == "imported"
    assert (data_dir / "MNIST/raw/t10k-images-idx3-ubyte").is_file()
    assert (by_hand / "t10k-images-idx3-ubyte.gz").is_file()  # the user's copy stays


def test_from_a_bad_file_is_refused(cli, data_dir, tmp_path):
    bad = tmp_path / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(REAL_T10K["t10k-images-idx3-ubyte.gz"][:-10])
    code, _, err = cli("download", "mnist", "--from", bad, "--data-dir", data_dir, "--mirror", f"http://127.0.0.1:{closed_port()}/")
    assert_clean_failure(code, err)
    assert "checksum mismatch for t10k-images-idx3-ubyte.gz" in err and str(bad) in err
    assert not (data_dir / "MNIST/raw/t10k-images-idx3-ubyte.gz").exists()


@pytest.mark.parametrize("given", ["holiday.gz", "empty-folder", "missing.gz"])
def test_from_something_that_matches_nothing_is_an_error(cli, data_dir, tmp_path, given):
    path = tmp_path / given
    if given == "holiday.gz":
        path.write_bytes(b"not mnist")
    elif given == "empty-folder":
        path.mkdir()
    code, _, err = cli("download", "mnist", "--from", path, "--data-dir", data_dir)
    assert_clean_failure(code, err)
    assert given in err


def test_the_shipped_sample_needs_no_download(cli, data_dir):
    code, out, err = cli("download", "mnist-sample", "--data-dir", data_dir, "--json")
    assert code == 0, err
    assert json.loads(out)[0]["action"] == "shipped" and not data_dir.exists()


# CIFAR-10 tarball -----------------------------------------------------------------------------


def pin_cifar(monkeypatch, tarball: bytes, members: dict[str, str]) -> None:
    source = tables.sources()["cifar10"]
    archive = dataclasses.replace(source.files[0], md5=md5(tarball))
    monkeypatch.setitem(tables.sources(), "cifar10", dataclasses.replace(
        source, files=(archive,), extracted=tuple((name, members[name]) for name, _ in source.extracted)))


def test_cifar_tarball_is_extracted_into_torchvision_layout(cli, server, data_dir, monkeypatch):
    import pickle

    tarball, members = cifar_tarball()
    pin_cifar(monkeypatch, tarball, members)
    server.files["/~kriz/cifar-10-python.tar.gz"] = tarball
    code, _, err = cli("download", "cifar10", "--mirror", server.url, "--data-dir", data_dir)
    assert code == 0, err
    folder = data_dir / "cifar-10-batches-py"
    assert sorted(p.name for p in folder.iterdir()) == sorted(members)
    with open(folder / "data_batch_3", "rb") as f:
        assert pickle.load(f)["data"].shape == (8, 3072)
    assert not (data_dir / "cifar-10-python.tar.gz").exists()
    assert not list(data_dir.glob(".cnnkit-extract-*"))
    code, out, _ = cli("download", "--list", "--json", "--data-dir", data_dir)
    assert {r["name"]: r["status"] for r in json.loads(out)}["cifar10"] == "verified"


def test_malicious_tarball_is_refused_and_nothing_is_extracted(cli, server, data_dir, monkeypatch):
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"good"))
        evil = tarfile.TarInfo("cifar-10-batches-py/../../evil.sh")
        evil.size = 4
        tar.addfile(evil, io.BytesIO(b"evil"))
    tarball = buffer.getvalue()
    pin_cifar(monkeypatch, tarball, {name: "0" * 32 for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                                                                "data_batch_5", "test_batch", "batches.meta"]})
    server.files["/~kriz/cifar-10-python.tar.gz"] = tarball
    code, _, err = cli("download", "cifar10", "--mirror", server.url, "--data-dir", data_dir)
    assert_clean_failure(code, err, after_output=True)  # after the progress lines
    assert "unsafe archive cifar-10-python.tar.gz" in err and "evil.sh" in err
    assert not (data_dir / "cifar-10-batches-py").exists()
    assert not (data_dir.parent / "evil.sh").exists() and not list(data_dir.glob(".cnnkit-extract-*"))


# Cats vs. dogs: PetImages zip, first-seen sha256, quarantine --------------------------------------


def test_cats_dogs_zip_quarantines_broken_images_and_records_sha256(cli, server, data_dir):
    from download_helpers import DATA_PETS

    good_jpeg = (DATA_PETS / "Cat" / "12450.jpg").read_bytes()
    archive = pets_zip(DATA_PETS, {"Cat/666.jpg": good_jpeg[: len(good_jpeg) // 2], "Dog/11702.jpg": b"this is not a JPEG\n",
                                   "Dog/0.jpg": b""})
    server.files[CATS_DOGS_PATH] = archive
    code, out, err = cli("download", "cats-dogs", "--mirror", server.url, "--data-dir", data_dir, "--json")
    assert code == 0, err
    result = json.loads(out)[0]
    assert sorted(q["path"] for q in result["quarantined"]) == ["Cat/666.jpg", "Dog/0.jpg", "Dog/11702.jpg"]
    quarantine = data_dir / "cats-dogs-quarantine"
    assert (quarantine / "Cat/666.jpg").is_file() and (quarantine / "Dog/11702.jpg").is_file()
    assert not (data_dir / "PetImages/Cat/666.jpg").exists()
    record = json.loads((data_dir / "cats-dogs.json").read_text())
    assert record["sha256"] == sha256(archive) and record["size"] == len(archive) and record["images"] == 100
    assert not (data_dir / "kagglecatsanddogs_5340.zip").exists()
    assert "3 undecodable image(s)" in err

    from cnnkit.data.resolve import load_dataset

    dataset = load_dataset("cats-dogs", data_dir, image_size=32)
    assert dataset.classes == ["Cat", "Dog"] and not dataset.skipped

    # A different file on a later download breaks trust-on-first-use: refused, data untouched.
    server.files[CATS_DOGS_PATH] = pets_zip(DATA_PETS, {"Cat/extra.jpg": good_jpeg})
    code, _, err = cli("download", "cats-dogs", "--mirror", server.url, "--data-dir", data_dir, "--force")
    assert_clean_failure(code, err, after_output=True)  # after the progress lines
    assert record["sha256"] in err and "first download" in err
    assert not (data_dir / "PetImages/Cat/extra.jpg").exists() and (data_dir / "PetImages/Cat/12450.jpg").is_file()


def test_truncated_zip_is_reported_as_corrupt(cli, data_dir, tmp_path):
    from download_helpers import DATA_PETS

    archive = tmp_path / "kagglecatsanddogs_5340.zip"
    data = pets_zip(DATA_PETS)
    archive.write_bytes(data[: len(data) * 2 // 3])
    code, _, err = cli("download", "cats-dogs", "--from", archive, "--data-dir", data_dir)
    assert_clean_failure(code, err)
    assert "kagglecatsanddogs_5340.zip" in err
    assert not (data_dir / "PetImages").exists()


# Weights ----------------------------------------------------------------------------------------


@pytest.fixture
def weights(tmp_path, monkeypatch):
    """A state_dict file named the torchvision way: <name>-<first 8 hex of its sha256>.pth."""
    import torch

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    path = tmp_path / "made.pth"
    torch.save({"fc.weight": torch.arange(6.0).reshape(2, 3), "fc.bias": torch.zeros(2)}, path)
    data = path.read_bytes()
    named = tmp_path / f"resnet18-{sha256(data)[:8]}.pth"
    path.rename(named)
    return named


def inject_weights(monkeypatch, named: Path) -> None:
    """Point the resnet18 entry at our file's URL; its hash prefix comes from the name, as torch.hub does it."""
    url = f"https://download.pytorch.org/models/{named.name}"
    source = tables.sources()["weights:resnet18"]
    monkeypatch.setitem(tables.sources(), "weights:resnet18", dataclasses.replace(source, files=(weights_remote_file(url),)))


def test_weights_download_into_the_torch_hub_cache(cli, server, weights, monkeypatch):
    import torch

    inject_weights(monkeypatch, weights)
    server.files[f"/models/{weights.name}"] = weights.read_bytes()
    code, out, err = cli("download", "--weights", "resnet", "--mirror", server.url, "--quiet")
    assert code == 0, err
    installed = Path(torch.hub.get_dir()) / "checkpoints" / weights.name
    assert out.strip() == str(installed) and installed.read_bytes() == weights.read_bytes()
    from cnnkit.safeload import load_state_dict_file

    assert set(load_state_dict_file(installed)) == {"fc.weight", "fc.bias"}


def test_weights_whose_sha256_does_not_match_the_name_are_refused(cli, server, weights):
    import torch

    server.files["/models/resnet18-f37072fd.pth"] = weights.read_bytes()  # torchvision's real name
    code, _, err = cli("download", "--weights", "resnet18", "--mirror", server.url)
    assert_clean_failure(code, err, after_output=True)  # after the progress lines
    assert "resnet18-f37072fd.pth" in err and "f37072fd" in err and sha256(weights.read_bytes()) in err
    assert not (Path(torch.hub.get_dir()) / "checkpoints" / "resnet18-f37072fd.pth").exists()


def test_weights_from_a_file_fetched_by_hand(cli, weights, monkeypatch):
    import torch

    inject_weights(monkeypatch, weights)
    code, out, err = cli("download", "--weights", "resnet18", "--from", weights, "--json")
    assert code == 0, err
    assert json.loads(out)[0]["action"] == "imported"
    assert (Path(torch.hub.get_dir()) / "checkpoints" / weights.name).is_file()


def test_weights_for_a_model_without_them_is_an_error(cli):
    code, _, err = cli("download", "--weights", "lenet")
    assert_clean_failure(code, err)
    assert "no pretrained weights" in err


# --list, usage --------------------------------------------------------------------------------


def test_list_shows_every_source_with_status(cli, server, data_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    train = fake_mnist_train()
    serve_mnist(server, train)
    pin_mnist_train(monkeypatch, train)
    assert cli("download", "mnist", "--mirror", server.url, "--data-dir", data_dir)[0] == 0
    code, out, _ = cli("download", "--list", "--json", "--data-dir", data_dir)
    rows = {r["name"]: r for r in json.loads(out)}
    assert set(rows) >= {"mnist", "fashion-mnist", "cifar10", "cats-dogs", "weights:vgg16", "weights:resnet18",
                         "weights:mobilenet_v2", "weights:alexnet"}
    assert rows["mnist"]["status"] == "verified" and rows["cifar10"]["status"] == "missing"
    assert rows["weights:resnet18"]["url"] == "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    (data_dir / "MNIST/raw/train-labels-idx1-ubyte.gz").write_bytes(b"damaged")
    code, out, _ = cli("download", "--list", "--data-dir", data_dir)
    assert code == 0 and "corrupt" in out and "weights:alexnet" in out and "verified" not in out


@pytest.mark.parametrize("args", [[], ["--list", "mnist"]])
def test_usage_errors_exit_2(cli, args):
    code, _, err = cli("download", *args)
    assert_clean_failure(code, err, expected_code=2)


def test_unknown_dataset_suggests_close_names(cli):
    code, _, err = cli("download", "mnsit")
    assert_clean_failure(code, err)
    assert "did you mean mnist" in err


# Ctrl-C -------------------------------------------------------------------------------------------


def test_ctrl_c_keeps_the_partial_file_exits_130_and_the_next_run_resumes(cli, server, data_dir):
    from download_helpers import DATA_PETS

    archive = pets_zip(DATA_PETS)
    server.files[CATS_DOGS_PATH] = archive
    server.trickle = 0.05  # 16 KiB every 50 ms: the transfer takes seconds
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("CNNKIT_DEBUG", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "cnnkit", "download", "cats-dogs", "--mirror", server.url, "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    partial = data_dir / "kagglecatsanddogs_5340.zip.partial"
    deadline = time.monotonic() + 60
    while not (partial.exists() and partial.stat().st_size > 0) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "resume" in err
    kept = partial.stat().st_size
    assert 0 < kept < len(archive)
    server.trickle = 0.0
    code, _, err = cli("download", "cats-dogs", "--mirror", server.url, "--data-dir", data_dir)
    assert code == 0, err
    assert server.requests[-1].range == f"bytes={kept}-" and server.requests[-1].status == 206
    assert (data_dir / "PetImages/Dog").is_dir()


def test_complete_partial_left_by_a_crash_gets_416_and_starts_over(server, data_dir):
    from cnnkit.hub.download import fetch

    data = REAL_T10K["t10k-labels-idx1-ubyte.gz"]
    server.files["/f/t10k-labels-idx1-ubyte.gz"] = data
    remote = RemoteFile("t10k-labels-idx1-ubyte.gz", ("https://example.org/f/t10k-labels-idx1-ubyte.gz",), md5=md5(data))
    dest = data_dir / remote.name
    dest.parent.mkdir(parents=True)
    Path(str(dest) + ".partial").write_bytes(b"y" * (len(data) + 10))
    fetch(remote, dest, mirror=server.url)
    assert dest.read_bytes() == data
    assert [h.status for h in server.hits("/f/t10k-labels-idx1-ubyte.gz")] == [416, 200]


def test_cats_dogs_from_a_zip_fetched_by_hand(cli, data_dir, tmp_path):
    from download_helpers import DATA_PETS

    archive = tmp_path / "kagglecatsanddogs_5340.zip"
    archive.write_bytes(pets_zip(DATA_PETS))
    code, out, err = cli("download", "cats-dogs", "--from", archive, "--data-dir", data_dir, "--json")
    assert code == 0, err
    assert json.loads(out)[0]["action"] == "imported" and json.loads(out)[0]["quarantined"] == []
    assert len(list((data_dir / "PetImages" / "Cat").glob("*.jpg"))) == 50 and archive.is_file()
    code, out, _ = cli("download", "cats-dogs", "--data-dir", data_dir, "--json")
    assert json.loads(out)[0]["action"] == "already present"


def test_a_host_that_never_answers_times_out_once_without_retries(data_dir):
    from cnnkit.hub.download import RetryPolicy, fetch
    from cnnkit.errors import DownloadError

    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        remote = RemoteFile("x.bin", ("https://example.org/x.bin",), md5="0" * 32)
        started = time.perf_counter()
        with pytest.raises(DownloadError, match="no network.*timed out"):
            fetch(remote, data_dir / "x.bin", mirror=f"http://127.0.0.1:{silent.getsockname()[1]}/",
                  policy=RetryPolicy(timeout_s=0.3))
        assert time.perf_counter() - started < 2  # one 0.3 s wait: the host is not asked again for the flat path
