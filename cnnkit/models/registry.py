"""One registry for every model: names, aliases, heads, native input sizes, weights and builders."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from cnnkit.errors import ModelError
from cnnkit.sizes import Size, SizeLike, builder_size, pair

if TYPE_CHECKING:  # only the annotation needs it; the families that register weights import torchvision
    from torchvision.models import WeightsEnum


@dataclass(frozen=True)
class Preprocessing:
    """The input a model's pretrained weights expect: resize the short side, center-crop, normalise."""

    resize: int
    crop: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass(frozen=True)
class ModelSpec:
    """Every fact of one model, given once where it is registered."""

    name: str
    builder: Callable
    description: str
    # Attribute path of the final classifier layer (a Linear) in what `builder` returns, and in
    # torchvision's architecture for the pretrained models: "fc", "classifier.6", ...
    head: str
    # Input size the architecture is built for. None: the builder adapts to any size.
    native_size: int | None = None
    # Size to resize to when the data has no single size and the model adapts.
    default_size: int = 28
    # Channels the architecture requires (grey input is repeated); None: any.
    channels: int | None = None
    # torchvision weights enum member (ResNet18_Weights.IMAGENET1K_V1): URL, transforms, categories.
    weights: WeightsEnum | None = None
    # What finetune replaces with its one new Linear, when that is more than `head`: VGG16's
    # tutorial swaps the whole classifier ("classifier") for a Linear on the 25,088 features.
    finetune_head: str | None = None
    aliases: tuple[str, ...] = field(default_factory=tuple)
    # Where an open-source model comes from (models/external.py, models/user_code.py), as the checkpoint
    # records it: {"kind": "file"|"module"|"torchvision"|"timm", "ref": ..., "attr": ..., "sha256": ...}.
    # None for the built-ins.
    source: dict | None = None
    # finetune for models without a torchvision weights enum (timm, a user's file): (num_classes, image_size,
    # **args)
    # -> the pretrained network, its head already sized to num_classes or still to be replaced.
    pretrained: Callable | None = None
    # What finetune feeds it: the preprocessing of those weights (ImageNet's for a user's file).
    pretrained_preprocessing: Preprocessing | None = None

    @property
    def slug(self) -> str:
        """The model's part of a run directory's name: `efficientnet_b0` for torchvision:efficientnet_b0."""
        return self.name.rpartition(":")[2] or self.name

    @property
    def can_finetune(self) -> bool:
        return self.weights is not None or self.pretrained is not None

    @property
    def new_head(self) -> str:
        """Where finetune's new head sits once replace_head put it in."""
        return self.finetune_head or self.head

    def require_weights(self):
        """The torchvision weights enum member; a ModelError for a model that has none."""
        if self.weights is None:
            raise ModelError(
                f"model '{self.name}' has no pretrained weights",
                f"pretrained weights exist for {', '.join(pretrained_models())}",
            )
        return self.weights

    @property
    def categories(self) -> list[str]:
        """The class names the pretrained weights predict (ImageNet's 1000)."""
        return list(self.require_weights().meta["categories"])

    def transforms(self):
        """torchvision's preprocessing for the weights, as a callable on PIL images."""
        return self.require_weights().transforms()

    @property
    def preprocessing(self) -> Preprocessing:
        """The weights' transforms as plain values, for cnnkit's batched transform."""
        if self.weights is None and self.pretrained_preprocessing is not None:
            return self.pretrained_preprocessing
        preset = self.transforms()
        return Preprocessing(
            resize=int(preset.resize_size[0]), crop=int(preset.crop_size[0]),
            mean=tuple(float(m) for m in preset.mean), std=tuple(float(s) for s in preset.std),
        )


_MODELS: dict[str, ModelSpec] = {}
_ALIASES: dict[str, str] = {}


def _key(name: str) -> str:
    """The form names are compared in: case and `-`/`_` do not matter."""
    return name.strip().lower().replace("-", "_")


def register(name: str, description: str, **options) -> Callable:
    """Decorator: register a builder `(in_channels, num_classes, image_size, **kw) -> nn.Module`."""

    def decorate(builder: Callable) -> Callable:
        spec = ModelSpec(name=name, builder=builder, description=description, **options)
        taken = {_key(known) for known in (*_MODELS, *_ALIASES)}
        for new in (name, *spec.aliases):
            if _key(new) in taken:  # a second one would silently shadow the first in builtin_spec
                raise ModelError(f"model name '{new}' is registered twice", f"registering '{name}'")
            taken.add(_key(new))
        _MODELS[name] = spec
        for alias in spec.aliases:
            _ALIASES[alias] = name
        return builder

    return decorate


def list_models() -> list[str]:
    return sorted(_MODELS)


def pretrained_models() -> list[str]:
    """The models with pretrained (ImageNet) weights: what finetune, predict and download --weights take."""
    return sorted(name for name, spec in _MODELS.items() if spec.weights is not None)


def list_aliases() -> dict[str, str]:
    return dict(_ALIASES)


def builtin_spec(name: str) -> ModelSpec:
    """Look a built-in model up by name or alias; case and `-`/`_` do not matter (models/lookup.py adds the rest)."""
    key = _key(name)
    for known, target in (*((n, n) for n in _MODELS), *_ALIASES.items()):
        if _key(known) == key:
            return _MODELS[target]
    known = list(_MODELS) + list(_ALIASES)
    close = difflib.get_close_matches(name.strip().lower(), known, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"known models: {', '.join(list_models())}"
    raise ModelError(f"unknown model '{name}'", hint)


def input_size_for(spec: ModelSpec, data_size: SizeLike | None) -> Size:
    """The (H, W) the model is fed: its native size, or the data's own."""
    if spec.native_size is not None:
        return pair(spec.native_size)
    return pair(data_size if data_size is not None else spec.default_size)


def input_channels_for(spec: ModelSpec, data_channels: int) -> int:
    return spec.channels if spec.channels is not None else data_channels


RESERVED_ARGS = {"in_channels": "the data decides it", "num_classes": "the dataset's classes decide it",
                 "image_size": "use --image-size"}


def call_builder(spec: ModelSpec, in_channels: int, num_classes: int, image_size: SizeLike, args: dict | None = None):
    """Call a model's builder with what its signature takes: the three sizes, then --model-arg's.

    `image_size` reaches it as one int for a square input, else as (H, W) (cnnkit/sizes.py).

    A user's class may take none of the sizes; an argument the builder does not take is a clear error
    naming the ones it does, not a TypeError from deep inside.
    """
    from torch import nn

    from cnnkit.models.user_code import accepted

    args = dict(args or {})
    for key, why in RESERVED_ARGS.items():
        if key in args:
            raise ModelError(f"--model-arg {key} is not a model argument: {why}")
    names, takes_any = accepted(spec.builder)
    unknown = sorted(set(args) - names) if not takes_any else []
    if unknown:
        offered = sorted(names - set(RESERVED_ARGS))
        raise ModelError(f"model '{spec.name}' takes no argument {', '.join(unknown)}",
                         f"it takes {', '.join(offered)}" if offered else f"'{spec.name}' takes no --model-arg")
    sizes = {"in_channels": in_channels, "num_classes": num_classes, "image_size": builder_size(image_size)}
    call = {k: v for k, v in sizes.items() if takes_any or k in names}
    try:
        model = spec.builder(**call, **args)
    except TypeError as exc:
        if "keyword argument" not in str(exc) or not args:
            raise _builder_failure(spec, exc) from None
        raise ModelError(f"model '{spec.name}' does not take {', '.join(sorted(args))}: {exc}",
                         "drop or rename the --model-arg") from None
    except (Exception, SystemExit) as exc:  # a user's builder may call sys.exit, as its import may
        raise _builder_failure(spec, exc) from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"model '{spec.name}' returned a {type(model).__name__}, not an nn.Module",
                         "its class or factory must return a torch.nn.Module")
    return model


def _builder_failure(spec: ModelSpec, exc: Exception) -> Exception:
    """A user's builder that raises is the user's error, at their line; a built-in's is a bug, raised as is."""
    if spec.source is None or spec.source.get("kind") not in ("file", "module"):
        return exc
    from cnnkit.models.user_code import failure_at

    return failure_at(spec.source, f"building {spec.name} failed", exc)
