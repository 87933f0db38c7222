"""Checkpoints: plain dicts of tensors and values, written atomically, read with weights_only=True."""

from __future__ import annotations

from pathlib import Path

import torch

from cnnkit.engine.checkpoint_schema import FORMAT, VERSION, chosen_size, validate_checkpoint
from cnnkit.errors import CheckpointError, first_line
from cnnkit.fileio import atomic_torch_save
from cnnkit.safeload import safe_torch_load



def build_checkpoint(model_section: dict, data_section: dict, train_section: dict) -> dict:
    from cnnkit.version import __version__

    return {
        "format": FORMAT,
        "version": VERSION,
        "cnnkit_version": __version__,
        "torch_version": str(torch.__version__),  # TorchVersion is a class weights_only refuses
        "model": model_section,
        "data": data_section,
        "train": train_section,
    }


def save_checkpoint(path: str | Path, checkpoint: dict) -> Path:
    """Write to a temporary file beside `path`, fsync, rename: the old file survives any crash."""
    path = Path(path)
    atomic_torch_save(path, checkpoint)
    return path


def resolve_checkpoint_path(path: str | Path, prefer: str = "best") -> Path:
    """A checkpoint file, or a run directory (its best.pt, else last.pt)."""
    path = Path(path).expanduser()
    if path.is_dir():
        order = ("best.pt", "last.pt") if prefer == "best" else ("last.pt", "best.pt")
        for name in order:
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"no checkpoint in {path} (no best.pt or last.pt)", "pass a run directory that `cnnkit train` wrote, or a .pt file")
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}", "pass a .pt file or a run directory such as checkpoints/lenet-mnist-sample")
    return path


def load_checkpoint(path: str | Path, prefer: str = "best", resume: bool | None = None) -> dict:
    """Load and validate a cnnkit checkpoint; never unpickle code.

    `resume` also requires the loop state a run continues from; by default it is what prefer="last"
    (the resume path's choice) asks for.
    """
    path = resolve_checkpoint_path(path, prefer)
    checkpoint = safe_torch_load(path)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        is_state_dict = isinstance(checkpoint, dict) and checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values())
        hint = (
            "this looks like a bare state_dict; use it with `cnnkit finetune --weights FILE`"
            if is_state_dict
            else "pass a checkpoint written by `cnnkit train` or `cnnkit finetune`"
        )
        raise CheckpointError(f"{path} is not a cnnkit checkpoint", hint)
    version = checkpoint.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version > VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {checkpoint['version']}; this cnnkit reads up to {VERSION}",
            "upgrade cnnkit",
        )
    validate_checkpoint(checkpoint, path, resume=prefer == "last" if resume is None else resume)  # every consumer loads through here: nothing is built from a bad field
    checkpoint["path"] = str(path)
    return checkpoint


def build_model(name: str, kwargs: dict, section: dict | None = None, model_file=None):
    """Rebuild a model from a checkpoint's model section (without its weights).

    An open source (torchvision:, timm:, a user's file) is rebuilt from `section["source"]`; a user's code is
    imported only from the file with the recorded sha256, or from `model_file` the user names.
    """
    from cnnkit.models import get_spec
    from cnnkit.models.backbones import finetune_architecture
    from cnnkit.models.external import spec_from_source
    from cnnkit.models.registry import call_builder
    from cnnkit.models.surgery import new_layer_like

    section = section or {}
    kwargs = dict(kwargs)
    source = section.get("source")
    spec = spec_from_source(source, model_file) if source else get_spec(name)
    if kwargs.pop("arch", "cnnkit") == "torchvision":  # finetune's: torchvision's architecture with a new head
        return finetune_architecture(spec, kwargs["num_classes"])
    model = call_builder(spec, args=section.get("args"), **kwargs)
    head = section.get("head")  # finetune of a model without torchvision weights: its head was replaced
    if head:
        old = model.get_submodule(head)
        if getattr(old, "out_features", getattr(old, "out_channels", None)) != kwargs["num_classes"]:
            model.set_submodule(head, new_layer_like(old, kwargs["num_classes"]))
    return model


def load_model_weights(model, checkpoint: dict) -> None:
    """Load the checkpoint's weights into `model`; weights of another architecture are a CheckpointError."""
    section = checkpoint["model"]
    try:
        model.load_state_dict(section["state_dict"])
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise CheckpointError(
            f"the weights in {checkpoint.get('path', 'the checkpoint')} do not fit model '{section['name']}': {lines[1] if len(lines) > 1 else lines[0]}",
            "the checkpoint's weights belong to another model; pass the checkpoint its run wrote",
        ) from None


def explicit_model_section(checkpoint: dict) -> dict:
    """The checkpoint's model section with an older layout made explicit in its args: such a checkpoint
    records none, its weights' names say which (models/layouts.py)."""
    from cnnkit.models.layouts import checkpoint_layout

    section = checkpoint["model"]
    layout = checkpoint_layout(section["name"], section["state_dict"])
    return {**section, "args": {**layout, **(section.get("args") or {})}} if layout else section


def model_from_checkpoint(checkpoint: dict, model_file=None):
    """The trained model, in eval mode, on the CPU. `model_file`: --model-file, the user's code to use."""
    section = explicit_model_section(checkpoint)
    try:
        model = build_model(section["name"], section["kwargs"], section, model_file)
    except (ValueError, RuntimeError, TypeError, AttributeError) as exc:  # sizes within bounds that this architecture still cannot take
        raise CheckpointError(
            f"model '{section['name']}' cannot be built as {checkpoint.get('path', 'the checkpoint')} describes it "
            f"({section['kwargs']}): {first_line(exc)}",
            "the file was not written by cnnkit, or was edited since; use a checkpoint its run wrote",
        ) from None
    load_model_weights(model, checkpoint)
    if "source" in section or "args" in section or chosen_size(checkpoint.get("train")) is not None:
        # Not a built-in at its native size: one batch proves the rebuilt model takes the recorded input.
        from cnnkit.models.surgery import check_output

        check_output(model, section["name"], tuple(checkpoint["data"]["input_size"]),
                     section["kwargs"]["num_classes"], CheckpointError)
    return model.eval()


def transform_from_checkpoint(checkpoint: dict, device, channels_last: bool = False):
    from cnnkit.data.transforms import BatchTransform

    data = checkpoint["data"]
    return BatchTransform(
        data["mean"], data["std"], data["input_size"][0], data["input_size"][1:], (), device, channels_last
    )


def verified_model_name(checkpoint: dict, model_file=None) -> str:
    """The model name a resumed run rebuilds from; a user's file is checked against its recorded sha256 first
    (and the name is the recorded absolute one, whatever the directory --resume runs in)."""
    section = checkpoint["model"]
    source = section.get("source")
    if source and source.get("kind") in ("file", "module"):
        from cnnkit.models.external import spec_from_source

        return spec_from_source(source, model_file).name
    return checkpoint["train"]["config"].get("model", section["name"])
