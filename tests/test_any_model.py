"""Issue 20: any model — a user's file, torchvision's whole zoo, timm — at any image size, with --model-arg."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torchvision

from cnnkit.models import get_model, get_spec
from conftest import DATA, assert_clean_failure, write_digits_idx

MY_NET = '''\
import torch
from torch import nn


class MyNet(nn.Module):
    """Tutorial 001's MyNet, with a width to set from the command line."""

    def __init__(self, in_channels, num_classes, image_size, width=8):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1)
        self.fc = nn.Linear(width * (image_size // 2) ** 2, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.max_pool2d(torch.relu(self.conv(x)), 2), 1))


def seven_classes():
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 7))


def any_size(in_channels, num_classes, image_size):
    """image_size is one int for a square input, else (H, W); the model keeps what it was given."""
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    model = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * height * width, num_classes))
    model.given_size = image_size
    return model
'''


@pytest.fixture
def model_file(tmp_path) -> Path:
    path = tmp_path / "mynet.py"
    path.write_text(MY_NET)
    return path


def _digits(tmp_path: Path) -> Path:
    """64 training and 32 test digits of the shipped sample as an IDX directory: runs here take seconds."""
    root = tmp_path / "digits"
    return root if root.is_dir() else write_digits_idx(root, 64, 32)


def _train(tmp_path: Path, model: str, **options) -> Path:
    """One tiny real run (tiny_run's keys must be hashable; model_args and image_size are a dict and a list)."""
    from cnnkit.engine.config import TrainConfig
    from cnnkit.engine.runner import start_training
    from cnnkit.reporting import Reporter

    settings = {"epochs": 1, "device": "cpu", "dataset": str(_digits(tmp_path)), **options}
    config = TrainConfig(model=model, out=str(tmp_path / "runs"), **settings)
    return Path(start_training(config, Reporter(quiet=True))["run_dir"])


def _digit_png(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "digit.png"
    Image.new("L", (28, 28), 0).save(path)
    return path


def test_a_user_file_trains_evaluates_predicts_and_is_refused_once_changed(cli, model_file, tmp_path):
    code, out, err = cli("train", f"{model_file}:MyNet", "--epochs", "1", "--dataset", _digits(tmp_path), "--model-arg", "width=4",
                         "--out", tmp_path / "runs", "--device", "cpu", "--quiet")
    assert code == 0, err
    run = Path(out.strip().splitlines()[-1])
    assert run.name == "MyNet-digits"
    saved = torch.load(run / "best.pt", weights_only=True)
    source = saved["model"]["source"]
    assert source["kind"] == "file" and source["attr"] == "MyNet" and len(source["sha256"]) == 64
    assert saved["model"]["args"] == {"width": 4}

    code, out, err = cli("evaluate", run, "--json", "--device", "cpu")
    assert code == 0, err
    assert 0 <= json.loads(out)["accuracy"] <= 1
    code, out, err = cli("predict", _digit_png(tmp_path), "--model", run, "--json", "--device", "cpu")
    assert code == 0, err
    code, out, err = cli("summary", "--checkpoint", run, "--json")
    assert code == 0 and json.loads(out)["model"].endswith("mynet.py:MyNet"), err

    model_file.write_text(MY_NET + "\nprint('this line must not run')\n")
    code, out, err = cli("evaluate", run, "--device", "cpu")
    lines = assert_clean_failure(code, err)
    assert "changed since the checkpoint was written" in lines[0] and "--model-file" in lines[1]
    assert "must not run" not in out
    # Asked for explicitly, the changed file is used.
    code, out, err = cli("evaluate", run, "--model-file", model_file, "--json", "--device", "cpu")
    assert code == 0, err
    model_file.unlink()
    code, out, err = cli("predict", _digit_png(tmp_path), "--model", run, "--device", "cpu")
    assert "not found" in assert_clean_failure(code, err)[0]


def test_the_output_shape_is_checked_on_one_batch_before_training(cli, model_file, tmp_path):
    code, out, err = cli("train", f"{model_file}:seven_classes", "--epochs", "1", "--dataset", _digits(tmp_path),
                         "--out", tmp_path / "runs", "--device", "cpu")
    lines = assert_clean_failure(code, err, after_output=True)
    assert "returned shape (N, 7); wanted (N, 10)" in lines[0]
    assert not list((tmp_path / "runs").glob("*/best.pt"))


def test_a_failing_model_file_is_an_error_at_its_line(cli, tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("import torch\n\nraise RuntimeError('no GPU here')\n")
    code, out, err = cli("summary", f"{path}:Net")
    lines = assert_clean_failure(code, err)
    assert "line 3" in lines[0] and "no GPU here" in lines[0]
    code, out, err = cli("summary", f"{tmp_path / 'missing.py'}:Net")
    assert "not found" in assert_clean_failure(code, err)[0]


@pytest.mark.parametrize("name, arg, takes", [("mlp", "hiddn=3", "hidden"), ("lenet", "hidden=3", "no --model-arg")])
def test_an_unknown_model_arg_names_the_ones_the_builder_takes(cli, tmp_path, name, arg, takes):
    code, out, err = cli("train", name, "--model-arg", arg, "--epochs", "1", "--dataset", _digits(tmp_path), "--out", tmp_path)
    lines = assert_clean_failure(code, err, after_output=True)
    assert arg.split("=")[0] in lines[0] and takes in lines[1]


def test_model_args_reach_a_builtin_builder_and_the_checkpoint(tmp_path):
    run = _train(tmp_path, "mlp", model_args={"hidden": 12})
    saved = torch.load(run / "best.pt", weights_only=True)
    assert saved["model"]["args"] == {"hidden": 12} and saved["model"]["state_dict"]["1.weight"].shape[0] == 12
    from cnnkit.engine.checkpoint import load_checkpoint, model_from_checkpoint

    assert model_from_checkpoint(load_checkpoint(run))[1].out_features == 12


def test_model_arg_values_are_parsed_as_plain_values():
    from cnnkit.cli.train_options import parse_model_args

    assert parse_model_args(["a=3", "b=0.5", "c=true", "d=relu", "drop-rate=1e-3"]) == {
        "a": 3, "b": 0.5, "c": True, "d": "relu", "drop_rate": 0.001}


@pytest.mark.parametrize("size", ["0", "3,4,5", "big", "100,0"])
def test_a_bad_image_size_is_a_usage_error(cli, tmp_path, size):
    code, out, err = cli("train", "lenet", "--image-size", size, "--epochs", "1", "--out", tmp_path)
    assert_clean_failure(code, err, 2)


def test_resnet18_trains_at_32_pixels_and_evaluate_feeds_it_32(tmp_path):
    run = _train(tmp_path, "resnet18", limit=16, image_size=[32, 32], batch_size=16)
    saved = torch.load(run / "best.pt", weights_only=True)
    assert saved["data"]["input_size"] == [3, 32, 32] and saved["model"]["kwargs"]["image_size"] == 32
    from cnnkit.engine.evaluate_checkpoint import evaluate_checkpoint

    assert evaluate_checkpoint(run, device="cpu").result.count == 32


# ---- H,W: non-square inputs --------------------------------------------------------------------
def test_a_non_square_size_trains_evaluates_predicts_and_exports(cli, tmp_path):
    """cnn at 20x28 (H x W): every layer's size follows both sides, and every command feeds it 20x28."""
    run = _train(tmp_path, "cnn", image_size=[20, 28])
    saved = torch.load(run / "best.pt", weights_only=True)
    assert saved["model"]["kwargs"]["image_size"] == [20, 28] and saved["data"]["input_size"] == [1, 20, 28]
    assert saved["model"]["state_dict"]["11.weight"].shape == (10, 64 * 5 * 7)  # two poolings: 20x28 -> 5x7
    code, out, err = cli("evaluate", run, "--json", "--device", "cpu")
    assert code == 0 and json.loads(out)["count"] == 32, err
    code, out, err = cli("predict", _digit_png(tmp_path), "--model", run, "--json", "--device", "cpu")
    assert code == 0, err
    code, out, err = cli("export", run, "--format", "onnx", "--out", tmp_path / "cnn.onnx")
    assert code == 0, err
    import onnx

    dims = onnx.load(tmp_path / "cnn.onnx").graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims][1:] == [1, 20, 28]


def test_a_mixed_size_folder_is_decoded_to_the_chosen_height_and_width(tmp_path):
    from PIL import Image

    from cnnkit.engine.evaluate_checkpoint import evaluate_checkpoint

    for index, (width, height) in enumerate([(60, 40), (50, 50), (48, 64)] * 4):
        folder = tmp_path / "photos" / ("ab"[index % 2])
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (width, height), (255 * (index % 2), 90, 30)).save(folder / f"{index}.png")
    run = _train(tmp_path, "perceptron", dataset=str(tmp_path / "photos"), image_size=[24, 32])
    saved = torch.load(run / "best.pt", weights_only=True)
    assert saved["data"]["size"] == [24, 32] and saved["model"]["state_dict"]["1.weight"].shape == (2, 3 * 24 * 32)
    evaluation = evaluate_checkpoint(run, device="cpu")  # it decodes the folder as training did: 24x32, not 24x24
    assert tuple(evaluation.dataset.size) == (24, 32) and evaluation.result.count == 2  # 20% of 12 held out


def test_a_users_builder_gets_one_side_for_a_square_and_height_width_otherwise(model_file):
    square = get_model(f"{model_file}:any_size", in_channels=1, num_classes=3, image_size=(28, 28), fixed_size=True)
    wide = get_model(f"{model_file}:any_size", in_channels=1, num_classes=3, image_size=(20, 28), fixed_size=True)
    assert square.given_size == 28 and wide.given_size == (20, 28) and wide[1].in_features == 20 * 28


def test_summary_builds_a_model_at_the_non_square_input_it_summarises(cli):
    code, out, err = cli("summary", "perceptron", "--input-size", "1,20,28", "--json")
    assert code == 0, err
    assert json.loads(out)["total_params"] == 20 * 28 * 10 + 10


def test_torchvision_models_take_height_and_width_but_vit_asks_for_one_side(cli, tmp_path):
    from cnnkit.models.surgery import check_output

    model = get_model("torchvision:resnet18", in_channels=3, num_classes=10, image_size=(32, 48), fixed_size=True)
    check_output(model, "resnet18", (3, 32, 48), 10)
    code, out, err = cli("train", "torchvision:vit_b_16", "--image-size", "32,48", "--epochs", "1",
                         "--dataset", _digits(tmp_path), "--out", tmp_path / "runs")
    lines = assert_clean_failure(code, err, after_output=True)
    assert "square images only" in lines[0] and "--image-size 48" in lines[1]


# ---- torchvision's whole classification zoo ---------------------------------------------------
TORCHVISION = sorted(torchvision.models.list_models(module=torchvision.models))


def _classes(model, head: str) -> int:
    layer = model.get_submodule(head)
    return getattr(layer, "out_features", getattr(layer, "out_channels", None))


@pytest.mark.parametrize("name", TORCHVISION)
def test_every_torchvision_classification_model_builds_with_a_new_head(name):
    from cnnkit.models.surgery import find_head

    spec = get_spec(f"torchvision:{name}")
    assert spec.weights is not None and len(spec.categories) == 1000 and spec.preprocessing.crop == spec.native_size
    from cnnkit.models.summary import _meta

    # On the meta device (as `cnnkit summary` builds): no memory, so the largest (RegNetY-128GF) builds here.
    model = _meta(lambda: get_model(spec.name, in_channels=3, num_classes=10, image_size=spec.native_size))
    assert _classes(model, find_head(model)) == 10


@pytest.mark.parametrize("name", ["googlenet", "squeezenet1_0", "vit_b_16", "convnext_tiny", "efficientnet_b0"])
def test_finetune_puts_the_new_head_where_a_checkpoint_rebuilds_it(name):
    """finetune: torchvision's ImageNet architecture, head replaced; evaluate rebuilds it from the builder."""
    from cnnkit.models.backbones import finetune_architecture
    from cnnkit.models.surgery import find_head

    spec = get_spec(f"torchvision:{name}")
    with torch.device("meta"):
        tuned = finetune_architecture(spec, 10)
        scratch = get_model(spec.name, in_channels=3, num_classes=10, image_size=spec.native_size)
    assert _classes(tuned, find_head(tuned)) == 10
    assert tuned.state_dict().keys() == scratch.state_dict().keys()


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "squeezenet1_1", "shufflenet_v2_x0_5"])
def test_a_handful_of_torchvision_models_train_a_step_at_32_pixels(name):
    from cnnkit.models.surgery import check_output

    torch.manual_seed(0)
    model = get_model(f"torchvision:{name}", in_channels=1, num_classes=10, image_size=32, fixed_size=True)
    check_output(model, name, (3, 32, 32), 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)


def test_an_unknown_torchvision_name_suggests_close_ones(cli):
    code, out, err = cli("summary", "torchvision:efficientnet_b9")
    lines = assert_clean_failure(code, err)
    assert "torchvision:efficientnet_b" in lines[1]


# ---- timm ------------------------------------------------------------------------------------
def test_a_small_timm_model_trains_a_step(tmp_path):
    run = _train(tmp_path, "timm:test_resnet", limit=16, batch_size=16, image_size=[32, 32])
    saved = torch.load(run / "best.pt", weights_only=True)
    assert saved["model"]["source"] == {"kind": "timm", "ref": "test_resnet"}
    from cnnkit.engine.checkpoint import load_checkpoint, model_from_checkpoint

    assert model_from_checkpoint(load_checkpoint(run)).num_classes == 10


def test_a_timm_vit_is_built_for_the_height_and_width_asked_for():
    from cnnkit.models.surgery import check_output

    # A ViT with a fixed grid of position embeddings (test_vit's are dynamic: it would take any size anyway).
    model = get_model("timm:vit_tiny_patch16_224", in_channels=3, num_classes=10, image_size=(32, 48), fixed_size=True)
    check_output(model, "timm:vit_tiny_patch16_224", (3, 32, 48), 10)
    check_output(get_model("timm:test_resnet", in_channels=3, num_classes=10, image_size=(32, 48), fixed_size=True),
                 "timm:test_resnet", (3, 32, 48), 10)  # a CNN takes any size and no img_size


BLOCK_TIMM = textwrap.dedent('''
    import sys
    class NoTimm:
        def find_spec(self, name, path=None, target=None):
            if name == "timm" or name.startswith("timm."):
                raise ModuleNotFoundError("No module named 'timm'", name="timm")
    sys.meta_path.insert(0, NoTimm())
    sys.argv = ["cnnkit", *sys.argv[1:]]
    from cnnkit.cli import app
    app()
''')


def test_without_timm_a_timm_name_names_the_extra(tmp_path):
    command = ["train", "timm:resnet18", "--epochs", "1", "--out", str(tmp_path), "--dataset", str(_digits(tmp_path))]
    result = subprocess.run([sys.executable, "-P", "-c", BLOCK_TIMM, *command],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300)
    lines = assert_clean_failure(result.returncode, result.stderr)
    assert "timm" in lines[0] and 'pip install "cnnkit[timm]"' in lines[1]


def test_timm_weights_missing_from_the_cache_are_a_clear_error_without_network(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache, whatever this machine holds
    code, out, err = cli("finetune", "timm:test_resnet", "--dataset", DATA / "pets-sample", "--limit", "4",
                         "--out", tmp_path / "runs", "--device", "cpu")
    lines = assert_clean_failure(code, err, after_output=True)
    assert "not in the local Hugging Face cache" in lines[0] and "cnnkit never downloads" in lines[1]


# ---- listing ---------------------------------------------------------------------------------
def test_summary_list_says_how_to_list_the_other_sources(cli):
    code, out, err = cli("summary", "--list")
    assert code == 0 and "--list torchvision" in out and "--list timm" in out and "FILE.py:NAME" in out
    code, out, err = cli("summary", "--list", "torchvision", "--json")
    names = [row["name"] for row in json.loads(out)]
    assert len(names) == len(TORCHVISION) and "torchvision:efficientnet_b0" in names
    code, out, err = cli("summary", "--list", "timm", "--json")
    assert code == 0 and "timm:test_resnet" in [row["name"] for row in json.loads(out)]


# ---- hostile checkpoints of user code --------------------------------------------------------
@pytest.mark.parametrize("field, value", [
    ("sha256", "not-a-digest"), ("kind", "pickle"), ("attr", "os.system"), ("path", 7),
    ("path", "evil.py"),  # relative: whatever evil.py the directory evaluate runs in holds
])
def test_a_bad_model_source_is_refused_before_any_import(tiny_run, tmp_path, field, value):
    from cnnkit.engine.checkpoint import load_checkpoint
    from cnnkit.errors import CheckpointError

    saved = torch.load(tiny_run() / "best.pt", weights_only=True)
    saved["model"]["source"] = {"kind": "file", "ref": "/x.py", "attr": "Net", "path": "/x.py", "sha256": "0" * 64,
                                field: value}
    torch.save(saved, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=f"model.source.{field}"):
        load_checkpoint(tmp_path / "bad.pt")


def test_a_checkpoint_cannot_make_cnnkit_call_an_installed_function(tiny_run, tmp_path):
    """shutil.py's sha256 is public: a crafted checkpoint naming shutil:rmtree with path=... must not run it."""
    import shutil

    from cnnkit.engine.checkpoint import load_checkpoint, model_from_checkpoint
    from cnnkit.errors import ModelError
    from cnnkit.models.user_code import sha256_of

    victim = tmp_path / "victim"
    victim.mkdir()
    saved = torch.load(tiny_run() / "best.pt", weights_only=True)
    saved["model"].update(name="shutil:rmtree", args={"path": str(victim)}, source={
        "kind": "module", "ref": "shutil", "attr": "rmtree", "path": shutil.__file__, "sha256": sha256_of(shutil.__file__)})
    torch.save(saved, tmp_path / "crafted.pt")
    with pytest.raises(ModelError, match="refusing to call shutil:rmtree"):
        model_from_checkpoint(load_checkpoint(tmp_path / "crafted.pt"))
    assert victim.is_dir()


def test_a_checkpoint_cannot_make_cnnkit_import_an_installed_module(tiny_run, tmp_path, capsys):
    """Importing runs a module's top level: `this` prints the Zen of Python (antigravity opens a browser)."""
    import sys
    import sysconfig

    from cnnkit.engine.checkpoint import load_checkpoint, model_from_checkpoint
    from cnnkit.errors import ModelError
    from cnnkit.models.user_code import sha256_of

    this = Path(sysconfig.get_paths()["stdlib"]) / "this.py"
    saved = torch.load(tiny_run() / "best.pt", weights_only=True)
    saved["model"].update(name="this:s", source={
        "kind": "module", "ref": "this", "attr": "s", "path": str(this), "sha256": sha256_of(this)})
    torch.save(saved, tmp_path / "crafted.pt")
    with pytest.raises(ModelError, match="refusing to call this:s"):
        model_from_checkpoint(load_checkpoint(tmp_path / "crafted.pt"))
    assert "this" not in sys.modules and "Beautiful is better" not in capsys.readouterr().out


def test_the_code_that_runs_is_the_code_whose_sha256_was_checked(tmp_path, capsys):
    """A .pyc planted in __pycache__ with the source's mtime and size would run instead of the source."""
    import importlib.util
    from importlib._bootstrap_external import _code_to_timestamp_pyc

    from cnnkit.models.external import user_spec
    from cnnkit.models.user_code import sha256_of

    source = tmp_path / "benign.py"
    source.write_text(MY_NET)
    planted = compile("print('PLANTED PYC RAN')\n" + MY_NET, str(source), "exec")
    stat = source.stat()
    pyc = Path(importlib.util.cache_from_source(str(source)))
    pyc.parent.mkdir()
    pyc.write_bytes(_code_to_timestamp_pyc(planted, stat.st_mtime, stat.st_size))
    spec = user_spec(f"{source}:MyNet", expected_sha256=sha256_of(source))
    assert spec.builder.__name__ == "MyNet" and "PLANTED" not in capsys.readouterr().out


def test_summary_of_a_torchvision_model_with_a_frozen_backbone_trains_only_its_head(cli):
    code, out, err = cli("summary", "torchvision:resnet18", "--freeze-backbone", "--classes", "10", "--json")
    assert code == 0, err
    assert json.loads(out)["trainable_params"] == 512 * 10 + 10


def test_a_builder_that_calls_sys_exit_is_an_error_at_its_line(cli, tmp_path):
    path = tmp_path / "quits.py"
    path.write_text("import sys\n\n\ndef Net(num_classes):\n    sys.exit(3)\n")
    code, out, err = cli("summary", f"{path}:Net")
    assert "line 5" in assert_clean_failure(code, err)[0]


BROKEN_MODELS = {
    "absent": ("X = 3\n", "Missing", "has no 'Missing'"),
    "not-callable": ("X = 3\n", "X", "is a int, not a class or function"),
    "not-a-module": ("def Net():\n    return 3\n", "Net", "returned a int, not an nn.Module"),
    "raises": ("def Net():\n    raise ValueError('no such layer')\n", "Net", "line 2: ValueError: no such layer"),
    "bad-name": ("X = 3\n", "1abc", "'1abc' is not a Python name"),
}


@pytest.mark.parametrize("case", BROKEN_MODELS)
def test_a_model_file_that_gives_no_model_is_an_error_naming_why(cli, tmp_path, case):
    source, attr, message = BROKEN_MODELS[case]
    path = tmp_path / "broken.py"
    path.write_text(source)
    code, out, err = cli("summary", f"{path}:{attr}")
    assert message in assert_clean_failure(code, err)[0]


def test_a_model_name_of_no_kind_and_an_unknown_zoo_are_errors(cli):
    assert "neither a .py file nor a module name" in assert_clean_failure(*cli("summary", "a-b:Net")[::2])[0]
    assert "not 'bogus'" in assert_clean_failure(*cli("summary", "--list", "bogus")[::2], 2)[0]


def test_a_module_name_that_is_not_there_says_so(cli):
    code, out, err = cli("summary", "nosuchmodule.models:Net")
    lines = assert_clean_failure(code, err)
    assert "no module named 'nosuchmodule.models'" in lines[0] and "FILE.py:NAME" in lines[1]
