"""cnnkit predict: inputs (files, folders, globs), image modes, bad files, output formats, pretrained names."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from conftest import DATA, assert_clean_failure

PETS_CAT = sorted((DATA / "pets-sample" / "Cat").iterdir())[0]


@pytest.fixture(scope="module")
def mnist_run(tiny_run) -> Path:
    """One small real training run (grey 28x28 digits): the one test_evaluate.py evaluates."""
    return tiny_run("multilayer-cnn", limit=600, seed=7)


def digit(value_left: int = 255, size=(28, 28)) -> np.ndarray:
    """A grey image with some structure (a bright bar and a gradient), so predictions differ between images."""
    h, w = size
    image = np.tile(np.linspace(0, 120, w, dtype=np.float64), (h, 1))
    image[:, w // 4 : w // 4 + max(1, w // 7)] = value_left
    image[h // 3 : h // 3 + max(1, h // 8), :] = 200
    return image.astype(np.uint8)


@pytest.fixture
def modes_dir(tmp_path) -> Path:
    """The same picture in many modes and formats, plus EXIF rotation and a 1x1 image."""
    root = tmp_path / "modes"
    root.mkdir()
    grey = Image.fromarray(digit())
    grey.save(root / "grey.png")
    rgb = Image.merge("RGB", (grey, grey, grey))
    rgb.save(root / "rgb.png")
    rgb.convert("CMYK").save(root / "cmyk.jpg", quality=95)
    palette = rgb.quantize(colors=16)
    palette.save(root / "palette.png")
    palette.convert("RGB").save(root / "palette_as_rgb.png")
    Image.fromarray(digit().astype(np.uint16) * 257).save(root / "sixteen.png")  # mode I;16
    rgba = rgb.convert("RGBA")
    alpha = np.full((28, 28), 255, np.uint8)
    alpha[:, 20:] = 0  # the right strip is transparent: shown (and predicted) as white
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(root / "rgba.png")
    Image.alpha_composite(Image.new("RGBA", (28, 28), (255, 255, 255, 255)), rgba).convert("RGB").save(root / "rgba_on_white.png")
    # Stored sideways with EXIF orientation 6 (rotate 90 on display); the upright copy has no EXIF.
    sideways = Image.fromarray(np.ascontiguousarray(np.rot90(digit(), 1)))
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways.save(root / "exif_rotated.png", exif=exif.tobytes())
    sideways.save(root / "sideways_no_exif.png")
    with Image.open(root / "exif_rotated.png") as stored:
        ImageOps.exif_transpose(stored).save(root / "upright.png")
    Image.new("L", (1, 1), 180).save(root / "tiny.png")
    return root


@pytest.fixture
def bad_files(tmp_path) -> dict[str, Path]:
    root = tmp_path / "bad"
    root.mkdir()
    Image.fromarray(digit()).save(root / "good.png")
    (root / "empty.jpg").write_bytes(b"")
    buffer = io.BytesIO()
    Image.fromarray(digit(size=(64, 64))).convert("RGB").save(buffer, format="JPEG")
    (root / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 3])
    (root / "text.jpg").write_text("this is not a picture\n")
    Image.fromarray(digit()).save(root / "png_named.jpg", format="PNG")  # wrong extension, fine content
    return {p.stem: p for p in root.iterdir()}


def by_name(records: list[dict]) -> dict[str, dict]:
    return {Path(r["path"]).name: r for r in records}


def probabilities(record: dict) -> dict[int, float]:
    return {p["index"]: p["probability"] for p in record["predictions"]}


def assert_same_prediction(a: dict, b: dict, tol: float = 2e-6) -> None:
    pa, pb = probabilities(a), probabilities(b)
    assert list(pa) == list(pb), (a, b)
    assert all(abs(pa[i] - pb[i]) <= tol for i in pa), (a, b)


def predict_json(cli, *args) -> tuple[int, list[dict], str]:
    code, out, err = cli("predict", *args, "--json")
    return code, json.loads(out), err


# ---- inputs ------------------------------------------------------------------------------
def test_folder_is_searched_recursively_for_images_only(cli, mnist_run, tmp_path):
    root = tmp_path / "photos"
    (root / "a" / "b").mkdir(parents=True)
    (root / ".hidden").mkdir()
    Image.fromarray(digit()).save(root / "one.png")
    Image.fromarray(digit(90)).save(root / "a" / "two.jpg")
    Image.fromarray(digit(30)).save(root / "a" / "b" / "three.bmp")
    Image.fromarray(digit()).save(root / ".hidden" / "skip.png")
    (root / "notes.txt").write_text("not an image")
    (root / "Thumbs.db").write_bytes(b"\0" * 10)

    code, records, err = predict_json(cli, root, "--model", mnist_run, "--top-k", "3")

    assert code == 0, err
    assert sorted(by_name(records)) == ["one.png", "three.bmp", "two.jpg"]
    for record in records:
        assert "error" not in record
        assert [set(p) for p in record["predictions"]] == [{"label", "index", "probability"}] * 3
        probs = [p["probability"] for p in record["predictions"]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
        assert all(p["label"] == str(p["index"]) for p in record["predictions"])  # MNIST classes are "0".."9"


def test_quoted_glob_is_expanded_recursively_and_files_are_not_repeated(cli, mnist_run, modes_dir):
    pattern = str(modes_dir.parent / "**" / "*.png")
    code, records, err = predict_json(cli, pattern, modes_dir / "grey.png", "--model", mnist_run)
    assert code == 0, err
    assert sorted(by_name(records)) == sorted(p.name for p in modes_dir.glob("*.png"))
    assert len(records) == len({r["path"] for r in records})


@pytest.mark.parametrize("missing", ["nothing-here.png", "no-dir/*.jpg"])
def test_input_that_matches_nothing_is_an_error(cli, mnist_run, missing):
    code, out, err = cli("predict", missing, "--model", mnist_run)
    assert missing in assert_clean_failure(code, err)[0]
    assert out == ""


def test_empty_directory_is_an_error(cli, mnist_run, tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, err = cli("predict", tmp_path / "empty", "--model", mnist_run)
    assert "no images in directory" in assert_clean_failure(code, err)[0]


# ---- image modes -------------------------------------------------------------------------
def test_every_image_mode_is_converted_like_its_plain_equivalent(cli, mnist_run, modes_dir):
    code, records, err = predict_json(cli, modes_dir, "--model", mnist_run, "--top-k", "10")
    assert code == 0, err
    got = by_name(records)
    assert all("error" not in r for r in records)
    # Same pixels in another container: the same prediction.
    assert_same_prediction(got["rgb.png"], got["grey.png"])
    assert_same_prediction(got["sixteen.png"], got["grey.png"])  # 16-bit scaled to 8, not clipped
    assert_same_prediction(got["palette.png"], got["palette_as_rgb.png"])
    assert_same_prediction(got["rgba.png"], got["rgba_on_white.png"])  # transparency composited on white
    assert_same_prediction(got["exif_rotated.png"], got["upright.png"])  # EXIF orientation honoured
    assert probabilities(got["exif_rotated.png"]) != probabilities(got["sideways_no_exif.png"])
    # Lossy CMYK JPEG and the 1x1 image: converted and resized, with a full distribution.
    for name in ("cmyk.jpg", "tiny.png"):
        assert len(got[name]["predictions"]) == 10
        assert abs(sum(probabilities(got[name]).values()) - 1) < 1e-4


def test_rgb_photo_to_mnist_model_is_greyed_and_resized(cli, mnist_run):
    """Reference: PIL grey + bilinear resize + the checkpoint's normalisation, one image through the model."""
    from cnnkit.engine.checkpoint import load_checkpoint, model_from_checkpoint

    code, records, err = predict_json(cli, PETS_CAT, "--model", mnist_run, "--top-k", "10")
    assert code == 0, err
    checkpoint = load_checkpoint(mnist_run)
    data = checkpoint["data"]
    with Image.open(PETS_CAT) as photo:
        assert photo.mode == "RGB" and photo.size != (28, 28)
        grey = photo.convert("L").resize((28, 28), Image.Resampling.BILINEAR)
    x = torch.from_numpy(np.asarray(grey, dtype=np.float32) / 255)[None, None]
    x = (x - data["mean"][0]) / data["std"][0]
    with torch.no_grad():
        expected = model_from_checkpoint(checkpoint)(x).softmax(1)[0]
    got = probabilities(records[0])
    assert max(abs(got[i] - float(expected[i])) for i in range(10)) < 1e-4


def test_batch_size_does_not_change_predictions(cli, mnist_run, modes_dir):
    _, one_at_a_time, _ = predict_json(cli, modes_dir, "--model", mnist_run, "--batch-size", "1")
    _, batched, _ = predict_json(cli, modes_dir, "--model", mnist_run, "--batch-size", "3", "--workers", "2")
    assert [r["path"] for r in one_at_a_time] == [r["path"] for r in batched]
    for a, b in zip(one_at_a_time, batched):
        assert_same_prediction(a, b, tol=1e-5)


# ---- bad files ---------------------------------------------------------------------------
def test_bad_files_are_reported_and_the_rest_predicted(cli, mnist_run, bad_files):
    code, out, err = cli("predict", *bad_files.values(), "--model", mnist_run, "--json")
    records = by_name(json.loads(out))
    assert "3 of 5 inputs could not be read" in assert_clean_failure(code, err, after_output=True)[0]
    assert set(records) == {p.name for p in bad_files.values()}
    for good in ("good.png", "png_named.jpg"):  # content decides, not the extension
        assert "error" not in records[good] and len(records[good]["predictions"]) == 5
    for bad in ("empty.jpg", "truncated.jpg", "text.jpg"):
        assert records[bad]["error"] and records[bad]["predictions"] == []
        assert f"warning: cannot read image {bad_files[Path(bad).stem]}" in err


def test_csv_has_one_row_per_image_and_rank(cli, mnist_run, bad_files):
    code, out, err = cli("predict", bad_files["good"], bad_files["text"], "--model", mnist_run, "--csv", "--top-k", "3")
    assert_clean_failure(code, err, after_output=True)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == ["path", "rank", "label", "index", "probability", "error"]
    good = [r for r in rows if r["path"] == str(bad_files["good"])]
    assert [r["rank"] for r in good] == ["1", "2", "3"]
    assert all(r["error"] == "" and r["label"] == r["index"] for r in good)
    probs = [float(r["probability"]) for r in good]
    assert probs == sorted(probs, reverse=True)
    (bad,) = [r for r in rows if r["path"] == str(bad_files["text"])]
    assert bad["error"] and bad["rank"] == "" and bad["label"] == ""


def test_table_output_lists_path_and_top_k(cli, mnist_run, bad_files):
    # Relative paths (cli runs in tmp_path, beside bad/) keep the table's path column unwrapped.
    code, out, err = cli("predict", "bad/good.png", "bad/empty.jpg", "--model", mnist_run, "--top-k", "2")
    assert_clean_failure(code, err, after_output=True)
    assert "top-1" in out and "top-2" in out and "top-3" not in out
    assert "bad/good.png" in out and "error:" in out and "%)" in out


def test_top_k_larger_than_classes_is_clamped(cli, mnist_run, bad_files):
    code, records, err = predict_json(cli, bad_files["good"], "--model", mnist_run, "--top-k", "50")
    assert code == 0 and len(records[0]["predictions"]) == 10
    assert "note: --top-k 50 is more than the model's 10 classes; listing all 10" in err


def test_json_and_csv_together_is_a_usage_error(cli, mnist_run, bad_files):
    code, _, err = cli("predict", bad_files["good"], "--model", mnist_run, "--json", "--csv")
    assert "--json and --csv" in assert_clean_failure(code, err, expected_code=2)[0]


@pytest.mark.parametrize("model", ["not-a-model-or-file", "lenet"])
def test_model_that_is_neither_checkpoint_nor_pretrained(cli, bad_files, model):
    code, out, err = cli("predict", bad_files["good"], "--model", model)
    assert len(assert_clean_failure(code, err)) == 2  # the error and its hint
    assert out == ""


def test_corrupt_checkpoint_is_an_error(cli, bad_files, tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    code, _, err = cli("predict", bad_files["good"], "--model", broken)
    assert_clean_failure(code, err)


# ---- pretrained names --------------------------------------------------------------------
@pytest.fixture
def hub_with_mobilenet(tmp_path, monkeypatch):
    """A temporary TORCH_HOME holding randomly initialised MobileNetV2 weights under torchvision's file name."""
    import torchvision

    from cnnkit.models import get_spec
    from cnnkit.models.backbones import weights_path

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    spec = get_spec("mobilenet_v2")
    path = weights_path(spec)
    assert str(path).startswith(str(tmp_path))
    path.parent.mkdir(parents=True)
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2(weights=None)
    torch.save(model.state_dict(), path)
    return model.eval()


def test_pretrained_name_uses_the_hub_cache_weights_transforms_and_imagenet_classes(cli, hub_with_mobilenet, modes_dir):
    import torchvision

    weights = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1
    code, records, err = predict_json(cli, PETS_CAT, modes_dir / "cmyk.jpg", "--model", "mobilenet", "--top-k", "3")
    assert code == 0, err
    with Image.open(PETS_CAT) as photo, torch.no_grad():
        expected = hub_with_mobilenet(weights.transforms()(photo.convert("RGB"))[None]).softmax(1)[0]
    top = expected.topk(3)
    cat = by_name(records)[PETS_CAT.name]
    assert [p["index"] for p in cat["predictions"]] == top.indices.tolist()
    assert [p["label"] for p in cat["predictions"]] == [weights.meta["categories"][i] for i in top.indices]
    assert all(abs(p["probability"] - float(v)) < 1e-5 for p, v in zip(cat["predictions"], top.values))
    assert len(by_name(records)["cmyk.jpg"]["predictions"]) == 3


def test_missing_pretrained_weights_say_how_to_download(cli, bad_files, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    code, out, err = cli("predict", bad_files["good"], "--model", "mobilenet_v2")
    error, hint = assert_clean_failure(code, err)
    assert out == ""
    assert "not in the torch hub cache" in error
    assert "cnnkit download --weights mobilenet_v2" in hint
    assert not (tmp_path / "empty-torch-home").exists()  # nothing fetched, nothing written


# ---- the JPEG fast path ------------------------------------------------------------------
def test_jpeg_fast_path_decodes_exactly_like_load_image(tmp_path):
    """Plain JPEGs at the model's size skip Pillow; everything else must still go through load_image."""
    from cnnkit.data.images import ImageReadError, load_image
    from cnnkit.engine.predict import CheckpointDecoder, decode_plain_jpeg

    photos = sorted((DATA / "cifar10-sample" / "test").rglob("*.jpg"))[:40]
    rgb = CheckpointDecoder(3, (32, 32))
    assert all(decode_plain_jpeg(p, 3, (32, 32)) is not None for p in photos)  # the fast path is taken
    assert all(torch.equal(rgb(p), load_image(p, 3, (32, 32))) for p in photos)

    pixels = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(tmp_path / "exif.jpg", exif=exif.tobytes())
    Image.fromarray(pixels[:, :, 0]).save(tmp_path / "grey.jpg")
    Image.fromarray(pixels).convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(np.ascontiguousarray(pixels[:20])).save(tmp_path / "other-size.jpg")
    for name in ("exif.jpg", "grey.jpg", "cmyk.jpg", "other-size.jpg"):
        for channels in (1, 3):
            path = tmp_path / name
            assert torch.equal(CheckpointDecoder(channels, (32, 32))(path), load_image(path, channels, (32, 32))), (name, channels)
    assert decode_plain_jpeg(tmp_path / "cmyk.jpg", 3, (32, 32)) is None

    whole = (tmp_path / "exif.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ImageReadError):
        rgb(tmp_path / "truncated.jpg")


def test_misspelt_pretrained_name_suggests_the_close_match(cli, tmp_path):
    from PIL import Image

    photo = tmp_path / "cat.png"
    Image.new("RGB", (8, 8), "orange").save(photo)
    code, out, err = cli("predict", str(photo), "--model", "resnet81")
    error, hint = assert_clean_failure(code, err)
    assert error.startswith("error: --model resnet81")
    assert hint.startswith("hint: did you mean resnet18")


# ---- real folders: one CSV row per image by default, progress on stderr --------------------------------
def test_csv_gives_the_top_class_only_unless_top_k_is_given(cli, mnist_run, tmp_path):
    for i in range(3):
        Image.fromarray(digit(200 + i)).save(tmp_path / f"{i}.png")
    code, out, err = cli("predict", tmp_path, "--model", mnist_run, "--csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 3 and {r["rank"] for r in rows} == {"1"}
    code, out, err = cli("predict", tmp_path, "--model", mnist_run, "--csv", "--top-k", "2")
    assert len(list(csv.DictReader(io.StringIO(out)))) == 6


def test_a_large_folder_shows_progress_lines_on_stderr_in_a_log(cli, mnist_run):
    folder = DATA / "cifar10-sample" / "test"  # 100 photos: read in place; stderr is no terminal here, as in a log
    code, out, err = cli("predict", folder, "--model", mnist_run, "--csv", "--batch-size", "10")
    assert code == 0, err
    progress = [line for line in err.splitlines() if line.startswith("predicted ")]
    assert [line.split(" images")[0] for line in progress] == [
        "predicted 25 of 100", "predicted 50 of 100", "predicted 75 of 100", "predicted 100 of 100"]
    assert len(list(csv.DictReader(io.StringIO(out)))) == 100  # stdout holds the CSV alone
