"""The built-in recipes: one per experiment of the five tutorials cnnkit reproduces.

Plain data (no torch): `cnnkit recipes` lists them without loading anything heavy, and
`cnnkit train/finetune --recipe NAME` lays `sets` over the TrainConfig defaults (then a
--config file, then the options given on the command line). `sets` uses TrainConfig field
names, so a recipe, a --config file and a run's config.json speak the same keys.

`printed` is what the tutorial printed after each epoch (validation accuracy as a fraction),
so a recipe run can be set beside it epoch by epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TUTORIAL_FILES = {
    "000": "000-mnist-cnn-and-transforms.txt",
    "001": "001-ms-learn-pytorch-cv.txt",
    "002": "002-alexnet-fashion-mnist.txt",
    "003": "003-modules-init-losses.txt",
    "004": "004-mnist-idx-dropout-resume.txt",
}


@dataclass(frozen=True)
class Recipe:
    name: str
    command: str  # "train" or "finetune": the command that runs it
    tutorial: str  # a key of TUTORIAL_FILES
    section: str  # where in the tutorial ("§5.3-5.4"), or "" for a tutorial with one experiment
    experiment: str
    sets: dict = field(default_factory=dict)  # TrainConfig field -> value
    printed: tuple = ()  # the tutorial's validation accuracy after each epoch
    printed_note: str = ""  # what the printed numbers are, where it is not plain per-epoch val accuracy

    @property
    def source(self) -> str:
        return f"{TUTORIAL_FILES[self.tutorial]} {self.section}".strip()


# 001's `train()` uses Adam lr 0.01 and NLLLoss on LogSoftmax outputs, with ToTensor only.
_MS_LEARN = {"optimizer": "adam", "lr": 0.01, "loss": "nll", "normalize": "none", "schedule": "none"}
# 004 reads the raw IDX files, divides by 255 and trains with SGD lr 0.01 momentum 0.5 on NLL.
_IDX_DROPOUT = {"model": "cnn-dropout", "dataset": "mnist", "optimizer": "sgd", "lr": 0.01, "momentum": 0.5,
                "batch_size": 100, "epochs": 4, "loss": "nll", "normalize": "none", "schedule": "none"}
# 001 §6: Resize 256, CenterCrop 224, ImageNet Normalize (the pretrained weights' own preprocessing),
# Adam and cross-entropy (its train_long with loss_fn=CrossEntropyLoss).
_CATS_DOGS = {"dataset": "cats-dogs", "optimizer": "adam", "schedule": "none", "loss": "cross-entropy",
              "normalize": "imagenet"}
# 002 resizes Fashion-MNIST to 224 with ToTensor only and trains with Adam and cross-entropy.
_ALEXNET = {"model": "alexnet", "dataset": "fashion-mnist", "image_size": [224, 224], "optimizer": "adam",
            "epochs": 3, "schedule": "none", "loss": "cross-entropy", "normalize": "none"}

RECIPES: tuple[Recipe, ...] = (
    Recipe("mnist-cnn", "train", "000", "", "MNIST CNN (3 conv blocks, Adam)",
           {"model": "cnn", "dataset": "mnist", "optimizer": "adam", "lr": 0.001, "batch_size": 64, "epochs": 3,
            "schedule": "none", "loss": "cross-entropy", "normalize": "none"},
           printed_note="running train/test accuracy every 100 batches; no per-epoch figure"),
    Recipe("ms-perceptron", "train", "001", "§3.1-3.4", "perceptron: Linear 784->10, LogSoftmax",
           {"model": "perceptron", "dataset": "mnist", "batch_size": 64, "epochs": 5, **_MS_LEARN},
           printed=(0.894, 0.899, 0.899, 0.897, 0.897)),
    Recipe("ms-mlp", "train", "001", "§3.5-3.7", "MLP 784->100->10",
           {"model": "mlp", "dataset": "mnist", "batch_size": 64, "epochs": 5, **_MS_LEARN},
           printed_note="curves only"),
    Recipe("ms-oneconv", "train", "001", "§4", "OneConv: conv 1->9 5x5, Linear 5184->10",
           {"model": "oneconv", "dataset": "mnist", "batch_size": 128, "epochs": 5, **_MS_LEARN},
           printed=(0.967, 0.977, 0.976, 0.974, 0.973)),
    Recipe("ms-multilayer-cnn", "train", "001", "§5.2", "MultiLayerCNN: conv 10, conv 20, Linear 320->10",
           {"model": "multilayer-cnn", "dataset": "mnist", "batch_size": 128, "epochs": 5, **_MS_LEARN},
           printed=(0.980,), printed_note="epoch 1 only"),
    Recipe("lenet-cifar10", "train", "001", "§5.3-5.4", "LeNet on CIFAR-10",
           {"model": "lenet", "dataset": "cifar10", "optimizer": "sgd", "lr": 0.001, "momentum": 0.9,
            "batch_size": 14, "epochs": 3, "schedule": "none", "loss": "cross-entropy", "normalize": "0.5/0.5"},
           printed=(0.388, 0.491, 0.522)),
    Recipe("vgg16-features", "finetune", "001", "§6.5", "VGG16 features, Linear 25088->2 on cached features",
           {"model": "vgg16", **_CATS_DOGS, "finetune_mode": "features", "lr": 0.01, "batch_size": 32,
            "loss": "nll", "head_epochs": 10, "epochs": 10, "limit": 800, "val_split": 0.125},
           printed=(0.990, 0.980, 0.990, 0.980, 0.980, 0.980, 0.980, 0.980, 0.980, 0.980),
           printed_note="800 images: 700 train, 100 validation"),
    Recipe("vgg16-head", "finetune", "001", "§6.6", "VGG16, new head Linear 25088->2, backbone frozen",
           {"model": "vgg16", **_CATS_DOGS, "finetune_mode": "finetune", "lr": 0.01, "batch_size": 16,
            "head_epochs": 1, "epochs": 1},
           printed=(0.9672,)),
    Recipe("vgg16-unfreeze", "finetune", "001", "§6.7", "VGG16 head, then everything trainable at lr 1e-4",
           {"model": "vgg16", **_CATS_DOGS, "finetune_mode": "finetune", "lr": 0.01, "batch_size": 16,
            "head_epochs": 1, "unfreeze_epochs": 1, "unfreeze_lr": 1e-4, "epochs": 2},
           printed=(0.9672, 0.9744)),
    Recipe("mobilenetv2-transfer", "finetune", "001", "§7.3", "MobileNetV2, classifier -> Linear 1280->2",
           {"model": "mobilenet_v2", **_CATS_DOGS, "finetune_mode": "finetune", "lr": 0.01, "batch_size": 32,
            "head_epochs": 1, "epochs": 1},
           printed=(0.98245,)),
    Recipe("alexnet-fashion-mnist", "train", "002", "", "AlexNet on Fashion-MNIST at 224 (the stable run)",
           {**_ALEXNET, "lr": 0.001, "batch_size": 128},
           printed=(0.8617, 0.8715, 0.8859)),
    Recipe("alexnet-fashion-mnist-diverge", "train", "002", "", "AlexNet at lr 0.01, batch 32 (diverges)",
           {**_ALEXNET, "lr": 0.01, "batch_size": 32},
           printed=(0.629, 0.098, 0.100), printed_note="the tutorial's first try: it diverges"),
    Recipe("dropout-cnn-idx", "train", "004", "§2", "Dropout CNN from raw IDX files",
           {**_IDX_DROPOUT},
           printed=(0.9140, 0.9379, 0.9460, 0.9532), printed_note="test accuracy after script runs 2-5"),
    Recipe("dropout-cnn-wide", "train", "004", "§2.6", "wider Dropout CNN: conv 32/64, fc 1024->100",
           {**_IDX_DROPOUT, "model_args": {"conv1": 32, "conv2": 64, "hidden": 100}},
           printed=(0.9038, 0.9456, 0.9608, 0.9694)),
)

_BY_NAME = {recipe.name: recipe for recipe in RECIPES}


def recipe_names() -> list[str]:
    return [recipe.name for recipe in RECIPES]


def find_recipe(name: str) -> Recipe | None:
    return _BY_NAME.get(name)


def comparison(recipe: Recipe, run_val_acc: list) -> list[dict]:
    """Epoch by epoch: the tutorial's printed validation accuracy beside the run's (None where one has none)."""
    rows = max(len(recipe.printed), len(run_val_acc))
    return [{"epoch": i + 1,
             "tutorial_val_acc": recipe.printed[i] if i < len(recipe.printed) else None,
             "run_val_acc": run_val_acc[i] if i < len(run_val_acc) else None} for i in range(rows)]


def run_beside_tutorial(run_dir) -> dict | None:
    """For a run started from a recipe: the recipe and its epochs beside the run's (from config.json and
    metrics.csv, so a resumed run reads the same). None for other runs or unreadable files."""
    import csv
    import json
    from pathlib import Path

    run_dir = Path(run_dir)
    try:
        name = json.loads((run_dir / "config.json").read_text(encoding="utf-8")).get("recipe")
        recipe = find_recipe(name) if isinstance(name, str) else None
        if recipe is None:
            return None
        with open(run_dir / "metrics.csv", newline="", encoding="utf-8") as handle:
            run = [_float(row.get("val_acc")) for row in csv.DictReader(handle)]
    except (OSError, ValueError, AttributeError):
        return None
    return {"recipe": recipe.name, "tutorial": recipe.source, "note": recipe.printed_note,
            "epochs": comparison(recipe, run)}


def _float(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None
