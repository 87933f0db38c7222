"""Safe extraction: traversal, absolute paths, escaping links and zip bombs are refused before any write."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from cnnkit.data.archives import UnsafeArchive, extracted, move_into_place
from cnnkit.errors import DownloadError


def make_tar(path: Path, members: list[tuple[str, str, bytes | str]]) -> Path:
    """members: (kind, name, data or link target); kind is 'file', 'sym' or 'hard'."""
    with tarfile.open(path, "w:gz") as tar:
        for kind, name, payload in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
            else:
                info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                info.linkname = payload
                tar.addfile(info)
    return path


def make_zip(path: Path, members: list[tuple[str, str, bytes | str]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for kind, name, payload in members:
            if kind == "file":
                zf.writestr(name, payload)
            else:  # a symlink the way Info-ZIP stores one: mode in the high bits, target as data
                info = zipfile.ZipInfo(name)
                info.create_system = 3
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                zf.writestr(info, payload)
    return path


GOOD = ("file", "top/ok.txt", b"fine")


@pytest.mark.parametrize("maker", [make_tar, make_zip], ids=["tar", "zip"])
@pytest.mark.parametrize("bad, reason", [
    (("file", "top/../../evil.txt", b"x"), "'..'"),
    (("file", "/tmp/cnnkit-evil.txt", b"x"), "absolute path"),
    (("sym", "top/link", "../../outside"), "outside the target"),
    (("sym", "top/abs-link", "/etc/passwd"), "outside the target"),
], ids=["traversal", "absolute", "symlink-escape", "symlink-absolute"])
def test_unsafe_members_refuse_the_whole_archive(tmp_path, maker, bad, reason):
    archive = maker(tmp_path / ("evil.tar.gz" if maker is make_tar else "evil.zip"), [GOOD, bad])
    work = tmp_path / "work"
    with pytest.raises(UnsafeArchive) as caught:
        with extracted(archive, work):
            pass
    assert reason in caught.value.message and bad[1] in caught.value.message
    assert list(work.iterdir()) == []  # not even the good member was written
    assert not Path("/tmp/cnnkit-evil.txt").exists() and not (tmp_path / "evil.txt").exists()


def test_tar_hard_link_outside_is_refused(tmp_path):
    archive = make_tar(tmp_path / "hard.tar.gz", [GOOD, ("hard", "top/h", "../secret")])
    with pytest.raises(UnsafeArchive, match="outside the target"):
        with extracted(archive, tmp_path / "work"):
            pass


def test_tar_device_file_is_refused(tmp_path):
    archive = tmp_path / "dev.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("top/fifo")
        info.type = tarfile.FIFOTYPE
        tar.addfile(info)
    with pytest.raises(UnsafeArchive, match="special file"):
        with extracted(archive, tmp_path / "work"):
            pass


def test_zip_bomb_declared_size_over_budget_is_refused(tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("top/zeros.bin", "w", force_zip64=True) as member:
            block = bytes(1 << 20)
            for _ in range(200):  # 200 MiB of zeros deflate to ~200 KiB
                member.write(block)
    assert archive.stat().st_size < 1 << 20
    with pytest.raises(UnsafeArchive, match="zip bomb") as caught:
        with extracted(archive, tmp_path / "work"):
            pass
    assert "200 MiB" in caught.value.message
    assert list((tmp_path / "work").iterdir()) == []


def test_budget_applies_to_tar_too(tmp_path):
    archive = make_tar(tmp_path / "big.tar.gz", [("file", "top/zeros", bytes(3 << 20))])
    with pytest.raises(UnsafeArchive, match="over the limit"):
        with extracted(archive, tmp_path / "work", budget=1 << 20):
            pass


@pytest.mark.parametrize("maker", [make_tar, make_zip], ids=["tar", "zip"])
def test_safe_archive_with_an_inner_link_extracts_and_cleans_up(tmp_path, maker):
    archive = maker(tmp_path / ("ok.tar.gz" if maker is make_tar else "ok.zip"),
                    [GOOD, ("file", "top/sub/b.txt", b"bee"), ("sym", "top/sub/link", "../ok.txt")])
    work = tmp_path / "work"
    with extracted(archive, work) as temp:
        assert (temp / "top/ok.txt").read_bytes() == b"fine"
        assert (temp / "top/sub/link").is_symlink() and (temp / "top/sub/link").read_bytes() == b"fine"
        move_into_place(temp / "top", tmp_path / "installed")
    assert list(work.iterdir()) == []
    assert (tmp_path / "installed/sub/b.txt").read_bytes() == b"bee"


def test_corrupt_member_crc_is_reported_and_leaves_nothing(tmp_path):
    archive = make_zip(tmp_path / "crc.zip", [("file", "top/a.bin", b"A" * 5000)])
    data = bytearray(archive.read_bytes())
    header_end = 30 + len("top/a.bin")
    data[header_end + 2] ^= 0xFF  # flip a bit inside the deflated data
    archive.write_bytes(bytes(data))
    with pytest.raises(DownloadError, match="corrupt archive crc.zip"):
        with extracted(archive, tmp_path / "work"):
            pass
    assert list((tmp_path / "work").iterdir()) == []


def test_move_into_place_replaces_an_existing_folder(tmp_path):
    old = tmp_path / "dest"
    old.mkdir()
    (old / "stale.txt").write_text("old")
    new = tmp_path / "new"
    new.mkdir()
    (new / "fresh.txt").write_text("new")
    move_into_place(new, old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest"]
    assert [p.name for p in old.iterdir()] == ["fresh.txt"]


def test_truncated_tarball_is_reported_as_corrupt(tmp_path):
    full = make_tar(tmp_path / "full.tar.gz", [("file", f"top/{i}.bin", bytes(range(256)) * 400) for i in range(5)])
    archive = tmp_path / "cut.tar.gz"
    archive.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(DownloadError, match="cut.tar.gz"):
        with extracted(archive, tmp_path / "work"):
            pass
    assert list((tmp_path / "work").iterdir()) == []
