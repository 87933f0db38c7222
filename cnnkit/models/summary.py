"""`cnnkit summary`: torchinfo's table at the right input size, frozen counts, and a shape walk.

Models are built on the meta device: no memory, no weight init, no arithmetic,
so even VGG16 at 244x244 is summarised in milliseconds. Only a checkpoint is
built for real, to prove its weights fit before it is summarised.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from cnnkit.errors import CheckpointError, CnnkitError, UsageError, first_line
from cnnkit.limits import MAX_CHANNELS, MAX_PIXELS, MAX_SIDE
from cnnkit.models.lookup import get_model, get_spec
from cnnkit.models.registry import (
    ModelSpec, call_builder, input_channels_for, input_size_for, list_models, pretrained_models,
)
from cnnkit.models.surgery import find_head, head_of, set_frozen
from cnnkit.sizes import Size, SizeLike, size_text

DEFAULT_CLASSES = 10
# Without --dataset, summarise for train's default dataset (mnist-sample): grey images.
DEFAULT_DATA_CHANNELS = 1
COLUMNS = ("output_size", "num_params", "mult_adds", "trainable")


@dataclass
class Target:
    """A model ready to summarise and the input it is fed, (C, H, W)."""

    name: str
    build: Callable[[SizeLike], nn.Module]  # size -> model on the meta device (adaptive models rebuild per size)
    input_size: tuple[int, int, int]
    classes: int
    notes: list[str] = field(default_factory=list)
    source: str = "registry"


INPUT_SIZE_HINT = "e.g. --input-size 1,28,28 or 3,224,224"


def parse_input_size(text: str) -> tuple[int, int, int]:
    """'C,H,W' (or CxHxW) of positive integers, within the bounds of check_input_size."""
    parts = [p.strip() for p in re.split(r"[,x×]", text.strip().lower())]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) < 1:
        raise UsageError(f"--input-size must be C,H,W with three positive integers, not '{text}'", INPUT_SIZE_HINT)
    return check_input_size(values, "--input-size")  # type: ignore[arg-type]


def check_input_size(size: tuple[int, int, int], source: str, error: type[CnnkitError] = UsageError) -> tuple[int, int, int]:
    """`size` (C, H, W) if it is within the bounds; else `error` naming `source`."""
    channels, height, width = size
    problem = (
        f"{channels} channels is outside 1..{MAX_CHANNELS}" if not 1 <= channels <= MAX_CHANNELS
        else f"{height}x{width} is outside 1..{MAX_SIDE} a side" if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE)
        else f"{height}x{width} is more than {MAX_PIXELS:,} pixels (4096x4096)" if height * width > MAX_PIXELS
        else None
    )
    if problem:
        raise error(f"{source}: {problem}", INPUT_SIZE_HINT)
    return size


def _meta(build: Callable[[], nn.Module]) -> nn.Module:
    try:
        with torch.device("meta"):
            return build()
    except NotImplementedError:  # a builder that reads tensor values (RegNet's widths): only weights on meta
        with meta_weights():
            return build()


@contextmanager
def meta_weights():
    """Build with every parameter and buffer moved to the meta device as it is registered (what
    accelerate's init_empty_weights does): the builder's own arithmetic runs on the CPU, the weights cost nothing."""
    register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def parameter(module, name, param):
        if param is not None:
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register_parameter(module, name, param)

    def buffer(module, name, tensor, persistent=True):
        register_buffer(module, name, tensor.to("meta") if tensor is not None else None, persistent)

    nn.Module.register_parameter, nn.Module.register_buffer = parameter, buffer
    try:
        yield
    finally:
        nn.Module.register_parameter, nn.Module.register_buffer = register_parameter, register_buffer


def registry_target(name: str, input_size: tuple[int, int, int] | None, data_shape: tuple[int, Size] | None,
                    classes: int | None, freeze_backbone: bool) -> Target:
    """A registered model at the --input-size given, the dataset's (channels, (H, W)), or its own default."""
    spec = get_spec(name)
    classes = classes or DEFAULT_CLASSES
    notes = []
    if input_size is not None:
        channels, height, width = input_size
        model_channels = input_channels_for(spec, channels)
        if model_channels != channels:
            notes.append(f"{spec.name} takes {model_channels} channels; cnnkit repeats grey input, so the summary uses {model_channels}")
        fed = (model_channels, height, width)
    else:
        data_channels, data_size = data_shape or (DEFAULT_DATA_CHANNELS, None)
        model_channels = input_channels_for(spec, data_channels)
        size = input_size_for(spec, data_size)
        fed = (model_channels, *size)
        if data_size is not None and size != tuple(data_size):
            notes.append(f"{spec.name} takes {size_text(size)}; training resizes {size_text(data_size)} images to it")
    if freeze_backbone and spec.weights is None:  # timm, a user's model: its own architecture, head found
        require_pretrained(spec)
        fed = (3, *fed[1:])

        def build(size: SizeLike) -> nn.Module:
            model = call_builder(spec, in_channels=3, num_classes=classes, image_size=size)
            set_frozen(model, model.get_submodule(find_head(model)), frozen=True)
            return model

        notes.append(f"backbone frozen as finetune's head phase has it: only the new {classes}-class head trains")
    elif freeze_backbone:
        require_pretrained(spec)
        fed = (3, *fed[1:])  # the ImageNet architectures take RGB; grey input is repeated
        from cnnkit.models.backbones import finetune_architecture

        def build(size: SizeLike) -> nn.Module:
            model = finetune_architecture(spec, classes)
            # torchvision:NAME names no head in its spec: it is found in the model, as finetune finds it
            set_frozen(model, model.get_submodule(head_of(model, spec)), frozen=True)  # as finetune's head phase has it
            return model

        notes.append(f"backbone frozen as finetune's head phase has it: only the new {classes}-class head trains")
    else:
        def build(size: SizeLike) -> nn.Module:
            # An open source's builder takes the size it is summarised at (ViT's position embeddings).
            return get_model(spec.name, in_channels=model_channels, num_classes=classes, image_size=size,
                             fixed_size=spec.source is not None)

    return Target(spec.name, lambda size: _meta(lambda: build(size)), fed, classes, notes)


def require_pretrained(spec: ModelSpec) -> None:
    """--freeze-backbone means finetune's head phase, which only the models with pretrained weights have."""
    if not spec.can_finetune:
        raise UsageError(f"--freeze-backbone applies to models with pretrained weights, not '{spec.name}'",
                         f"use {', '.join(pretrained_models())}")


def checkpoint_target(checkpoint: dict, model: nn.Module, input_size: tuple[int, int, int] | None,
                      freeze_backbone: bool, model_file=None) -> Target:
    """The trained model as saved (its weights already loaded, and so checked), to summarise."""
    from cnnkit.models.external import spec_from_source

    section = checkpoint["model"]
    # An open source comes from its record (a user's file only with the recorded sha256), never by name.
    spec = spec_from_source(section["source"], model_file) if "source" in section else get_spec(section["name"])
    if freeze_backbone:
        require_pretrained(spec)
        # finetune's checkpoints hold torchvision's architecture with the new head; train's the registry's own.
        finetuned = checkpoint["model"]["kwargs"].get("arch") == "torchvision"
        head = spec.new_head if finetuned else spec.head
        set_frozen(model, model.get_submodule(head or section.get("head") or find_head(model)), frozen=True)
    saved = tuple(int(v) for v in checkpoint["data"]["input_size"])
    fed = input_size or check_input_size(saved, f"{checkpoint['path']}: its input size", CheckpointError)  # type: ignore[arg-type]
    classes = len(checkpoint["data"].get("classes") or []) or int(checkpoint["model"]["kwargs"].get("num_classes", 0))
    notes = [f"checkpoint {checkpoint['path']} (epoch {checkpoint.get('train', {}).get('epoch', '?')})"]
    return Target(spec.name, lambda size: model, fed, classes, notes, source="checkpoint")  # type: ignore[arg-type]


def run_torchinfo(model: nn.Module, input_size: tuple[int, int, int], depth: int):
    import torchinfo

    return torchinfo.summary(
        model, input_size=(1, *input_size), depth=depth, device="meta", verbose=0,
        col_names=COLUMNS, row_settings=("var_names",), mode="eval",
    )


def table_text(stats) -> str:
    # torchinfo 1.8 prints "(Units.GIGABYTES)" on recent Pythons; say "(G)" as it meant to.
    return re.sub(r"\(Units\.([A-Z])[A-Z]*\)", r"(\1)", str(stats))


def summary_document(target: Target, stats) -> dict:
    layers = [
        {
            "name": layer.var_name, "type": layer.class_name, "depth": layer.depth,
            "output_shape": layer.output_size, "params": layer.num_params,
            "trainable_params": layer.trainable_params, "mult_adds": layer.macs,
        }
        for layer in stats.summary_list
    ]
    return {
        "model": target.name,
        "source": target.source,
        "input_size": [1, *target.input_size],
        "classes": target.classes,
        "total_params": stats.total_params,
        "trainable_params": stats.trainable_params,
        "non_trainable_params": stats.total_params - stats.trainable_params,
        "mult_adds": stats.total_mult_adds,
        "layers": layers,
        "notes": target.notes,
    }


def zoo_models(zoo: str) -> list[dict]:
    """`summary --list torchvision` / `--list timm`: every name that zoo offers, as cnnkit spells it."""
    from cnnkit.models.external import ZOOS, import_timm, torchvision_names

    if zoo == "torchvision":
        import torchvision

        rows = []
        for name in torchvision_names():
            weights = torchvision.models.get_model_weights(name).DEFAULT
            rows.append({"name": f"torchvision:{name}", "weights": str(weights).rpartition(".")[0] + "." + weights.name,
                         "native_size": int(weights.transforms().crop_size[0]), "params": weights.meta.get("num_params"),
                         "imagenet_acc1": weights.meta.get("_metrics", {}).get("ImageNet-1K", {}).get("acc@1")})
        return rows
    if zoo == "timm":
        timm = import_timm()
        tags: dict[str, list[str]] = {}
        for tagged in timm.list_models(pretrained=True):  # "resnet18.a1_in1k": architecture.weights
            name, _, tag = tagged.partition(".")
            tags.setdefault(name, []).append(tag)
        return [{"name": f"timm:{name}", "pretrained_tags": sorted(tags.get(name, []))} for name in timm.list_models()]
    raise UsageError(f"--list takes nothing, {' or '.join(ZOOS)}; not '{zoo}'", "e.g. `cnnkit summary --list torchvision`")


def registered_models() -> list[dict]:
    """Every registered model: aliases, native input, parameters at its default input, weights."""
    from cnnkit.models.backbones import weights_path
    from cnnkit.models.registry import list_aliases

    aliases: dict[str, list[str]] = {}
    for alias, name in list_aliases().items():
        aliases.setdefault(name, []).append(alias)
    rows = []
    for name in list_models():
        spec = get_spec(name)
        target = registry_target(name, None, None, None, False)
        params = sum(p.numel() for p in target.build(target.input_size[1:]).parameters())
        weights = None
        if spec.weights is not None:
            weights = "ImageNet (cached)" if weights_path(spec).is_file() else "ImageNet (download)"
        rows.append({
            "name": name,
            "aliases": sorted(aliases.get(name, [])),
            "native_size": spec.native_size,
            "default_input": list(target.input_size),
            "params": params,
            "weights": weights,
            "description": spec.description,
        })
    return rows


# --explain: a walk through the layers with the output-size formula filled in ------------------

NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
FORMULA = "out = (W - F + 2P) / S + 1"


@dataclass
class Step:
    label: str  # conv1, pool2, linear1: counted in the order layers run
    name: str  # the module's qualified name in the model
    layer: str  # "Conv2d 1->6, 5x5"
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...] | None = None
    formula: str = ""

    @property
    def title(self) -> str:
        return self.label if self.name in ("", self.label) else f"{self.label} ({self.name})"


@dataclass
class Walk:
    input_size: tuple[int, int, int]
    steps: list[Step]
    problem: str | None = None  # why the input does not fit, in words

    def to_dict(self) -> dict:
        return {
            "input_size": list(self.input_size),
            "steps": [
                {"label": s.label, "name": s.name, "layer": s.layer, "in": list(s.in_shape),
                 "out": None if s.out_shape is None else list(s.out_shape), "formula": s.formula}
                for s in self.steps
            ],
            "problem": self.problem,
        }


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _side(w: int, f: int, p: int, s: int, d: int = 1, ceil: bool = False) -> tuple[int, str]:
    """One side's output size and the formula with the numbers filled in."""
    span = d * (f - 1) + 1
    top = w - span + 2 * p
    out = (-(-top // s) if ceil else top // s) + 1
    if ceil and out > 0 and (out - 1) * s >= w + p:  # PyTorch: the last window must start inside
        out -= 1
    kernel = f"{span}" if d == 1 else f"{span} ({f} dilated by {d})"
    text = f"({w} - {kernel} + 2*{p}) / {s} + 1 = {out}"
    if top >= 0 and top % s:
        text += " (rounded up)" if ceil else " (rounded down)"
    return out, text


def _window(module: nn.Module) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int], bool]:
    """kernel, stride, padding, dilation and ceil_mode of a conv or pool layer."""
    kernel = _pair(module.kernel_size)
    stride = _pair(module.stride if module.stride is not None else module.kernel_size)
    padding = getattr(module, "padding", 0)
    if padding == "same":
        padding = tuple((d * (k - 1)) // 2 for k, d in zip(kernel, _pair(getattr(module, "dilation", 1))))
    padding = (0, 0) if padding == "valid" else _pair(padding)
    dilation = _pair(getattr(module, "dilation", 1))
    return kernel, stride, padding, dilation, bool(getattr(module, "ceil_mode", False))


def _describe(module: nn.Module, in_shape: tuple[int, ...]) -> tuple[str, str, str]:
    """(kind, short layer text, formula) for the layers the walk shows; kind '' for the rest."""
    if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        kernel, stride, padding, dilation, ceil = _window(module)
        height, width = in_shape[-2:]
        out_h, text_h = _side(height, kernel[0], padding[0], stride[0], dilation[0], ceil)
        out_w, text_w = _side(width, kernel[1], padding[1], stride[1], dilation[1], ceil)
        formula = text_h if text_h == text_w else f"H: {text_h}; W: {text_w}"
        extras = "".join(
            f", {word} {v[0] if v[0] == v[1] else 'x'.join(map(str, v))}"
            for word, v, default in (("stride", stride, (1, 1)), ("pad", padding, (0, 0)), ("dilation", dilation, (1, 1)))
            if v != default and not (word == "stride" and v == kernel and not isinstance(module, nn.Conv2d))
        )
        if isinstance(module, nn.Conv2d):
            return "conv", f"Conv2d {module.in_channels}->{module.out_channels}, {kernel[0]}x{kernel[1]}{extras}", formula
        return "pool", f"{type(module).__name__} {kernel[0]}x{kernel[1]}{extras}", formula
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        size = _pair(module.output_size) if module.output_size is not None else in_shape[-2:]
        return "pool", f"{type(module).__name__} to {size[0]}x{size[1]}", f"adaptive: always {size[0]}x{size[1]}, whatever comes in"
    if isinstance(module, nn.Linear):
        return "linear", f"Linear {module.in_features}->{module.out_features}", ""
    if isinstance(module, nn.Flatten):
        return "flatten", "Flatten", ""
    return "", "", ""


def _shape(text_shape: tuple[int, ...]) -> str:
    return "x".join(map(str, text_shape))


def shape_walk(model: nn.Module, input_size: tuple[int, int, int]) -> Walk:
    """Run a meta-device forward pass and record every conv, pool, flatten and linear layer.

    When the input does not fit, the walk stops at the layer that fails and says why.
    """
    model = model.to("meta").eval()
    walk = Walk(tuple(input_size), [])
    counters: dict[str, int] = {}
    pending: list[tuple[nn.Module, Step, str]] = []
    names = {module: name for name, module in model.named_modules()}

    def before(module, args):
        if not args or not isinstance(args[0], torch.Tensor):
            return
        in_shape = tuple(args[0].shape[1:])
        kind, layer, formula = _describe(module, in_shape)
        if not kind:
            return
        counters[kind] = counters.get(kind, 0) + 1
        step = Step(f"{kind}{counters[kind]}", names.get(module, ""), layer, in_shape, formula=formula)
        walk.steps.append(step)
        pending.append((module, step, kind))

    def after(module, args, output):
        for index in range(len(pending) - 1, -1, -1):
            if pending[index][0] is module:
                pending.pop(index)[1].out_shape = tuple(output.shape[1:])
                return

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_pre_hook(before) for m in leaves] + [m.register_forward_hook(after) for m in leaves]
    try:
        with torch.no_grad():
            model(torch.zeros((1, *input_size), device="meta"))
    except Exception as exc:  # the input does not fit: say where and why
        failed = pending[-1] if pending else None
        walk.problem = _explain_failure(failed, walk.steps, exc)
    finally:
        for handle in handles:
            handle.remove()
    return walk


def _explain_failure(failed, steps: list[Step], exc: Exception) -> str:
    detail = first_line(exc)
    if failed is None:
        after = f" after {steps[-1].title}" if steps else ""
        return f"the forward pass fails{after}: {detail}"
    module, step, kind = failed
    pools = sum(1 for s in steps[: steps.index(step)] if s.label.startswith("pool"))
    if kind in ("conv", "pool") and not isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        kernel, _, padding, dilation, _ = _window(module)
        height, width = step.in_shape[-2:]
        span = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
        if span[0] > height + 2 * padding[0] or span[1] > width + 2 * padding[1]:
            where = (
                f"the {height}x{width} input" if step is steps[0]
                else f"the {height}x{width} map left after {NUMBER_WORDS[pools] if pools < len(NUMBER_WORDS) else pools} pooling{'s' if pools != 1 else ''}"
                if pools else f"the {height}x{width} map coming out of {steps[steps.index(step) - 1].title}"
            )
            padded = f" ({height + 2 * padding[0]}x{width + 2 * padding[1]} with padding)" if any(padding) else ""
            return f"{step.label}'s {kernel[0]}x{kernel[1]} kernel does not fit {where}{padded}"
    if kind == "conv" and module.in_channels != step.in_shape[0]:
        return f"{step.title} expects {module.in_channels} input channel(s), but gets {step.in_shape[0]}"
    if kind == "linear":
        got = step.in_shape[-1]
        before = next((s for s in reversed(steps[: steps.index(step)]) if s.out_shape and len(s.out_shape) == 3), None)
        source = f"the {_shape(before.out_shape)} map from {before.title} flattens to {got}" if before else f"it gets {got}"
        return f"{step.title} expects {module.in_features} input features, but {source}"
    return f"{step.title} cannot take a {_shape(step.in_shape)} input: {detail}"


def working_side(target: Target, channels: int, tried: int) -> int | None:
    """A square input side that fits: the model's native size first, then the nearest larger, then smaller."""
    spec = get_spec(target.name)
    # Bounded: each try is a meta-device pass, cheap, but a channel mismatch never fits.
    candidates = ([spec.native_size] if spec.native_size else []) + list(range(tried + 1, min(4 * tried + 9, tried + 97))) + list(range(tried - 1, max(0, tried - 33), -1))
    for side in dict.fromkeys(candidates):
        if side != tried and shape_walk(target.build(side), (channels, side, side)).problem is None:
            return side
    return None
