"""Safe extraction: traversal, absolute paths, links of any kind, special files, too many members and zip bombs
are refused before any write."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest
from download_helpers import many_empty_members_zip
from conftest import digests

from cnnkit.hub.archives import UnsafeArchive, extracted, move_into_place
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
    (("sym", "top/link", "../../outside"), "a link (to '../../outside')"),
    (("sym", "top/abs-link", "/etc/passwd"), "a link (to '/etc/passwd')"),
    (("sym", "top/inner-link", "ok.txt"), "a link (to 'ok.txt')"),  # even one that stays inside: none is needed
], ids=["traversal", "absolute", "symlink-escape", "symlink-absolute", "symlink-inside"])
def test_unsafe_members_refuse_the_whole_archive(tmp_path, maker, bad, reason):
    archive = maker(tmp_path / ("evil.tar.gz" if maker is make_tar else "evil.zip"), [GOOD, bad])
    work = tmp_path / "work"
    with pytest.raises(UnsafeArchive) as caught:
        with extracted(archive, work):
            pass
    assert reason in caught.value.message and bad[1] in caught.value.message
    assert list(work.iterdir()) == []  # not even the good member was written
    assert not Path("/tmp/cnnkit-evil.txt").exists() and not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize("target", ["../secret", "top/ok.txt"], ids=["outside", "inside"])
def test_tar_hard_link_is_refused_as_unsafe(tmp_path, target):
    archive = make_tar(tmp_path / "hard.tar.gz", [GOOD, ("hard", "top/h", target)])
    with pytest.raises(UnsafeArchive, match=r"unsafe archive hard.tar.gz: member 'top/h' is a link"):
        with extracted(archive, tmp_path / "work"):
            pass
    assert list((tmp_path / "work").iterdir()) == []


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


# The review's chain: each link on its own stays inside, but extraction follows the links written
# before it, so x/l1/l2/l3 lands two folders above the target and l4/FILE is written there.
CHAIN = [("sym", "x/l1", ".."), ("sym", "x/l1/l2", ".."), ("sym", "x/l1/l2/l3", ".."), ("file", "x/l1/l2/l3/l4/FILE", b"pwned")]


@pytest.mark.parametrize("maker", [make_tar, make_zip], ids=["tar", "zip"])
def test_symlink_chain_is_refused_as_unsafe_and_writes_nothing_anywhere(tmp_path, maker):
    archive = maker(tmp_path / ("chain.tar.gz" if maker is make_tar else "chain.zip"), [GOOD, *CHAIN])
    work = tmp_path / "deep" / "work"
    with pytest.raises(UnsafeArchive) as caught:
        with extracted(archive, work):
            pass
    assert caught.value.message.startswith(f"unsafe archive {archive.name}: member 'x/l1' is a link (to '..')")
    assert "corrupt" not in caught.value.message
    assert list(work.iterdir()) == []
    assert not list(tmp_path.rglob("FILE")) and not list(tmp_path.rglob("l4"))


@pytest.mark.parametrize("mode", [stat.S_IFIFO, stat.S_IFCHR, stat.S_IFBLK, stat.S_IFSOCK], ids=["fifo", "chr", "blk", "sock"])
def test_zip_special_file_modes_are_refused_like_tar(tmp_path, mode):
    archive = tmp_path / "special.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(*GOOD[1:])
        info = zipfile.ZipInfo("top/dev")
        info.create_system = 3
        info.external_attr = (mode | 0o644) << 16
        zf.writestr(info, b"")
    with pytest.raises(UnsafeArchive, match="member 'top/dev' is a device, FIFO or other special file"):
        with extracted(archive, tmp_path / "work"):
            pass
    assert list((tmp_path / "work").iterdir()) == []


def test_a_zip_member_is_never_written_through_a_link_already_in_the_target(tmp_path):
    """Extraction goes into a fresh folder cnnkit made; a link planted where the data goes is replaced, not followed."""
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "ok.txt").write_bytes(b"keep me")
    before = digests(precious)
    work = tmp_path / "work"
    work.mkdir()
    (work / "top").symlink_to(precious, target_is_directory=True)
    archive = make_zip(tmp_path / "ok.zip", [GOOD])
    with extracted(archive, work) as temp:
        move_into_place(temp / "top", work / "top")
    assert digests(precious) == before
    assert not (work / "top").is_symlink() and (work / "top/ok.txt").read_bytes() == b"fine"
    assert sorted(p.name for p in work.iterdir()) == ["top"]  # the old link went, as a link


@pytest.mark.parametrize("maker", [make_tar, make_zip], ids=["tar", "zip"])
def test_more_members_than_the_bound_is_unsafe(tmp_path, maker):
    archive = maker(tmp_path / ("many.tar.gz" if maker is make_tar else "many.zip"),
                    [("file", f"top/{i}.txt", b"") for i in range(51)])
    with pytest.raises(UnsafeArchive, match="more than 50 members"):
        with extracted(archive, tmp_path / "work", max_members=50):
            pass
    assert list((tmp_path / "work").iterdir()) == []
    with extracted(archive, tmp_path / "work", max_members=51) as temp:  # the bound itself is fine
        assert len(list((temp / "top").iterdir())) == 51


DEFAULT_MEMBER_BOUND = 100_000  # archives.MAX_MEMBERS: four times Cats vs. Dogs' 25,000 photos


def test_the_default_member_bound_refuses_a_zip_of_empty_members(tmp_path):
    with zipfile.ZipFile(many_empty_members_zip(tmp_path / "few.zip", 3)) as zf:  # the builder makes valid zips
        assert [i.filename for i in zf.infolist()] == ["top/0.jpg", "top/1.jpg", "top/2.jpg"] and zf.testzip() is None
    archive = many_empty_members_zip(tmp_path / "many.zip", DEFAULT_MEMBER_BOUND + 1)
    with zipfile.ZipFile(archive) as zf:
        assert len(zf.infolist()) == DEFAULT_MEMBER_BOUND + 1
    with pytest.raises(UnsafeArchive, match="more than 100,000 members"):
        with extracted(archive, tmp_path / "work"):
            pass
    assert list((tmp_path / "work").iterdir()) == []


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
