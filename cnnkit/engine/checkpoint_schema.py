"""What a cnnkit checkpoint must hold, checked right after the safe load and before anything is built from it.

weights_only=True keeps a crafted file from running code, but it still loads any dict of plain values:
classes that are an int, 20,000,000 classes, a string for the mean, an image side of 100,000. Each
would reach a builder or an allocation and fail there as a bug, or allocate gigabytes. One function
checks every field the commands read, with bounds no real run comes near, and names the field.
"""

from __future__ import annotations

import math
import os
import types
import typing
from dataclasses import fields

import torch

from cnnkit.engine.config import COMMANDS, FINETUNE_MODES, TrainConfig
from cnnkit.errors import CheckpointError
from cnnkit.limits import MAX_CHANNELS, MAX_CLASSES, MAX_PIXELS, MAX_SIDE
from cnnkit.sizes import size_text

FORMAT = "cnnkit.checkpoint"
VERSION = 1  # the newest layout this cnnkit writes and reads
ARCHS = ("cnnkit", "torchvision")
MODEL_KWARGS = {"in_channels", "num_classes", "image_size", "arch"}


class SchemaError(Exception):
    def __init__(self, field: str, problem: str):
        super().__init__(f"{field} {problem}")
        self.field, self.problem = field, problem


def validate_checkpoint(checkpoint: dict, path, resume: bool = False) -> None:
    """Raise a CheckpointError naming the first field that is missing, of the wrong type or out of bounds.

    The train section's loop state (config, history, partial sums) is checked wherever it is present, and
    required only to `resume`: evaluate, predict and summary read just its epoch.
    """
    try:
        _check(checkpoint, resume)
    except SchemaError as exc:
        raise CheckpointError(
            f"{path} has a bad field '{exc.field}': {exc.problem}",
            "the file was not written by cnnkit, or was edited since; use a checkpoint its run wrote",
        ) from None


# ---- the schema ----------------------------------------------------------------------------


def _check(checkpoint: dict, resume: bool) -> None:
    version = _get(checkpoint, "version", "version")
    _integer(version, "version", 1, VERSION)
    model = _section(checkpoint, "model")
    data = _section(checkpoint, "data")
    train = _section(checkpoint, "train")
    spec, kwargs = _check_model(model, chosen_size(train))
    _check_data(data, kwargs, spec)
    _check_train(train, resume)


def chosen_size(train) -> tuple[int, int] | None:
    """The (H, W) --image-size chose for the run, if its config says so (the config itself is checked later)."""
    config = train.get("config") if isinstance(train, dict) else None
    size = config.get("image_size") if isinstance(config, dict) else None
    if isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in size):
        return size[0], size[1]
    return None


def _image_size(kwargs: dict) -> tuple[int, int]:
    """model.kwargs.image_size as (H, W): one side for a square input, else [H, W] (cnnkit/sizes.py)."""
    size = _get(kwargs, "image_size", "model.kwargs.image_size")
    if isinstance(size, list):
        height, width = _integers(size, "model.kwargs.image_size", 2, 1, MAX_SIDE)
        return height, width
    side = _integer(size, "model.kwargs.image_size", 1, MAX_SIDE)
    return side, side


def _check_model(model: dict, chosen_size: tuple[int, int] | None = None):
    from cnnkit.errors import ModelError
    from cnnkit.models import get_spec

    name = _get(model, "name", "model.name")
    if not isinstance(name, str) or len(name) > MAX_TEXT:
        raise SchemaError("model.name", f"is {_kind(name)}, not a model name")
    if "args" in model:
        _check_model_args(model["args"])
    if "source" in model or ":" in name:
        # An open source (torchvision:, timm:, a user's file): checked as plain values here, never imported.
        _check_source(_get(model, "source", "model.source"))
        spec = None
    else:
        try:
            spec = get_spec(name)
        except ModelError:
            raise SchemaError("model.name", f"'{name}' is not a model this cnnkit knows") from None
    kwargs = _get(model, "kwargs", "model.kwargs")
    if not isinstance(kwargs, dict):
        raise SchemaError("model.kwargs", f"is {_kind(kwargs)}, not a dict")
    unknown = sorted(map(str, set(kwargs) - MODEL_KWARGS))
    if unknown:
        raise SchemaError("model.kwargs", f"has unknown keys {', '.join(unknown)}")
    arch = kwargs.get("arch", "cnnkit")
    if arch not in ARCHS:
        raise SchemaError("model.kwargs.arch", f"must be one of {', '.join(ARCHS)}")
    if arch == "torchvision" and spec is not None and spec.weights is None:
        raise SchemaError("model.kwargs.arch", f"torchvision has no '{spec.name}'")
    channels = _integer(_get(kwargs, "in_channels", "model.kwargs.in_channels"), "model.kwargs.in_channels", 1, MAX_CHANNELS)
    if spec is not None and spec.channels is not None and channels != spec.channels:
        raise SchemaError("model.kwargs.in_channels", f"is {channels}; {spec.name} takes {spec.channels}")
    _integer(_get(kwargs, "num_classes", "model.kwargs.num_classes"), "model.kwargs.num_classes", 1, MAX_CLASSES)
    size = _image_size(kwargs)
    native = (spec.native_size,) * 2 if spec is not None and spec.native_size is not None else None
    built_for = chosen_size or native  # --image-size overrides
    if arch == "cnnkit" and built_for is not None and size != built_for:
        raise SchemaError("model.kwargs.image_size", f"is {size_text(size)}; {spec.name if spec else name} "
                                                     f"is built for {size_text(built_for)}")
    if "head" in model and not (isinstance(model["head"], str) and 0 < len(model["head"]) <= MAX_TEXT):
        raise SchemaError("model.head", f"is {_kind(model['head'])}, not a module path")
    state = _get(model, "state_dict", "model.state_dict")
    if not isinstance(state, dict) or not state:
        raise SchemaError("model.state_dict", f"is {_kind(state)}, not a dict of tensors")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise SchemaError("model.state_dict", f"holds {_kind(key)} -> {_kind(value)}, not names and tensors")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise SchemaError(f"model.state_dict.{key}", "holds NaN or infinite weights (the run that wrote it diverged)")
    return spec, kwargs


MAX_TEXT = 4096  # a path, a module name, a --model-arg string: far past any real one
MAX_MODEL_ARGS = 64
SOURCE_KINDS = ("torchvision", "timm", "file", "module")


def _check_model_args(args) -> None:
    """--model-arg values: a few names with plain values, nothing a builder could be surprised by."""
    if not isinstance(args, dict) or len(args) > MAX_MODEL_ARGS:
        raise SchemaError("model.args", f"is {_kind(args)}, not a dict of up to {MAX_MODEL_ARGS} arguments")
    for key, value in args.items():
        if not isinstance(key, str) or not key.isidentifier() or len(key) > 64:
            raise SchemaError("model.args", f"has the key {_kind(key)}, not an argument name")
        plain = (isinstance(value, (bool, int)) or (isinstance(value, float) and math.isfinite(value))
                 or (isinstance(value, str) and len(value) <= MAX_TEXT))
        if not plain or (isinstance(value, int) and not -(1 << 62) <= value <= 1 << 62):
            raise SchemaError(f"model.args.{key}", f"is {_kind(value)}, not a bool, number or short string")


def _check_source(source) -> None:
    """Where an open-source model comes from; for user code, the file and its sha256 (checked on import)."""
    if not isinstance(source, dict):
        raise SchemaError("model.source", f"is {_kind(source)}, not a dict")
    kind = _get(source, "kind", "model.source.kind")
    if kind not in SOURCE_KINDS:
        raise SchemaError("model.source.kind", f"is {_kind(kind)}, not one of {', '.join(SOURCE_KINDS)}")
    required = ("ref",) if kind in ("torchvision", "timm") else ("ref", "attr", "path", "sha256")
    for key in required:
        value = _get(source, key, f"model.source.{key}")
        if not isinstance(value, str) or not 0 < len(value) <= MAX_TEXT or "\0" in value:
            raise SchemaError(f"model.source.{key}", f"is {_kind(value)}, not a short string")
    if kind in ("file", "module"):
        if not os.path.isabs(source["path"]):  # cnnkit records where the file was; a relative one means the cwd
            raise SchemaError("model.source.path", "is not an absolute path")
        if not source["attr"].isidentifier():
            raise SchemaError("model.source.attr", f"is {_kind(source['attr'])}, not a Python name")
        if len(source["sha256"]) != 64 or any(c not in "0123456789abcdef" for c in source["sha256"]):
            raise SchemaError("model.source.sha256", "is not a sha256 hex digest")
    return None


def _check_data(data: dict, kwargs: dict, spec) -> None:
    classes = _get(data, "classes", "data.classes")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise SchemaError("data.classes", f"is {_kind(classes)}, not a list of class names")
    if len(classes) != kwargs["num_classes"]:
        raise SchemaError("data.classes", f"has {len(classes)} names for the model's {kwargs['num_classes']} classes")
    if len(set(classes)) != len(classes):
        raise SchemaError("data.classes", "names a class twice")
    _integer(_get(data, "channels", "data.channels"), "data.channels", 1, MAX_CHANNELS)
    _integers(_get(data, "size", "data.size"), "data.size", 2, 1, MAX_SIDE)
    if data.get("resize_to") is not None:
        _integer(data["resize_to"], "data.resize_to", 1, MAX_SIDE)
    channels, height, width = _integers(_get(data, "input_size", "data.input_size"), "data.input_size", 3, 1, MAX_SIDE)
    if height * width > MAX_PIXELS:
        raise SchemaError("data.input_size", f"is {height}x{width}, more than {MAX_PIXELS:,} pixels")
    takes = [kwargs["in_channels"], *_image_size(kwargs)]
    if [channels, height, width] != takes:
        raise SchemaError("data.input_size", f"is {[channels, height, width]}, but the model takes {takes}")
    for key in ("mean", "std"):
        values = _get(data, key, f"data.{key}")
        if (not isinstance(values, list) or not 1 <= len(values) <= MAX_CHANNELS
                or not all(_is_number(v) and math.isfinite(v) for v in values)):
            raise SchemaError(f"data.{key}", f"is {_kind(values)}, not 1 to {MAX_CHANNELS} finite numbers")
    if not all(v > 0 for v in data["std"]):
        raise SchemaError("data.std", "must be positive")


def _check_train(train: dict, resume: bool) -> None:
    epoch = _integer(_get(train, "epoch", "train.epoch"), "train.epoch", 0, 1 << 31)

    def checked(key: str) -> bool:  # loop state: required to resume, else checked when it is there
        return resume or key in train

    if checked("config"):
        config = _get(train, "config", "train.config")
        if not isinstance(config, dict):
            raise SchemaError("train.config", f"is {_kind(config)}, not a dict")
        hints = typing.get_type_hints(TrainConfig)
        for f in fields(TrainConfig):
            if f.name in config and not _matches(config[f.name], hints[f.name]):
                raise SchemaError(f"train.config.{f.name}", f"is {_kind(config[f.name])}, not {_type_name(hints[f.name])}")
        _check_config_values(config)
    for key in ("step_in_epoch", "global_step"):
        if checked(key):
            _integer(_get(train, key, f"train.{key}"), f"train.{key}", 0, 1 << 62)
    if checked("best_val_acc") and not _is_number(_get(train, "best_val_acc", "train.best_val_acc")):
        raise SchemaError("train.best_val_acc", f"is {_kind(train['best_val_acc'])}, not a number")
    if checked("history"):
        history = _get(train, "history", "train.history")
        if not isinstance(history, list) or len(history) != epoch:
            raise SchemaError("train.history", f"must list one row per finished epoch ({epoch})")
        for row in history:
            if not isinstance(row, dict) or not all(_is_number(row.get(k)) and row[k] >= 0 for k in ("seconds", "images_per_s")):
                raise SchemaError("train.history", "holds a row without its seconds and images_per_s")
    if not isinstance(train.get("val_history", []), list):
        raise SchemaError("train.val_history", "is not a list")
    if checked("partial"):
        partial = _get(train, "partial", "train.partial")
        if not isinstance(partial, dict):
            raise SchemaError("train.partial", f"is {_kind(partial)}, not a dict")
        for key in ("loss_sum", "seconds"):
            if not _is_number(_get(partial, key, f"train.partial.{key}")):
                raise SchemaError(f"train.partial.{key}", "is not a number")
        for key in ("correct", "seen"):
            _integer(_get(partial, key, f"train.partial.{key}"), f"train.partial.{key}", 0, 1 << 62)
    if resume and not isinstance(train.get("rng"), dict):
        raise SchemaError("train.rng", "is missing" if "rng" not in train else f"is {_kind(train['rng'])}, not a dict")
    if "phase" in train:
        _integer(train["phase"], "train.phase", -1, 16)
    for key in ("optimizer", "scheduler", "rng"):
        if train.get(key) is not None and not isinstance(train[key], dict):
            raise SchemaError(f"train.{key}", f"is {_kind(train[key])}, not a dict")
    if train.get("rng_ranks") is not None and not (isinstance(train["rng_ranks"], list)
                                                   and all(isinstance(r, dict) for r in train["rng_ranks"])):
        raise SchemaError("train.rng_ranks", "is not a list of dicts")
    if not all(isinstance(s, (list, tuple)) and len(s) == 2 for s in train.get("skipped", [])):
        raise SchemaError("train.skipped", "is not a list of (path, reason) pairs")


# `mode` held both the command and the finetune mode before they were split; old checkpoints still have it.
LEGACY_MODES = ("train", *FINETUNE_MODES)


def _check_config_values(config: dict) -> None:
    choices = (("command", COMMANDS), ("finetune_mode", (None, *FINETUNE_MODES)), ("mode", LEGACY_MODES))
    for key, allowed in choices:
        if key in config and config[key] not in allowed:
            raise SchemaError(f"train.config.{key}", f"is {_kind(config[key])}, not one of "
                                                     f"{', '.join(str(a) for a in allowed)}")
    # What evaluate re-draws the validation split and cuts batches with.
    if config.get("val_split") is not None and not 0 < config["val_split"] < 1:
        raise SchemaError("train.config.val_split", "must be between 0 and 1")
    for key, low, high in (("seed", 0, 2**63 - 1), ("batch_size", 1, 1 << 20)):
        if key in config:
            _integer(config[key], f"train.config.{key}", low, high)
    if config.get("image_size") is not None:  # what --resume feeds the model
        _integers(config["image_size"], "train.config.image_size", 2, 1, MAX_SIDE)


# ---- small checks --------------------------------------------------------------------------


def _section(checkpoint: dict, name: str) -> dict:
    value = checkpoint.get(name)
    if not isinstance(value, dict):
        raise SchemaError(name, "is missing" if value is None else f"is {_kind(value)}, not a section (dict)")
    return value


def _get(section: dict, key: str, field: str):
    if key not in section:
        raise SchemaError(field, "is missing")
    return section[key]


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _integer(value, field: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise SchemaError(field, f"is {_kind(value)}, not an integer")
    if not low <= value <= high:
        raise SchemaError(field, f"is {value}; it must be from {low} to {high:,}")
    return value


def _integers(value, field: str, count: int, low: int, high: int) -> list[int]:
    if not isinstance(value, (list, tuple)) or len(value) != count:
        raise SchemaError(field, f"is {_kind(value)}, not a list of {count} integers")
    return [_integer(v, field, low, high) for v in value]


def _matches(value, hint) -> bool:
    """Whether a config value has the type TrainConfig declares (an int is a fine float; a bool is no number)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return _is_number(value) and math.isfinite(value)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _type_name(hint) -> str:
    return " or ".join("None" if a is type(None) else a.__name__ for a in typing.get_args(hint)) or hint.__name__


def _kind(value) -> str:
    """A short description of a value for an error line: its type, and the value when it is short."""
    if isinstance(value, (bool, int, float)) or (isinstance(value, str) and len(value) <= 40):
        return f"{type(value).__name__} {value!r}"
    if isinstance(value, (list, tuple, dict, str)):
        return f"a {type(value).__name__} of {len(value)}"
    return type(value).__name__
