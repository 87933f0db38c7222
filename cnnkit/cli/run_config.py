"""One way from a train/finetune command line to a TrainConfig, for both commands.

Layers, lowest first: the command's option defaults (which equal TrainConfig's, tests/test_recipes.py
checks), the recipe (--recipe, or a `recipe` key of the file), the --config file, then the options given
on the command line or through their environment variable (a setting of this machine, like CNNKIT_DATA).
A parameter maps to the TrainConfig field of its own name (PARAMETER_FIELDS lists the few that differ), so
a new option named like its field flows through without more code here. Its parsed value must already be
the field's value; only Enum members (-> .value) and Paths (-> str) are converted.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import MISSING, fields
from enum import Enum
from pathlib import Path
from typing import Any

from cnnkit.errors import UsageError, first_line

PARAMETER_FIELDS = {"mode": "finetune_mode"}  # parameter name -> TrainConfig field, where they differ
USER_SOURCES = ("COMMANDLINE", "ENVIRONMENT")
# What Trainer.fit writes into config.json beside the settings: facts of that run, not settings; read back, ignored.
RUN_RECORD_KEYS = ("processes", "cpu_threads", "device_used", "data")
LAYERS = ("recipe", "config", "command line")  # weakest first
SUFFIXES = (".json", ".toml", ".yaml", ".yml")
# Fields a file may give as the command line spells them (image_size = 32 or "20,28") or as a run's
# config.json records them ([20, 28]; {width = 4}): either way the option's own parser checks them.
OPTION_TEXT = {"image_size": "N, \"H,W\" or [H, W]", "model_args": "a table of KEY = VALUE"}


def field_value(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def resolve_config(ctx: Any, command: str):
    """(TrainConfig, {field: the layer that set it}) for the fields a recipe, the file or the command line set.

    The layers are named by LAYERS' order, so a caller can tell which of two settings is the stronger.
    """
    from cnnkit.engine.config import TrainConfig

    params = {param.name: param for param in ctx.command.params}
    field_defaults = _field_defaults()
    values: dict[str, Any] = {}
    given_values: dict[str, Any] = {}
    for name, value in ctx.params.items():
        key = PARAMETER_FIELDS.get(name, name)
        if key not in field_defaults:
            continue
        if _source(ctx, name) in USER_SOURCES:
            given_values[key] = field_value(value)
        elif value is not None:  # None: "not given" (e.g. --epochs); TrainConfig's default applies
            values[key] = field_value(value)

    file_values: dict[str, Any] = {}
    config_path = ctx.params.get("config")
    if config_path is not None:
        file_values = read_config_file(Path(config_path), ctx, command, params)
    recipe_name = given_values.get("recipe") or file_values.get("recipe")
    recipe_values = recipe_settings(recipe_name, command) if recipe_name else {}

    for layer in (recipe_values, file_values, given_values):
        values.update(layer)
    values["command"] = command
    if recipe_name:
        values["recipe"] = recipe_name
    given = {}
    for layer, names in zip(LAYERS, (recipe_values, file_values, given_values)):
        given.update(dict.fromkeys(names, layer))
    return TrainConfig(**values), given


def recipe_settings(name: str, command: str) -> dict:
    from cnnkit.engine.recipes import find_recipe, recipe_names

    recipe = find_recipe(name)
    if recipe is None:
        close = difflib.get_close_matches(name, recipe_names(), n=3)
        raise UsageError(f"unknown recipe '{name}'" + (f"; did you mean {', '.join(close)}?" if close else ""),
                         "`cnnkit recipes` lists them")
    if recipe.command != command:
        raise UsageError(f"recipe '{name}' is a {recipe.command} recipe, not a {command} one",
                         f"run it with `cnnkit {recipe.command} --recipe {name}`")
    return dict(recipe.sets)


def read_config_file(path: Path, ctx: Any, command: str, params: dict) -> dict:
    """The file's keys, each checked: a TrainConfig field, of the field's type, taken by this command."""
    data = _load(path)
    defaults = _field_defaults()
    annotations = {f.name: f.type for f in fields(_train_config())}
    other = _other_command_params(ctx, command)
    checked = {}
    for key, value in data.items():
        if key in RUN_RECORD_KEYS:
            continue
        if key not in defaults:
            close = difflib.get_close_matches(str(key), list(defaults), n=3)
            raise UsageError(f"{path}: unknown key '{key}'" + (f"; did you mean {', '.join(close)}?" if close else ""),
                             "the keys are TrainConfig's field names, as a run's config.json writes them")
        if key in OPTION_TEXT:
            text = _option_text(path, key, value)
        elif not _has_type(annotations[key], value):
            raise UsageError(f"{path}: '{key}' must be {annotations[key]}, not {type(value).__name__} {value!r}",
                             "a run's config.json shows each setting in its form")
        if key == "command":
            if value != command:
                raise UsageError(f"{path} is a {value} configuration, not a {command} one",
                                 f"run it with `cnnkit {value} --config {path}`")
            continue
        taken_here = key in params or any(PARAMETER_FIELDS.get(n) == key for n in params)
        if not taken_here and key in other:
            if value == defaults[key]:  # a run's config.json lists every field; the other command's unset ones are fine
                continue
            raise UsageError(f"{path}: '{key}' is a `cnnkit {_other(command)}` setting; `cnnkit {command}` does not take it",
                             f"remove '{key}' from the file, or run `cnnkit {_other(command)} --config {path}`")
        param = params.get(key) or next((params[n] for n, f in PARAMETER_FIELDS.items() if f == key and n in params), None)
        if param is not None and key in OPTION_TEXT:
            value = _through_option(param, text, ctx, path, key)
        elif param is not None and (value is None or isinstance(value, (str, int, float, bool))):
            value = _through_option(param, value, ctx, path, key)
        checked[key] = value
    return checked


def _option_text(path: Path, key: str, value: Any):
    """An OPTION_TEXT field's value as the command line gives it: text for --image-size, KEY=VALUE's for --model-arg."""
    if key == "image_size" and value is None:
        return None
    if key == "image_size" and isinstance(value, (int, str, list)) and not isinstance(value, bool):
        return ",".join(map(str, value)) if isinstance(value, list) else str(value)
    if key == "model_args" and isinstance(value, dict):
        return [f"{name}={item}" for name, item in value.items()]
    raise UsageError(f"{path}: '{key}' must be {OPTION_TEXT[key]}, not {type(value).__name__} {value!r}",
                     "write it as on the command line, or as a run's config.json records it")


def _through_option(param: Any, value: Any, ctx: Any, path: Path, key: str) -> Any:
    """The value checked as the option checks it (choices, ranges, callbacks), in the field's form."""
    if value is None:
        return None
    try:
        return field_value(param.process_value(ctx, value))
    except Exception as exc:  # Click's BadParameter (Typer may bring its own Click: matched by what it offers)
        if not hasattr(exc, "format_message"):
            raise
        raise UsageError(f"{path}: '{key}' = {value!r}: {exc.format_message()}",
                         f"fix '{key}' in {path}; the option's --help says what it takes") from None


def _load(path: Path) -> dict:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise UsageError(f"--config {path}: unknown file type '{suffix or path.name}'",
                         "use a .json, .toml or .yaml file (a run's config.json is one)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--config {path}: cannot read it ({exc.strerror if isinstance(exc, OSError) else exc})",
                         "pass a readable UTF-8 text file") from None
    try:
        if suffix == ".json":
            data = json.loads(text)
        elif suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # each parser has its own error type; all mean the same: not valid text
        raise UsageError(f"--config {path}: not valid {suffix.lstrip('.').upper()}: {first_line(exc)}",
                         "fix the file's syntax (a run's config.json is a valid example)") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UsageError(f"--config {path}: expected a mapping of settings, found {type(data).__name__}",
                         "write KEY = VALUE settings (TOML), KEY: VALUE (YAML) or a JSON object")
    return data


def _has_type(annotation: str, value: Any) -> bool:
    for name in str(annotation).replace(" ", "").split("|"):
        if name == "None" and value is None:
            return True
        if name == "bool" and isinstance(value, bool):
            return True
        if name in ("int", "float") and isinstance(value, int) and not isinstance(value, bool):
            return True
        if name == "float" and isinstance(value, float):
            return True
        if (name, type(value)) in (("str", str), ("list", list), ("dict", dict)):
            return True
    return False


def _train_config():
    from cnnkit.engine.config import TrainConfig

    return TrainConfig


def _field_defaults() -> dict:
    out = {}
    for f in fields(_train_config()):
        out[f.name] = f.default if f.default is not MISSING else f.default_factory()
    return out


def _other(command: str) -> str:
    return "finetune" if command == "train" else "train"


def _other_command_params(ctx: Any, command: str) -> set[str]:
    """The TrainConfig fields only the other command has an option for."""
    root = ctx.find_root()
    other = root.command.get_command(root, _other(command)) if hasattr(root.command, "get_command") else None
    names = {p.name for p in other.params} if other is not None else set()
    return {PARAMETER_FIELDS.get(n, n) for n in names}


def _source(ctx: Any, name: str) -> str | None:
    source = ctx.get_parameter_source(name)
    return source.name if source is not None else None


def print_config(config) -> None:
    from cnnkit.cli.common import print_json

    print_json(config.to_dict())
