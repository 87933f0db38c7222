"""The open model sources: torchvision's whole classification zoo, timm, and a user's own file or module.

Each name resolves to a ModelSpec like the built-ins', so train, finetune, evaluate, predict, summary and
the checkpoints treat them alike. `spec.source` is what a checkpoint records to rebuild the model.
"""

from __future__ import annotations

import difflib
import hashlib
import os
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from torch import nn

from cnnkit.errors import ModelError, first_line
from cnnkit.models.registry import ModelSpec, Preprocessing
from cnnkit.models.user_code import is_installed, load_object, no_module, parse_user_ref, source_file
from cnnkit.sizes import SizeLike, pair, size_text

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ZOOS = ("torchvision", "timm")
TIMM_EXTRA = 'pip install "cnnkit[timm]"'
# torchvision models whose builders need the input size (ViT's position embeddings, MaxViT's grid).
TORCHVISION_SIZE_ARG = {"vit_": "image_size", "maxvit_": "input_size"}
# Inception-style models return auxiliary outputs in training unless told not to.
TORCHVISION_EXTRA_ARGS = {"googlenet": {"aux_logits": False, "init_weights": True},
                          "inception_v3": {"aux_logits": False, "init_weights": True}}


def open_spec(name: str) -> ModelSpec:
    """The spec for `torchvision:NAME`, `timm:NAME`, `FILE.py:NAME` or `package.module:NAME`."""
    zoo, _, model = name.strip().partition(":")
    if zoo.lower() == "torchvision":
        return torchvision_spec(model)
    if zoo.lower() == "timm":
        return timm_spec(model)
    return user_spec(name)


# ---- torchvision --------------------------------------------------------------------------------
def torchvision_names() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _unknown(kind: str, name: str, known: list[str]) -> ModelError:
    close = difflib.get_close_matches(name.lower(), known, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(f'{kind}:{c}' for c in close)}?" if close else f"list them with `cnnkit summary --list {kind}`"
    return ModelError(f"unknown model '{kind}:{name}'", hint)


@lru_cache(maxsize=None)
def torchvision_spec(model: str) -> ModelSpec:
    import torchvision

    names = torchvision_names()
    matches = [n for n in names if n.lower() == model.strip().lower()]
    if not matches:
        raise _unknown("torchvision", model, names)
    ref = matches[0]
    weights = torchvision.models.get_model_weights(ref).DEFAULT
    size_arg = next((arg for prefix, arg in TORCHVISION_SIZE_ARG.items() if ref.startswith(prefix)), None)

    def build(in_channels: int, num_classes: int, image_size: SizeLike, **kwargs) -> nn.Module:
        extra = dict(TORCHVISION_EXTRA_ARGS.get(ref, {}))
        if size_arg == "image_size":  # ViT's position embeddings: one side, square images only
            height, width = pair(image_size)
            if height != width:
                raise ModelError(f"torchvision:{ref} takes square images only, not {size_text(image_size)}",
                                 f"give one side, e.g. --image-size {max(height, width)}")
            extra[size_arg] = height
        elif size_arg:
            extra[size_arg] = pair(image_size)
        return torchvision.models.get_model(ref, weights=None, num_classes=num_classes, **{**extra, **kwargs})

    return ModelSpec(
        name=f"torchvision:{ref}", builder=build, head="", channels=3,
        description=f"torchvision {ref}; {weights}",
        native_size=int(weights.transforms().crop_size[0]), weights=weights,
        source={"kind": "torchvision", "ref": ref},
    )


def torchvision_architecture(ref: str, num_classes: int) -> nn.Module:
    """The architecture torchvision's weights for `ref` belong to (auxiliary heads included), not loaded."""
    import torchvision

    extra = {"aux_logits": True, "init_weights": False} if ref in TORCHVISION_EXTRA_ARGS else {}
    return torchvision.models.get_model(ref, weights=None, num_classes=num_classes, **extra)


def drop_auxiliary(model: nn.Module) -> nn.Module:
    """What torchvision itself does after loading GoogLeNet's and Inception's weights: no auxiliary heads."""
    if getattr(model, "aux_logits", False):
        model.aux_logits = False
        for name in ("aux1", "aux2", "AuxLogits"):
            if hasattr(model, name):
                setattr(model, name, None)
    return model


# ---- timm ---------------------------------------------------------------------------------------
def import_timm():
    try:
        import timm
    except ImportError:
        raise ModelError("timm: models need the timm package, which is not installed",
                         f"install the extra: {TIMM_EXTRA}") from None
    return timm


@contextmanager
def offline_hub():
    """Hugging Face Hub without the network: weights come from the local cache or not at all."""
    saved = {key: os.environ.get(key) for key in ("HF_HUB_OFFLINE",)}
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        from huggingface_hub import constants

        was, constants.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE, True  # read once at import
    except (ImportError, AttributeError):
        was = None
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if was is not None:
            constants.HF_HUB_OFFLINE = was


@lru_cache(maxsize=None)
def timm_spec(model: str) -> ModelSpec:
    timm = import_timm()
    ref = model.strip()
    if not timm.is_model(ref):
        raise _unknown("timm", ref, timm.list_models())
    cfg = timm.get_pretrained_cfg(ref)
    channels, height, width = (cfg.input_size if cfg is not None else (3, 224, 224))
    mean = tuple(cfg.mean) if cfg is not None else IMAGENET_MEAN
    std = tuple(cfg.std) if cfg is not None else IMAGENET_STD
    crop_pct = float(cfg.crop_pct) if cfg is not None and cfg.crop_pct else 0.875
    preprocessing = Preprocessing(resize=round(height / crop_pct), crop=height, mean=mean, std=std)

    def build(in_channels: int, num_classes: int, image_size: SizeLike, **kwargs) -> nn.Module:
        return create(pretrained=False, num_classes=num_classes, in_chans=in_channels, image_size=image_size, **kwargs)

    def create(image_size: SizeLike, **kwargs) -> nn.Module:
        """timm's model at `image_size`. Models with position embeddings (ViT, DeiT, Swin) take it as
        img_size, and timm resamples pretrained embeddings to it; the rest take any size and refuse
        img_size with a TypeError, so they are built without it."""
        if pair(image_size) != (height, width):
            try:
                return timm.create_model(ref, img_size=pair(image_size), **kwargs)
            except TypeError as exc:
                if "img_size" not in str(exc):
                    raise
        return timm.create_model(ref, **kwargs)

    def pretrained(num_classes: int, image_size: SizeLike, **kwargs) -> nn.Module:
        try:
            with offline_hub():
                return create(pretrained=True, num_classes=num_classes, in_chans=3, image_size=image_size, **kwargs)
        except (OSError, RuntimeError, ValueError) as exc:  # huggingface_hub's offline errors are OSErrors
            first = first_line(exc)
            raise ModelError(f"pretrained weights for timm:{ref} are not in the local Hugging Face cache ({first})",
                             "cnnkit never downloads timm weights itself: fetch them once where there is a "
                             f"network (python -c \"import timm; timm.create_model('{ref}', pretrained=True)\")") from None

    return ModelSpec(
        name=f"timm:{ref}", builder=build, head="", description=f"timm {ref}", native_size=int(height),
        pretrained=pretrained, pretrained_preprocessing=preprocessing, source={"kind": "timm", "ref": ref},
    )


# ---- a user's file or module --------------------------------------------------------------------
_LOADED: dict = {}


def user_spec(name: str, expected_sha256: str | None = None, model_file: str | Path | None = None) -> ModelSpec:
    """Import a user's model. With `expected_sha256` (a checkpoint's record), only the file that has it."""
    ref = parse_user_ref(name)
    from_checkpoint = expected_sha256 is not None and model_file is None
    file = Path(model_file).expanduser().resolve() if model_file else source_file(ref)
    if file is None or not file.is_file():
        if ref.kind == "module" and expected_sha256 is None and model_file is None:
            raise no_module(ref)
        raise ModelError(f"model file for '{name}' not found" + (f": {file}" if file else ""),
                         "pass the file the model was trained from with --model-file FILE")
    if from_checkpoint and is_installed(file):
        # Importing runs a module's top level: a crafted checkpoint could name any installed module whose
        # sha256 is public (this, antigravity, a script that runs main()). Refused before it is imported.
        raise ModelError(f"refusing to call {ref.name} from a checkpoint: {file} is installed code, not your "
                         "own model file", "pass --model-file FILE to rebuild it from a file you trust")
    code = file.read_bytes()  # read once: what is hashed is what runs
    digest = hashlib.sha256(code).hexdigest()
    if from_checkpoint and digest != expected_sha256:
        raise ModelError(f"{file} changed since the checkpoint was written (sha256 {digest[:12]}..., "
                         f"recorded {expected_sha256[:12]}...); cnnkit does not run code a checkpoint did not see",
                         "restore the file, or pass --model-file FILE to use this one on purpose")
    key = (ref, str(file), digest)
    if key not in _LOADED:  # one import per file content: train asks for the spec more than once
        from_file = model_file or ref.kind == "file"
        _LOADED[key] = load_object(ref, file if from_file else None, code if from_file else None)
    target = _LOADED[key]
    if from_checkpoint:
        check_callable_from_checkpoint(target, ref, file)
    source = {"kind": ref.kind, "ref": ref.where, "attr": ref.attr, "path": str(file), "sha256": digest}

    def pretrained(num_classes: int, image_size: SizeLike, **kwargs) -> nn.Module:  # it loads its own weights
        from cnnkit.models.registry import call_builder

        return call_builder(spec, in_channels=3, num_classes=num_classes, image_size=image_size, args=kwargs)

    spec = ModelSpec(
        name=ref.name if ref.kind == "module" else f"{file}:{ref.attr}", builder=target, head="",
        description=(target.__doc__ or "").strip().splitlines()[0] if (target.__doc__ or "").strip() else f"{ref.attr} from {file}",
        default_size=28, pretrained=pretrained, source=source,
        pretrained_preprocessing=Preprocessing(resize=256, crop=224, mean=IMAGENET_MEAN, std=IMAGENET_STD),
    )
    return spec


def check_callable_from_checkpoint(target, ref, file: Path) -> None:
    """A checkpoint names what to call and with which --model-arg's; a crafted one could name any installed
    function whose file's sha256 is public (shutil.rmtree, with path=...). From a checkpoint alone cnnkit
    calls only an nn.Module class, or a function defined in the user's own file, outside the installed code."""
    import inspect

    if inspect.isclass(target) and issubclass(target, nn.Module):
        return
    own = inspect.isfunction(target) and Path(inspect.getsourcefile(target) or "").resolve() == file.resolve()
    if own and not is_installed(file):
        return
    raise ModelError(f"refusing to call {ref.name} from a checkpoint: it is not an nn.Module class or a function "
                     "of your own model file", "pass --model-file FILE to rebuild it from a file you trust")


def spec_from_source(source: dict, model_file: str | Path | None = None) -> ModelSpec:
    """Rebuild a checkpoint's model source; user code only from the file with the recorded sha256."""
    kind = source["kind"]
    if kind == "torchvision":
        return torchvision_spec(source["ref"])
    if kind == "timm":
        return timm_spec(source["ref"])
    where = source["path"] if kind == "file" else source["ref"]
    return user_spec(f"{where}:{source['attr']}", expected_sha256=source["sha256"], model_file=model_file)
