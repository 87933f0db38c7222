"""Fuzzing what cnnkit reads from users: dataset specs, image bytes given to predict, checkpoint bytes.

Whatever the input, the answer is a value or one of cnnkit's own errors, which the CLI turns
into an `error:` line; never another exception. test_idx_fuzz fuzzes the IDX reader and the
kernel parser. Crashes the fuzzers found are kept below as plain regression tests.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from cnnkit.data.idx import write_idx
from cnnkit.data.images import ImageReadError, load_image
from cnnkit.errors import CheckpointError, CnnkitError
from conftest import assert_clean_failure
from hostile import jpeg_bytes, picture, png_header_only, write_broken_idx

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


# ---- dataset specs ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spec_root(tmp_path_factory) -> Path:
    """A working directory with things a spec can name: a good folder, broken IDX, junk, a file."""
    root = tmp_path_factory.mktemp("specs") / "deep" / "cwd"
    for cls in ("a", "b"):
        (root / "good" / cls).mkdir(parents=True)
        Image.fromarray(picture(size=(8, 8))).save(root / "good" / cls / "1.png")
    write_broken_idx(root / "idx-magic", "magic")
    write_broken_idx(root / "idx-count", "count")
    (root / "junk" / "x").mkdir(parents=True)
    (root / "junk" / "x" / "Thumbs.db").write_bytes(b"junk")
    (root / "file.txt").write_text("a file\n")
    (root / "empty").mkdir()
    return root


NAMES = ["good", "idx-magic", "idx-count", "junk", "file.txt", "empty", ".", "..", "mnist-sample"]
# Characters of names, including ones file systems and pathlib treat specially (NUL, separators are left out
# so a spec never escapes the test's directory, and "~" so it never names the home directory).
NAME_CHARS = st.characters(blacklist_characters="/~\\", blacklist_categories=("Cs",))


@st.composite
def specs(draw) -> str:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.sampled_from(NAMES))
    if kind == 1:  # a known name, then something after it
        return draw(st.sampled_from(NAMES)) + draw(st.sampled_from(["/", "/a", "/../good", " ", "\x00", "-", "/x/y"]))
    if kind == 2:  # a catalog name with a typo
        name = draw(st.sampled_from(["mnist", "fashion-mnist", "cifar10", "cats-dogs"]))
        i = draw(st.integers(0, len(name) - 1))
        return name[:i] + draw(st.text(NAME_CHARS, min_size=1, max_size=2)) + name[i + 1:]
    return draw(st.text(NAME_CHARS, max_size=20))


CATALOG_DOWNLOADS = {"mnist", "fashion-mnist", "cifar10", "cats-dogs"}


@FUZZ
@given(spec=specs())
@example(spec="good\x00")
@example(spec=" good ")
@example(spec="MNIST-SAMPLE")
def test_any_dataset_spec_resolves_or_raises_a_cnnkit_error(spec_root, monkeypatch, spec):
    from cnnkit.data.resolve import load_dataset

    if spec.strip().lower() in CATALOG_DOWNLOADS:
        return  # these download; the network is not the subject here
    monkeypatch.chdir(spec_root)
    try:
        dataset = load_dataset(spec, spec_root / "data-root", workers=1)
    except CnnkitError as exc:
        assert exc.message
        return
    assert len(dataset.classes) >= 1 and len(dataset.split("train")) >= 1


# ---- random bytes as images, through predict's core ------------------------------------------


def _encoded(fmt: str) -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(picture(size=(12, 10)))
    (image.convert("RGB") if fmt == "JPEG" else image).save(buffer, format=fmt)
    return buffer.getvalue()


SEEDS = [_encoded(f) for f in ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")] + [jpeg_bytes(), png_header_only(64, 64)]


@st.composite
def image_bytes(draw) -> bytes:
    """Random bytes, or a real image of some format damaged in a few places, cut or with junk appended."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=400))
    raw = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(raw)))
    return bytes(raw[:cut]) + draw(st.binary(max_size=20)) if draw(st.booleans()) else bytes(raw)


@pytest.fixture(scope="module")
def classifier(tiny_run):
    from cnnkit.engine.checkpoint import load_checkpoint
    from cnnkit.engine.predict import CheckpointClassifier

    return CheckpointClassifier(load_checkpoint(tiny_run()), torch.device("cpu"))


@FUZZ
@given(raw=image_bytes(), suffix=st.sampled_from([".png", ".jpg", ".gif", ".bmp", ".tif", ".webp", ".dat"]))
def test_any_bytes_given_to_predict_give_a_prediction_or_a_reason(classifier, tmp_path_factory, raw, suffix):
    from cnnkit.engine.predict import predict_files

    folder = tmp_path_factory.mktemp("fuzz-images", numbered=True)
    path = folder / f"input{suffix}"
    path.write_bytes(raw)
    good = folder / "good.png"
    Image.fromarray(picture()).save(good)
    first, second = list(predict_files(classifier, [path, good], top_k=3, batch_size=2, workers=0))
    assert (first.error is None) != (not first.top), first  # exactly one of a prediction or a reason
    if first.error is None:
        probabilities = [p for _, p in first.top]
        assert all(0 <= p <= 1 for p in probabilities) and probabilities == sorted(probabilities, reverse=True)
    assert second.error is None and len(second.top) == 3  # one bad file never spoils the batch
    assert path.read_bytes() == raw  # read, never changed


@FUZZ
@given(raw=image_bytes(), channels=st.sampled_from([1, 3]))
def test_load_image_returns_the_asked_shape_or_image_read_error(tmp_path_factory, raw, channels):
    import warnings

    path = tmp_path_factory.mktemp("fuzz-load", numbered=True) / "x.img"
    path.write_bytes(raw)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        try:
            tensor = load_image(path, channels=channels, size=(16, 16))
        except ImageReadError as exc:
            tensor = exc
    # A library warning would reach the user's terminal as a stray line beside cnnkit's own.
    assert not [w for w in shown if "PIL" in w.filename], [str(w.message) for w in shown]
    if isinstance(tensor, ImageReadError):
        assert tensor.reason and str(path) in tensor.message
        return
    assert tensor.shape == (channels, 16, 16) and tensor.dtype == torch.uint8


# ---- checkpoint bytes ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def good_checkpoint_bytes(tiny_run) -> bytes:
    return (tiny_run() / "best.pt").read_bytes()


@FUZZ
@given(data=st.data())
def test_any_checkpoint_bytes_load_or_raise_checkpoint_error(good_checkpoint_bytes, tmp_path_factory, data):
    from cnnkit.engine.checkpoint import load_checkpoint, model_from_checkpoint

    raw = bytearray(good_checkpoint_bytes)
    choice = data.draw(st.sampled_from(["random", "cut", "flip"]))
    if choice == "random":
        raw = bytearray(data.draw(st.binary(max_size=200)))
    elif choice == "cut":
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    else:
        for _ in range(data.draw(st.integers(1, 8))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    path = tmp_path_factory.mktemp("fuzz-ckpt", numbered=True) / "x.pt"
    path.write_bytes(bytes(raw))
    try:
        model_from_checkpoint(load_checkpoint(path))
    except CheckpointError as exc:
        assert exc.message


# ---- regressions the fuzzers and the hostile suite found -------------------------------------


@pytest.mark.parametrize("payload", [b"hi\n", b"\x80\x02}q\x00", b"PK\x03\x04", b""])
def test_short_non_checkpoint_bytes_are_a_checkpoint_error(tmp_path, payload):
    """torch.load met these with KeyError / IndexError / EOFError, shown as 'unexpected KeyError: 105'."""
    from cnnkit.engine.checkpoint import load_checkpoint

    path = tmp_path / "x.pt"
    path.write_bytes(payload)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_empty_weights_file_is_a_checkpoint_error(tmp_path):
    """`finetune --weights empty.pth` crashed with IndexError on the empty error message."""
    from cnnkit.safeload import load_state_dict_file

    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="cannot read weights file"):
        load_state_dict_file(path)


def test_a_spec_with_a_nul_byte_is_no_such_dataset(tmp_path):
    """The OS refuses paths holding NUL with ValueError; the spec is simply not a dataset."""
    from cnnkit.data.resolve import load_dataset
    from cnnkit.errors import DataError

    (tmp_path / "d").mkdir()
    write_idx(tmp_path / "d" / "train-images-idx3-ubyte", np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(DataError):
        load_dataset(str(tmp_path / "d") + "\x00")


def test_a_name_with_a_line_break_still_gives_one_error_line(cli):
    """The spec fuzzer's first find: 'unknown dataset 'a<newline>b'' printed over two lines."""
    code, _, err = cli("inspect-dataset", "a\nb")
    assert "'a\\nb'" in assert_clean_failure(code, err)[0]


def test_a_damaged_tiff_gives_no_stray_pillow_warning(cli, tmp_path, classifier):
    """The image fuzzer's find: an 8-byte TIFF header made Pillow print 'UserWarning: Corrupt EXIF data'
    on stderr beside cnnkit's own warning line."""
    import warnings

    path = tmp_path / "damaged.tif"
    path.write_bytes(b"II*\x00\x08\x00\x00\x00")
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        code, _, err = cli("predict", path, "--model", classifier.source)
    assert_clean_failure(code, err, after_output=True)
    assert not [str(w.message) for w in shown if "PIL" in w.filename]
