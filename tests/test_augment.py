"""--augment with parameters (tutorial 000's transforms): the syntax, what each op does to real images,
bare names keeping their old meaning, and inspect-dataset drawing augmented samples."""

from __future__ import annotations

import pytest
import torch

from cnnkit.data.transforms import Augmentation, apply_augmentation, augment_uint8, parse_augment
from cnnkit.errors import UsageError

from conftest import DATA, assert_clean_failure

CIFAR = DATA / "cifar10-sample"


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """16 real CIFAR-10 photos as float in [0, 1]."""
    from cnnkit.data.resolve import load_dataset

    images = load_dataset(str(CIFAR)).split("train")
    from cnnkit.data.stats import first_images

    batch, _ = first_images(images, 3, (32, 32), 16)
    return batch.float().div(255)


def run(x, spec, seed=0):
    return apply_augmentation(x.clone(), parse_augment(spec), torch.Generator().manual_seed(seed))


def test_the_issues_syntax():
    assert parse_augment("rotate:15,jitter:0.2:0.2:0.2:0.1,flip:0.5,crop:4") == (
        Augmentation("rotate", (15.0,)), Augmentation("jitter", (0.2, 0.2, 0.2, 0.1)),
        Augmentation("flip", (0.5,)), Augmentation("crop", (4.0,)))
    assert parse_augment("flip, crop") == (Augmentation("flip"), Augmentation("crop"))


@pytest.mark.parametrize("spec", ["blur", "rotate:x", "rotate:nan", "rotate:200", "flip:1.5", "crop:2.5", "crop:-1",
                                  "jitter:1:2:3:4:5", "jitter:0.2:0.2:0.2:0.9", "flip:0.5:1"])
def test_bad_specs_are_usage_errors(spec):
    with pytest.raises(UsageError):
        parse_augment(spec)


@pytest.mark.parametrize("bare, explicit", [("flip", "flip:0.5"), ("rotate", "rotate:15"), ("crop", "crop:4"),
                                            ("jitter", "jitter:0.2:0.2")])
def test_bare_names_keep_their_meaning(photos, bare, explicit):
    """At 32x32 bare `crop` is a shift of 4 pixels (1/8 of the side): the runs before the arguments resume alike."""
    assert torch.allclose(run(photos, bare), run(photos, explicit), atol=1e-6)


def test_flip_probability(photos):
    assert torch.equal(run(photos, "flip:1"), photos.flip(-1))
    assert torch.equal(run(photos, "flip:0"), photos)


def test_zero_parameters_are_the_identity(photos):
    for spec in ("rotate:0", "crop:0", "jitter:0:0:0:0"):
        assert torch.allclose(run(photos, spec), photos, atol=1e-5), spec


def test_crop_pads_by_at_most_pad_pixels(photos):
    """A shift of up to PAD pixels with zero padding: a border at most PAD wide goes black, never more."""
    out = run(photos, "crop:3")
    assert not torch.allclose(out, photos)
    inner = out[:, :, 4:-4, 4:-4]
    assert (inner.sum(1) > 0).float().mean() > 0.99  # the middle stays image


def test_saturation_and_hue_change_colour_not_grey(photos):
    grey = photos.mean(1, keepdim=True).expand(-1, 3, -1, -1).contiguous()
    assert not torch.allclose(run(photos, "jitter:0:0:0:0.5"), photos, atol=1e-2)
    assert not torch.allclose(run(photos, "jitter:0:0:1"), photos, atol=1e-2)
    assert torch.allclose(run(grey, "jitter:0:0:1:0.5"), grey, atol=1e-2)  # grey has no hue or saturation


def test_augment_uint8_is_seeded(photos):
    images = photos.mul(255).to(torch.uint8)
    assert torch.equal(augment_uint8(images, "rotate:15,flip", 1), augment_uint8(images, "rotate:15,flip", 1))
    assert not torch.equal(augment_uint8(images, "rotate:15,flip", 1), augment_uint8(images, "rotate:15,flip", 2))


def test_train_takes_parameters_and_refuses_bad_ones(cli):
    code, _, err = cli("train", "oneconv", "--dataset", "mnist-sample", "--limit", 32, "--epochs", 1,
                       "--augment", "rotate:10,crop:2", "--device", "cpu", "--quiet")
    assert code == 0, err
    code, _, err = cli("train", "oneconv", "--dataset", "mnist-sample", "--augment", "rotate:abc")
    assert "rotate:abc" in assert_clean_failure(code, err, 2)[0]


def test_inspect_draws_augmented_samples(cli, tmp_path):
    from PIL import Image

    code, out, err = cli("inspect-dataset", CIFAR, "--show", 8, "--augment", "rotate:30,flip:0.5", "--out",
                         tmp_path / "aug.png", "--quiet")
    assert code == 0, err
    code, _, err = cli("inspect-dataset", CIFAR, "--show", 8, "--out", tmp_path / "plain.png", "--quiet")
    assert code == 0, err
    augmented, plain = (Image.open(tmp_path / name).convert("RGB") for name in ("aug.png", "plain.png"))
    assert augmented.size == plain.size and augmented.tobytes() != plain.tobytes()
    code, _, err = cli("inspect-dataset", CIFAR, "--augment", "flip")
    assert "--show" in assert_clean_failure(code, err, 2)[0]
