"""predict against hostile inputs: decoder bombs on every decode path, link loops and names of one file, option bounds, markup.

Bombs are real files: a small JPEG that Pillow wrote, with the frame header's
height and width rewritten, and PNGs whose IHDR declares the size. Links are
real symlinks on disk.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from conftest import assert_clean_failure, digests, run_cnnkit
from hostile import picture, png_header_only

BOMB_SIDE = 30000  # 900 Mpixels: past twice Pillow's limit, 2.7 GB as decoded RGB
WARNING_SIDE = 10000  # 100 Mpixels: past Pillow's limit but under twice it (only a warning in Pillow)


def jpeg_declaring(height: int, width: int, channels: int = 3, *, progressive: bool = False, fill: bool = False) -> bytes:
    """A valid 8x8 JPEG whose frame header claims height x width: ~600 bytes on disk.

    Baseline (SOF0) or progressive (SOF2); with `fill`, a padding 0xFF before the frame
    marker, which JPEG allows and libjpeg and Pillow both skip.
    """
    buffer = io.BytesIO()
    Image.fromarray(picture((8, 8))).convert("RGB" if channels == 3 else "L").save(buffer, format="JPEG", progressive=progressive)
    raw = bytearray(buffer.getvalue())
    sof = raw.index(b"\xff\xc2" if progressive else b"\xff\xc0")  # marker, length (2), precision (1), height, width
    raw[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    if fill:
        raw[sof:sof] = b"\xff"
    return bytes(raw)


@pytest.fixture(scope="module")
def trained(tiny_run) -> Path:
    return tiny_run()  # grey 28x28 digits, ten classes


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bombs")
    made = {
        "jpeg-rgb": jpeg_declaring(BOMB_SIDE, BOMB_SIDE),
        "jpeg-grey": jpeg_declaring(BOMB_SIDE, BOMB_SIDE, channels=1),
        "jpeg-warning-band": jpeg_declaring(WARNING_SIDE, WARNING_SIDE),
        "jpeg-progressive": jpeg_declaring(BOMB_SIDE, BOMB_SIDE, progressive=True),
        "jpeg-fill-byte": jpeg_declaring(BOMB_SIDE, BOMB_SIDE, fill=True),
        "png": png_header_only(BOMB_SIDE, BOMB_SIDE),
        "png-warning-band": png_header_only(WARNING_SIDE, WARNING_SIDE),
    }
    paths = {}
    for name, payload in made.items():
        paths[name] = root / f"{name}.{'jpg' if name.startswith('jpeg') else 'png'}"
        paths[name].write_bytes(payload)
    return paths


# ---- decompression bombs -----------------------------------------------------------------
def test_predict_refuses_jpeg_bombs_from_the_header_and_predicts_the_rest(trained, bombs, tmp_path):
    """Through the installed command: the 600-byte 30000x30000 JPEG is never decoded (it took 3.3 GB)."""
    good = tmp_path / "digit.jpg"
    Image.fromarray(picture()).save(good, quality=95)
    inputs = [bombs["jpeg-rgb"], good, bombs["jpeg-warning-band"], bombs["png"]]
    before = digests(bombs["jpeg-rgb"])
    with open(tmp_path / "out", "w+") as out, open(tmp_path / "err", "w+") as err:
        child = subprocess.Popen([sys.executable, "-m", "cnnkit", "predict", *map(str, inputs), "--model", str(trained), "--json"],
                                 stdout=out, stderr=err, cwd=tmp_path, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        _, status, usage = os.wait4(child.pid, 0)  # this child's own peak memory, not the test run's
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    assert_clean_failure(child.returncode, stderr, after_output=True)
    assert "3 of 4 inputs could not be read" in stderr
    records = {Path(r["path"]).name: r for r in json.loads(stdout)}
    assert len(records[good.name]["predictions"]) == 5 and "error" not in records[good.name]
    for bomb in (bombs["jpeg-rgb"], bombs["jpeg-warning-band"], bombs["png"]):
        assert records[bomb.name]["error"].startswith("refused as a decompression bomb")
        assert stderr.count(f"warning: cannot read image {bomb}: refused as a decompression bomb") == 1
    peak_bytes = usage.ru_maxrss * 1024  # KiB on Linux
    assert peak_bytes < 3 * BOMB_SIDE * BOMB_SIDE, f"peak RSS {peak_bytes / 2**30:.1f} GiB: the bomb was decoded"
    assert digests(bombs["jpeg-rgb"]) == before


@pytest.mark.parametrize("kind", ["jpeg-rgb", "jpeg-grey", "jpeg-warning-band", "jpeg-progressive", "jpeg-fill-byte"])
def test_jpeg_fast_path_refuses_from_the_frame_header(bombs, kind):
    """decode_plain_jpeg answers from the header: a refusal, not None after decoding 900 Mpixels."""
    from cnnkit.data.images import ImageReadError
    from cnnkit.engine.predict import decode_plain_jpeg

    channels = 1 if kind == "jpeg-grey" else 3
    for size in ((32, 32), (BOMB_SIDE, BOMB_SIDE)):  # also for a model that claims the bomb's own size
        with pytest.raises(ImageReadError, match="refused as a decompression bomb"):
            decode_plain_jpeg(bombs[kind], channels, size)


def test_jpeg_fast_path_limit_is_pillows(bombs, monkeypatch):
    """One pixel limit for every decoder: Pillow's MAX_IMAGE_PIXELS, at 1x."""
    from cnnkit.data.images import ImageReadError
    from cnnkit.engine.predict import decode_plain_jpeg

    small = bombs["jpeg-rgb"].with_name("small-limit.jpg")
    small.write_bytes(jpeg_declaring(40, 40))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40 * 40 - 1)
    with pytest.raises(ImageReadError, match="over the limit of 1599"):
        decode_plain_jpeg(small, 3, (40, 40))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40 * 40)
    assert decode_plain_jpeg(small, 3, (40, 40)) is not None  # at the limit: decoded


@pytest.mark.parametrize("variant", [{}, {"channels": 1}, {"progressive": True}, {"fill": True}])
def test_fast_path_still_takes_the_jpegs_libjpeg_reads(tmp_path, variant):
    """The frame-header reader agrees with libjpeg on real files: the fast path is taken, with load_image's pixels."""
    import torch

    from cnnkit.data.images import load_image
    from cnnkit.engine.predict import decode_plain_jpeg

    path = tmp_path / "small.jpg"
    path.write_bytes(jpeg_declaring(8, 8, **variant))
    channels = variant.get("channels", 3)
    fast = decode_plain_jpeg(path, channels, (8, 8))
    assert fast is not None and torch.equal(fast, load_image(path, channels, (8, 8)))


def _decoders():
    import torchvision

    from cnnkit.engine.predict import CheckpointDecoder, PretrainedDecoder

    return {
        "checkpoint-grey": CheckpointDecoder(1, (28, 28)),
        "checkpoint-rgb": CheckpointDecoder(3, (32, 32)),
        "checkpoint-resize-crop": CheckpointDecoder(3, (32, 32), resize_to=36),  # the Pillow path only
        "pretrained": PretrainedDecoder(torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.transforms()),
    }


@pytest.mark.parametrize("decoder", ["checkpoint-grey", "checkpoint-rgb", "checkpoint-resize-crop", "pretrained"])
def test_every_predict_decoder_refuses_every_bomb(bombs, decoder):
    """JPEG and PNG, past 2x and in Pillow's 1x-2x warning band, through each decoder predict builds.
    (Base refused these too, through Pillow, after the fast path had decoded the JPEG.)"""
    from cnnkit.data.images import ImageReadError

    decode = _decoders()[decoder]
    for kind, path in bombs.items():
        with pytest.raises(ImageReadError, match="refused as a decompression bomb"):
            decode(path)


# ---- links and names of one file ---------------------------------------------------------
def make_linked_tree(root: Path, loops: int = 1) -> Path:
    """photos/ with two real images and every kind of link: a loop to itself (and with loops=2 one to its parent
    too), a link to a folder outside (followed), a link to a file inside (the same file), a broken link and a
    cycle of two links."""
    photos = root / "photos"
    (photos / "sub").mkdir(parents=True)
    outside = root / "elsewhere"
    outside.mkdir()
    Image.fromarray(picture(seed=1)).save(photos / "ok.png")
    Image.fromarray(picture(seed=2)).save(photos / "sub" / "two.png")
    Image.fromarray(picture(seed=3)).save(outside / "three.png")
    (photos / "loop").symlink_to(".")
    if loops == 2:
        (photos / "sub" / "up").symlink_to("..")
    (photos / "linked").symlink_to(outside)
    (photos / "alias.png").symlink_to("ok.png")
    (photos / "broken.png").symlink_to("nowhere.png")
    (photos / "cycle-a.png").symlink_to("cycle-b.png")
    (photos / "cycle-b.png").symlink_to("cycle-a.png")
    return photos


@pytest.fixture
def linked_tree(tmp_path) -> Path:
    return make_linked_tree(tmp_path)


EACH_ONCE = ["photos/linked/three.png", "photos/ok.png", "photos/sub/two.png"]


@pytest.mark.parametrize("spelling", ["photos/**/*.png", "photos/**", "photos", "photos/**/**/*.p?g", "**/*.png"])
def test_link_loops_end_and_each_real_file_is_predicted_once(cli, trained, linked_tree, spelling):
    code, out, err = cli("predict", spelling, "--model", trained, "--json")
    assert code == 0, err
    expected = EACH_ONCE if spelling.startswith("photos") else ["elsewhere/three.png", *EACH_ONCE[1:]]
    assert [r["path"] for r in json.loads(out)] == expected  # folder links followed; a file's own name beats a link's


def test_two_link_loops_do_not_multiply_the_walk(trained, tmp_path):
    """Through the installed command: with `loop -> .` and `sub/up -> ..` glob's own recursion doubled at every
    level until ELOOP (2^40 paths, it never ended); the walk visits each real folder once."""
    make_linked_tree(tmp_path, loops=2)
    result = run_cnnkit("predict", "photos/**/*.png", "photos", "--model", trained, "--json", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert [r["path"] for r in json.loads(result.stdout)] == EACH_ONCE


def test_a_file_named_several_ways_is_predicted_once_under_its_first_name(cli, trained, linked_tree):
    ok = linked_tree / "ok.png"
    code, out, err = cli("predict", "photos/ok.png", ok, "photos/loop/ok.png", "photos/alias.png", "photos",
                         "photos/*/two.png", "--model", trained, "--json")
    assert code == 0, err
    assert [r["path"] for r in json.loads(out)] == ["photos/ok.png", "photos/linked/three.png", "photos/sub/two.png"]


def test_a_pattern_without_doublestar_is_bounded_by_its_depth_and_deduplicated(cli, trained, linked_tree):
    code, out, err = cli("predict", "photos/*/*.png", "photos/*/*/*.png", "--model", trained, "--json")
    assert code == 0, err
    paths = [r["path"] for r in json.loads(out)]
    assert len(paths) == len(set(paths)) == 3  # ok.png (through loop/), two.png and three.png, once each
    assert sorted(Path(p).name for p in paths) == ["ok.png", "three.png", "two.png"]


# ---- bounds ------------------------------------------------------------------------------
@pytest.fixture
def digits(tmp_path) -> list[Path]:
    paths = []
    for seed in range(3):
        paths.append(tmp_path / f"digit{seed}.png")
        Image.fromarray(picture(seed=seed)).save(paths[-1])
    return paths


@pytest.mark.parametrize("option", [["--top-k", "0"], ["--top-k", "-3"], ["--batch-size", "0"], ["--batch-size", "-1"],
                                    ["--workers", "-1"]])
def test_meaningless_sizes_are_usage_errors(cli, trained, digits, option):
    """(Base already refused these, through Typer.)"""
    code, out, err = cli("predict", *digits, "--model", trained, *option)
    assert_clean_failure(code, err, expected_code=2)
    assert out == ""


def test_huge_sizes_are_clamped_before_anything_is_allocated(cli, trained, digits):
    huge = str(10**23)  # past sys.maxsize: DataLoader's batch list and islice failed ("unexpected ValueError")
    _, out, _ = cli("predict", *digits, "--model", trained, "--json", "--batch-size", "1")
    code, clamped_out, err = cli("predict", *digits, "--model", trained, "--json", "--batch-size", huge, "--top-k", huge)
    assert code == 0, err
    assert f"note: --top-k {huge} is more than the model's 10 classes; listing all 10" in err
    one_by_one, clamped = json.loads(out), json.loads(clamped_out)
    assert [r["path"] for r in clamped] == [r["path"] for r in one_by_one]
    for a, b in zip(one_by_one, clamped):
        assert len(b["predictions"]) == 10
        assert [p["index"] for p in a["predictions"]] == [p["index"] for p in b["predictions"][:5]]


def test_workers_are_at_most_one_per_core_and_per_batch(cli, trained, digits):
    from cnnkit.engine.device import usable_cores
    from cnnkit.engine.predict import plan_batches

    cores = usable_cores()
    plan = plan_batches(3, 10, top_k=5, batch_size=1, workers=10**20)
    assert plan.workers == min(cores, 3) and any("usable cores" in note for note in plan.notes)
    assert plan_batches(3, 10, top_k=5, batch_size=64, workers=cores).workers == 1  # one batch: one worker is plenty
    code, out, err = cli("predict", *digits, "--model", trained, "--json", "--workers", cores + 1)
    assert code == 0, err
    assert f"note: --workers {cores + 1} is more than the {cores} usable cores; using {cores}" in err
    assert len(json.loads(out)) == 3


# ---- names printed as text ---------------------------------------------------------------
def test_file_and_class_names_are_printed_literally(cli, trained, tmp_path):
    """Rich markup in a file name or a class name is text, not style (base printed these right already)."""
    import torch

    checkpoint = torch.load(trained / "best.pt", weights_only=True)
    checkpoint["data"]["classes"] = [["[bold]c{}[", "[/x]c{}", "[red]c{}"][i % 3].format(i) for i in range(10)]
    torch.save(checkpoint, tmp_path / "markup.pt")
    folder = tmp_path / "[bold]in["
    folder.mkdir()
    for seed, name in enumerate(["[bold]x[.png", "[red]y.png"]):
        Image.fromarray(picture(seed=seed)).save(folder / name)
    (folder / "[i]bad.png").write_bytes(b"not a picture")
    code, out, err = cli("predict", folder.name, "--model", tmp_path / "markup.pt", "--top-k", "2")
    assert_clean_failure(code, err, after_output=True)
    for name in ["[bold]x[.png", "[red]y.png", "[i]bad.png"]:
        assert f"[bold]in[/{name}" in out
    assert sum(out.count(start) for start in ("[bold]c", "[/x]c", "[red]c")) == 2 * 2  # two images, two ranks
    assert "warning: cannot read image [bold]in[/[i]bad.png" in err
    code, out, err = cli("predict", "[bold]nothing[.png", "--model", tmp_path / "markup.pt")
    assert_clean_failure(code, err)
    assert err.startswith("error: pattern [bold]nothing[.png matches no images")  # brackets make it a pattern
