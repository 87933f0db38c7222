"""cnnkit export: each format from real runs, checked against cnnkit's own predict on real images, and predict
from the exported files; the refusals (format, options, missing extra, a check that fails, --out in the way).

Runs are tiny (one epoch, a few hundred images); ONNX exports are the slow part (torch.export, then
onnxscript), so each ONNX file is made once per module and shared.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import torchvision

from conftest import DATA, assert_clean_failure, digests
from export_helpers import assert_same_predictions, predicted_probabilities, rebuilt_from_safetensors

CIFAR_TEST = DATA / "cifar10-sample" / "test"
PETS = DATA / "pets-sample"


def _images(root: Path, folder: Path, per_class: int) -> Path:
    """A folder of `per_class` real images from each class folder under root."""
    folder.mkdir(parents=True)
    for cls in sorted(p for p in root.iterdir() if p.is_dir()):
        for image in sorted(cls.iterdir())[:per_class]:
            shutil.copy(image, folder / f"{cls.name}-{image.name}")
    return folder


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("export")


@pytest.fixture(scope="module")
def cifar_images(work) -> Path:
    return _images(CIFAR_TEST, work / "cifar-images", 1)  # 10 photos, one per class


@pytest.fixture(scope="module")
def lenet_cifar(tiny_run):
    """lenet on the CIFAR JPEGs: decoded at 32x32, its input size, so export and checkpoint see the same pixels."""
    return tiny_run("lenet", dataset=DATA / "cifar10-sample", limit=128)


@pytest.fixture(scope="module")
def lenet_onnx(lenet_cifar, work, invoke) -> Path:
    out = work / "lenet.onnx"
    code, stdout, stderr = invoke("export", lenet_cifar, "--format", "onnx", "--out", out)
    assert code == 0, stderr
    assert stdout.strip() == str(out)
    assert "largest probability difference" in stderr and "cifar10-sample" in stderr  # checked on the run's own images
    return out


def test_onnx_predicts_what_the_checkpoint_predicts(lenet_onnx, lenet_cifar, cifar_images, invoke):
    import onnx

    props = {p.key: p.value for p in onnx.load(lenet_onnx).metadata_props}
    assert json.loads(props["classes"])[:2] == ["airplane", "automobile"]
    document = json.loads(props["cnnkit"])
    assert document["input"]["shape"] == ["batch", 3, 32, 32] and document["input"]["dtype"] == "uint8"
    assert document["data"]["mean"] and document["model"]["name"] == "lenet"
    assert_same_predictions(predicted_probabilities(invoke, lenet_onnx, cifar_images),
                            predicted_probabilities(invoke, lenet_cifar, cifar_images))


def test_onnx_runs_without_cnnkit(lenet_onnx, lenet_cifar):
    """The graph alone (onnxruntime, uint8 images at the input size) gives the checkpoint's probabilities."""
    import onnxruntime

    from cnnkit.data.images import load_image
    from cnnkit.engine.checkpoint import load_checkpoint
    from cnnkit.engine.predict import CheckpointClassifier

    images = torch.stack([load_image(p, 3, (32, 32)) for p in sorted(CIFAR_TEST.glob("*/*.jpg"))[::20][:7]])
    session = onnxruntime.InferenceSession(str(lenet_onnx), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"images": images.numpy()})  # a batch of 7: the graph took 2 when it was traced
    want = CheckpointClassifier(load_checkpoint(lenet_cifar), torch.device("cpu")).probabilities(images)
    torch.testing.assert_close(torch.from_numpy(got), want, atol=1e-4, rtol=0)


def test_predict_from_onnx_in_every_output_format(lenet_onnx, cifar_images, invoke):
    code, table, stderr = invoke("predict", cifar_images, "--model", lenet_onnx, "--top-k", "2")
    assert code == 0, stderr
    assert "airplane-" in table and "top-2" in table
    code, csv_text, stderr = invoke("predict", cifar_images, "--model", lenet_onnx, "--top-k", "2", "--csv")
    assert code == 0, stderr
    rows = csv_text.splitlines()
    assert rows[0] == "path,rank,label,index,probability,error" and len(rows) == 1 + 10 * 2
    code, json_text, stderr = invoke("predict", cifar_images, "--model", lenet_onnx, "--top-k", "2", "--json")
    records = json.loads(json_text)
    first = next(r for r in records if r["path"] == rows[1].split(",")[0])
    assert [p["label"] for p in first["predictions"]] == [row.split(",")[2] for row in rows[1:3]]


def test_torchscript_with_float_input_predicts_what_the_checkpoint_predicts(lenet_cifar, cifar_images, work, invoke):
    out = work / "lenet-float.pt"
    code, _, stderr = invoke("export", lenet_cifar, "--format", "torchscript", "--input", "float", "--out", out)
    assert code == 0, stderr
    with zipfile.ZipFile(out) as archive:  # the metadata is a plain extra file in the archive
        extra = json.loads(archive.read(next(n for n in archive.namelist() if n.endswith("extra/cnnkit.json"))))
    assert json.loads(extra["cnnkit"])["input"]["dtype"] == "float32"
    assert json.loads(extra["cnnkit"])["input"]["range"] == [0, 1]
    for args in ((), ("--csv",)):
        code, stdout, stderr = invoke("predict", cifar_images, "--model", out, *args)
        assert code == 0 and "cat" in stdout, stderr
    assert_same_predictions(predicted_probabilities(invoke, out, cifar_images),
                            predicted_probabilities(invoke, lenet_cifar, cifar_images))


def test_safetensors_holds_what_rebuilds_the_model(lenet_cifar, work, invoke):
    from cnnkit.engine.checkpoint import load_checkpoint, model_from_checkpoint, transform_from_checkpoint
    from cnnkit.data.images import load_image

    out = work / "lenet.safetensors"
    code, stdout, stderr = invoke("export", lenet_cifar, "--out", out, "--json")  # the format from the suffix
    assert code == 0, stderr
    assert json.loads(stdout)["format"] == "safetensors"
    model, document = rebuilt_from_safetensors(out)
    checkpoint = load_checkpoint(lenet_cifar)
    transform = transform_from_checkpoint(checkpoint, "cpu")
    assert document["data"]["mean"] == checkpoint["data"]["mean"]
    x = transform(torch.stack([load_image(p, 3, (32, 32)) for p in sorted(CIFAR_TEST.glob("*/*.jpg"))[:4]]))
    with torch.no_grad():
        torch.testing.assert_close(model(x), model_from_checkpoint(checkpoint)(x), atol=0, rtol=0)


def test_static_batch_onnx_takes_its_batch_and_predict_pads_the_last(lenet_cifar, lenet_onnx, cifar_images, work, invoke):
    import onnx

    out = work / "lenet-static.onnx"
    code, _, stderr = invoke("export", lenet_cifar, "--out", out, "--static-batch", "--batch-size", "4", "--opset", "18")
    assert code == 0, stderr
    model = onnx.load(out)
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [4, 3, 32, 32]
    assert model.opset_import[0].version == 18
    assert_same_predictions(predicted_probabilities(invoke, out, cifar_images),
                            predicted_probabilities(invoke, lenet_onnx, cifar_images))


def test_cnn_on_digits_exports_and_predicts(tiny_run, work, invoke):
    """The other built-in model, on the packaged MNIST sample (IDX tensors, grey)."""
    from cnnkit.data.catalog import load_mnist_sample
    from PIL import Image

    run = tiny_run("cnn")
    digits = work / "digits"
    digits.mkdir()
    images = load_mnist_sample()[0]["test"].images
    for i in range(6):
        Image.fromarray(images[i * 7, 0].numpy()).save(digits / f"{i}.png")
    out = work / "cnn.pt"
    code, _, stderr = invoke("export", run, "--out", out)
    assert code == 0, stderr
    assert "mnist-sample's test split" in stderr
    assert_same_predictions(predicted_probabilities(invoke, out, digits), predicted_probabilities(invoke, run, digits))


@pytest.fixture(scope="module")
def finetuned_resnet(work):
    """resnet18 finetuned (head only, one epoch) on real cat and dog photos, from weights in a temporary TORCH_HOME."""
    from cnnkit.data.images import load_image
    from cnnkit.engine.config import TrainConfig
    from cnnkit.engine.runner import start_training
    from cnnkit.models import get_spec
    from cnnkit.models.backbones import weights_path
    from cnnkit.reporting import Reporter

    pets = work / "pets"
    for cls in ("Cat", "Dog"):
        for split, photos in (("train", sorted((PETS / cls).glob("*.jpg"))[:2]), ("test", sorted((PETS / cls).glob("*.jpg"))[-2:])):
            (pets / split / cls).mkdir(parents=True, exist_ok=True)
            for photo in photos:
                shutil.copy(photo, pets / split / cls / photo.name)
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("TORCH_HOME", str(work / "torch-home"))
    try:
        path = weights_path(get_spec("resnet18"))
        path.parent.mkdir(parents=True)
        torch.manual_seed(1)
        backbone = torchvision.models.resnet18()
        # BatchNorm statistics measured on the photos, as test_finetune.py's calibrated weights: random ones
        # blow activations up layer by layer, and a network that ill-conditioned is no test of an export.
        for bn in (m for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.momentum = None
        photos = torch.stack([load_image(p, 3, (224, 224), 256) for p in sorted(pets.glob("train/*/*.jpg"))])
        mean, std = torch.tensor([0.485, 0.456, 0.406])[:, None, None], torch.tensor([0.229, 0.224, 0.225])[:, None, None]
        with torch.no_grad():
            backbone.train()((photos.float() / 255 - mean) / std)
        torch.save(backbone.state_dict(), path)
        config = TrainConfig(model="resnet18", dataset=str(pets), command="finetune", finetune_mode="finetune",
                             head_epochs=1, epochs=1, batch_size=4, out=str(work / "runs"), device="cpu")
        run = Path(start_training(config, Reporter(quiet=True))["run_dir"])
    finally:
        monkeypatch.undo()
    return run, pets / "test"


def test_finetuned_torchvision_model_exports(finetuned_resnet, work, invoke):
    """TorchScript here: torch.export of a ResNet to ONNX takes long for a test, and the path is the lenet one.

    The pets photos are 180x180, decoded as they are and resized to 224 by the model's transform: a float
    graph takes that resize unrounded (a uint8 one would see it rounded to whole pixel values).
    """
    run, photos = finetuned_resnet
    out = work / "resnet.pt"
    code, _, stderr = invoke("export", run, "--out", out, "--input", "float")
    assert code == 0, stderr
    assert "pets's test split" in stderr
    assert_same_predictions(predicted_probabilities(invoke, out, photos), predicted_probabilities(invoke, run, photos))


# ---- --half, and the check that refuses ----------------------------------------------------


def test_half_passes_its_own_tolerance_and_is_refused_at_a_tighter_one(lenet_cifar, work, invoke):
    out = work / "half.pt"
    code, _, stderr = invoke("export", lenet_cifar, "--out", out, "--half")
    assert code == 0, stderr
    figure = float(stderr.split("largest probability difference ")[1].split()[0])
    assert 0 < figure <= 1e-2  # float16 really differs, within its bound
    out.write_bytes(b"the previous export")
    before = digests(out)
    code, _, stderr = invoke("export", lenet_cifar, "--out", out, "--half", "--tolerance", f"{figure / 10:g}")
    lines = assert_clean_failure(code, stderr, after_output=True)
    assert "differs from the PyTorch model by" in lines[0] and "nothing was written" in lines[0]
    assert digests(out) == before
    fresh = work / "never.pt"
    code, _, stderr = invoke("export", lenet_cifar, "--out", fresh, "--half", "--tolerance", "0")
    assert_clean_failure(code, stderr, after_output=True)
    assert not fresh.exists() and not list(work.glob(".never.pt*"))


# ---- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["--format", "tflite", "--out", "m.tflite"], "not a format"),
    (["--out", "model.bin"], "cannot tell the format"),
    (["--format", "torchscript", "--opset", "17", "--out", "m.pt"], "--opset does not apply"),
    (["--format", "safetensors", "--input", "float", "--out", "m.safetensors"], "--input does not apply"),
    (["--out", "m.onnx", "--batch-size", "4"], "--batch-size does not apply"),
    (["--out", "m.onnx", "--input", "int16"], "not an input type"),
])
def test_bad_options_are_usage_errors(args, message, lenet_cifar, work, invoke):
    code, _, stderr = invoke("export", lenet_cifar, *[str(work / a) if a.startswith("m.") else a for a in args])
    lines = assert_clean_failure(code, stderr, 2)
    assert message in lines[0]


def test_out_that_is_a_link_or_a_directory_is_refused(lenet_cifar, work, invoke):
    target = work / "target.onnx"
    target.write_bytes(b"someone else's file")
    link = work / "link.onnx"
    link.symlink_to(target)
    folder = work / "folder.onnx"
    folder.mkdir()
    for out, message in ((link, "symbolic link"), (folder, "is a directory")):
        code, _, stderr = invoke("export", lenet_cifar, "--out", out)
        assert message in assert_clean_failure(code, stderr)[0]
    assert target.read_bytes() == b"someone else's file" and link.is_symlink() and not any(folder.iterdir())


def test_onnx_without_the_extra_names_it(lenet_cifar, tmp_path):
    """onnx cannot be imported (a sys.meta_path finder refuses it): one error naming cnnkit[export]."""
    script = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('onnx', 'onnxscript', 'onnxruntime'):\n"
        "            raise ImportError(f'blocked {name}')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from cnnkit.cli import app\n"
        "app(sys.argv[1:], prog_name='cnnkit')\n"
    )
    out = tmp_path / "m.onnx"
    result = subprocess.run([sys.executable, "-c", script, "export", str(lenet_cifar), "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    lines = assert_clean_failure(result.returncode, result.stderr)
    assert "onnx" in lines[0] and 'pip install "cnnkit[export]"' in lines[1]
    assert not out.exists()


def test_torchscript_without_cnnkit_metadata_is_refused_by_predict(cifar_images, tmp_path, invoke):
    """Told apart from a checkpoint by its zip members, and refused on its metadata before its code is loaded."""
    import warnings

    foreign = tmp_path / "foreign.pt"
    with warnings.catch_warnings():  # torch.jit's deprecation notes
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.trace(torch.nn.Flatten().eval(), (torch.zeros(2, 3, 32, 32),)), str(foreign))
    code, _, stderr = invoke("predict", cifar_images, "--model", foreign)
    assert "no cnnkit export metadata" in assert_clean_failure(code, stderr)[0]


def _edited_onnx(source: Path, target: Path, edit) -> Path:
    """A copy of an exported ONNX file whose cnnkit metadata `edit(document, classes)` changed."""
    import onnx

    proto = onnx.load(source)
    props = {p.key: p.value for p in proto.metadata_props}
    document, classes = json.loads(props["cnnkit"]), json.loads(props["classes"])
    edit(document, classes)
    onnx.helper.set_model_props(proto, {"cnnkit": json.dumps(document), "classes": json.dumps(classes)})
    onnx.save(proto, target)
    return target


def _newer(document, classes):
    document["version"] = 2


def _huge(document, classes):
    document["input"]["shape"] = ["batch", 3, 10**9, 32]


def _repeated(document, classes):
    classes[1] = classes[0]


def _too_few_classes(document, classes):
    del classes[3:]  # the graph still returns ten columns


@pytest.mark.parametrize("edit, message", [(_newer, "version 2"), (_huge, "input.shape"),
                                           (_repeated, "classes are too many or repeat"),
                                           (_too_few_classes, "not one probability for each of its 3 classes")])
def test_predict_refuses_an_exported_file_whose_metadata_was_edited(edit, message, lenet_onnx, cifar_images, tmp_path,
                                                                    invoke):
    edited = _edited_onnx(lenet_onnx, tmp_path / "edited.onnx", edit)
    code, _, stderr = invoke("predict", cifar_images, "--model", edited)
    assert message in assert_clean_failure(code, stderr)[0]


def test_predict_refuses_a_damaged_onnx_file_and_model_file_with_an_exported_model(lenet_onnx, cifar_images, tmp_path,
                                                                                   invoke):
    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes(lenet_onnx.read_bytes()[:200])
    code, _, stderr = invoke("predict", cifar_images, "--model", damaged)
    assert "onnxruntime cannot load" in assert_clean_failure(code, stderr)[0]
    code, _, stderr = invoke("predict", cifar_images, "--model", lenet_onnx, "--model-file", tmp_path / "net.py")
    assert "--model-file applies to checkpoints" in assert_clean_failure(code, stderr, 2)[0]


def test_an_exported_graph_that_returns_fewer_rows_than_images_is_refused(lenet_cifar, cifar_images, work, invoke):
    """A file with cnnkit's metadata whose graph was edited to answer for one image only, whatever it is given."""
    out = work / "lenet-rows.pt"
    code, _, stderr = invoke("export", lenet_cifar, "--format", "torchscript", "--out", out)
    assert code == 0, stderr
    from cnnkit.engine.exported_model import TORCHSCRIPT_EXTRA

    with zipfile.ZipFile(out) as archive:
        props = archive.read(next(n for n in archive.namelist() if n.endswith(f"extra/{TORCHSCRIPT_EXTRA}")))

    class FirstRowOnly(torch.nn.Module):
        def forward(self, images):
            return torch.full((1, 10), 0.1)

    import warnings

    edited = work / "first-row-only.pt"
    with warnings.catch_warnings():  # torch.jit's deprecation notes
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(FirstRowOnly()), str(edited), _extra_files={TORCHSCRIPT_EXTRA: props})
    code, _, stderr = invoke("predict", cifar_images, "--model", edited)
    assert "returns [1, 10] for 10 images" in assert_clean_failure(code, stderr)[0]


def test_a_run_whose_dataset_is_gone_is_checked_on_seeded_random_images(lenet_cifar, tmp_path, invoke):
    checkpoint = torch.load(lenet_cifar / "best.pt", map_location="cpu", weights_only=True)
    checkpoint["data"]["spec"] = str(tmp_path / "moved-away")  # the folder it was trained on is no longer there
    moved = tmp_path / "moved.pt"
    torch.save(checkpoint, moved)
    code, _, stderr = invoke("export", moved, "--out", tmp_path / "moved.ts")
    assert code == 0, stderr
    assert "checking on 8 seeded random images" in stderr and "checked on seeded random images" in stderr
