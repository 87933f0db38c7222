"""cnnkit download against hostile servers, archives and planted links.

An endless body stops at the file's expected size; a server that drips bytes hits the
per-file deadline (CNNKIT_DOWNLOAD_DEADLINE); a link planted where the download writes
(a .partial, an installed folder, the quarantine) is removed as a link and what it
points at keeps its sha256; zip symlink chains and archives of 100,001 empty members
are refused as unsafe before anything is written.
"""

from __future__ import annotations

import dataclasses
import io
import os
import socket
import stat
import zipfile

import pytest

from download_helpers import DATA_PETS, fake_mnist_train, many_empty_members_zip, pets_zip
from conftest import assert_clean_failure, digests
from test_download import MNIST_PATH, REAL_T10K, pin_mnist_train, serve_mnist

from cnnkit.hub import sources as tables
from cnnkit.hub.sources import RemoteFile

PETS_ZIP = "kagglecatsanddogs_5340.zip"


@pytest.fixture
def mnist(server, monkeypatch) -> dict[str, bytes]:
    """The mirror serves a small MNIST train split (pinned) and the real t10k files."""
    train = fake_mnist_train()
    serve_mnist(server, train)
    pin_mnist_train(monkeypatch, train)
    return {**train, **REAL_T10K}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Sizes and deadlines ----------------------------------------------------------------------------


@pytest.mark.parametrize("announce", [None, 10**12], ids=["no-length", "announces-a-terabyte"])
def test_an_endless_body_is_stopped_at_the_expected_size_and_leaves_nothing(cli, server, data_dir, mnist, announce):
    name = "t10k-labels-idx1-ubyte.gz"  # 4,542 bytes upstream, and the table knows it
    server.endless[MNIST_PATH + name] = announce
    code, _, err = cli("download", "mnist", "--mirror", server.url, "--data-dir", data_dir)
    line = assert_clean_failure(code, err, after_output=True)[0]  # after the progress of the files before it
    assert name in line and "more than the 4,542 bytes expected" in line
    raw = data_dir / "MNIST" / "raw"
    assert not (raw / name).exists() and not list(raw.glob("*.partial"))
    assert (raw / "t10k-images-idx3-ubyte.gz").read_bytes() == mnist["t10k-images-idx3-ubyte.gz"]


def test_a_dripping_server_hits_the_per_file_deadline_and_the_next_run_resumes(cli, server, data_dir, mnist, monkeypatch):
    name = "train-images-idx3-ubyte.gz"
    server.drip[MNIST_PATH + name] = 0.1  # a byte every 0.1 s never trips the 8 s read timeout
    monkeypatch.setenv("CNNKIT_DOWNLOAD_DEADLINE", "1.5")
    code, _, err = cli("download", "mnist", "--mirror", server.url, "--data-dir", data_dir)
    line = assert_clean_failure(code, err, after_output=True)[0]
    assert f"gave up on {name} after the 1.5 s deadline" in line and "CNNKIT_DOWNLOAD_DEADLINE" in err
    partial = data_dir / "MNIST" / "raw" / f"{name}.partial"
    kept = partial.stat().st_size
    assert 0 < kept < 100 and not (data_dir / "MNIST" / "raw" / name).exists()

    del server.drip[MNIST_PATH + name]
    monkeypatch.delenv("CNNKIT_DOWNLOAD_DEADLINE")
    code, _, err = cli("download", "mnist", "--mirror", server.url, "--data-dir", data_dir)
    assert code == 0, err
    assert server.hits(MNIST_PATH + name)[-1].range == f"bytes={kept}-"
    assert (data_dir / "MNIST" / "raw" / name).read_bytes() == mnist[name]


@pytest.mark.parametrize("value", ["soon", "0", "-3", "nan", "inf"])
def test_a_bad_deadline_value_is_a_usage_error_before_any_request(cli, server, data_dir, monkeypatch, value):
    monkeypatch.setenv("CNNKIT_DOWNLOAD_DEADLINE", value)
    code, _, err = cli("download", "mnist", "--mirror", server.url, "--data-dir", data_dir)
    line = assert_clean_failure(code, err, expected_code=2)[0]
    assert f"CNNKIT_DOWNLOAD_DEADLINE={value!r}" in line and "seconds" in line
    assert server.requests == []


def test_limits_and_default_deadlines_follow_the_catalog_sizes():
    from cnnkit.hub.download import DEADLINE_FLOOR_S, RetryPolicy

    images = next(f for f in tables.sources()["mnist"].files if f.name == "train-images-idx3-ubyte.gz")
    assert images.byte_limit == images.size == 9_912_422  # an exact size is the limit
    pets = tables.sources()["cats-dogs"].files[0]
    assert not pets.size_exact and pets.size < pets.byte_limit < 2 * pets.size  # an approximate one gets slack
    weights = tables.sources()["weights:resnet18"].files[0]
    assert not weights.size_exact and weights.byte_limit > weights.size
    unknown = RemoteFile("x.bin", ("https://example.org/x.bin",))
    assert unknown.byte_limit > pets.byte_limit
    policy = RetryPolicy()
    assert DEADLINE_FLOOR_S < policy.deadline_for(images) < policy.deadline_for(pets)
    assert dataclasses.replace(policy, deadline_s=2.0).deadline_for(pets) == 2.0


# Links planted where the download writes ----------------------------------------------------------


@pytest.mark.parametrize("planted", ["symlink", "dangling-symlink", "hard-link"])
def test_a_link_planted_at_the_partial_is_removed_never_written_through(cli, server, data_dir, mnist, tmp_path, planted):
    raw = data_dir / "MNIST" / "raw"
    raw.mkdir(parents=True)
    home = tmp_path / "home"
    home.mkdir()
    precious = home / "precious"
    if planted != "dangling-symlink":
        precious.write_bytes(b"ten bytes!")  # shorter than the file: a resume would append to it
    partial = raw / "train-images-idx3-ubyte.gz.partial"
    if planted == "hard-link":
        os.link(precious, partial)
    else:
        partial.symlink_to(precious)
    before = digests(home)
    code, _, err = cli("download", "mnist", "--mirror", server.url, "--data-dir", data_dir)
    assert code == 0, err
    assert digests(home) == before  # not appended to, not created
    installed = raw / "train-images-idx3-ubyte.gz"
    assert not installed.is_symlink() and installed.read_bytes() == mnist[installed.name]
    assert not list(raw.glob("*.partial"))


@pytest.mark.parametrize("name", ["train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"], ids=["gz", "decompressed"])
def test_a_link_planted_at_an_installed_name_is_replaced_not_followed(cli, server, data_dir, mnist, tmp_path, name):
    """Base already had this right (rename over the name); kept so that it stays so."""
    raw = data_dir / "MNIST" / "raw"
    raw.mkdir(parents=True)
    precious = tmp_path / "precious"
    precious.write_bytes(b"keep me")
    (raw / name).symlink_to(precious)
    code, _, err = cli("download", "mnist", "--mirror", server.url, "--data-dir", data_dir)
    assert code == 0, err
    assert precious.read_bytes() == b"keep me" and not (raw / name).is_symlink()
    assert (raw / "train-images-idx3-ubyte.gz").read_bytes() == mnist["train-images-idx3-ubyte.gz"]


def test_from_never_copies_through_a_link_planted_at_the_partial(cli, data_dir, tmp_path, mnist):
    by_hand = tmp_path / "by-hand"
    by_hand.mkdir()
    for name, data in mnist.items():
        (by_hand / name).write_bytes(data)
    raw = data_dir / "MNIST" / "raw"
    raw.mkdir(parents=True)
    precious = tmp_path / "precious"
    precious.write_bytes(b"keep me")
    (raw / "t10k-images-idx3-ubyte.gz.partial").symlink_to(precious)
    before = digests(precious)
    code, _, err = cli("download", "mnist", "--from", by_hand, "--data-dir", data_dir,
                       "--mirror", f"http://127.0.0.1:{closed_port()}/")
    assert code == 0, err
    assert digests(precious) == before
    installed = raw / "t10k-images-idx3-ubyte.gz"
    assert not installed.is_symlink() and installed.read_bytes() == mnist[installed.name]


def test_folder_links_planted_in_the_data_dir_are_replaced_and_their_targets_untouched(cli, data_dir, tmp_path):
    archive = tmp_path / PETS_ZIP
    archive.write_bytes(pets_zip(DATA_PETS))
    home = tmp_path / "home"
    (home / "photos").mkdir(parents=True)
    (home / "photos" / "holiday.jpg").write_bytes(b"not a dataset")
    (home / "notes").mkdir()
    (home / "notes" / "todo.txt").write_text("keep\n")
    data_dir.mkdir()
    (data_dir / "PetImages").symlink_to(home / "photos", target_is_directory=True)
    (data_dir / "cats-dogs-quarantine").symlink_to(home / "notes", target_is_directory=True)
    before = digests(home)
    code, out, err = cli("download", "cats-dogs", "--from", archive, "--data-dir", data_dir)
    assert code == 0, err
    assert digests(home) == before
    assert not (data_dir / "PetImages").is_symlink() and len(list((data_dir / "PetImages/Cat").glob("*.jpg"))) == 50
    # Nothing was quarantined: the planted quarantine link went, as a link; nothing was left aside.
    assert sorted(p.name for p in data_dir.iterdir()) == ["PetImages", "cats-dogs.json"]


# Archives through the command -----------------------------------------------------------------------


def test_a_pets_zip_with_a_symlink_chain_is_unsafe_and_writes_nothing_anywhere(cli, data_dir, tmp_path):
    """The review's code execution: each link stays inside on its own, together they climb two folders up."""
    buffer = io.BytesIO(pets_zip(DATA_PETS))
    with zipfile.ZipFile(buffer, "a") as zf:
        for name in ("PetImages/l1", "PetImages/l1/l2", "PetImages/l1/l2/l3"):
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "..")
        zf.writestr("PetImages/l1/l2/l3/evil.pth", "import os; os.system('echo pwned')\n")
    archive = tmp_path / PETS_ZIP
    archive.write_bytes(buffer.getvalue())
    code, _, err = cli("download", "cats-dogs", "--from", archive, "--data-dir", data_dir)
    line = assert_clean_failure(code, err)[0]
    assert f"unsafe archive {PETS_ZIP}: member 'PetImages/l1' is a link (to '..')" in line and "corrupt" not in line
    assert not list(tmp_path.rglob("evil.pth"))
    assert not (data_dir / "PetImages").exists() and not list(data_dir.glob(".cnnkit-extract-*"))


def test_a_pets_zip_of_100001_empty_members_is_refused_before_extraction(cli, data_dir, tmp_path):
    archive = many_empty_members_zip(tmp_path / PETS_ZIP, 100_001, prefix="PetImages/Cat/")
    code, _, err = cli("download", "cats-dogs", "--from", archive, "--data-dir", data_dir)
    line = assert_clean_failure(code, err)[0]
    assert f"unsafe archive {PETS_ZIP}" in line and "more than 100,000 members" in line
    assert not (data_dir / "PetImages").exists() and not list(data_dir.glob(".cnnkit-extract-*"))
