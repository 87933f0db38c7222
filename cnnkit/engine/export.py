"""cnnkit export: a checkpoint as ONNX, TorchScript or safetensors, checked against PyTorch before it is kept.

The graph formats hold `Preprocessed`: cast, scale, the run's normalisation, the model and a softmax, so
that a runtime without cnnkit needs only images at the run's input size (exported_model.py holds that
contract). safetensors holds the bare weights plus the checkpoint's model and data sections, from which
cnnkit rebuilds the model. Every file is made in memory, run (or, for safetensors, loaded back into a
rebuilt model) on a few images next to the PyTorch model, and written atomically only if the two agree.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cnnkit.engine.exported_model import (
    EXPORT_FORMAT, EXPORT_VERSION, INPUT_NAME, ONNX_MODULES, OUTPUT_NAME, TORCHSCRIPT_EXTRA, OnnxRunner,
    TorchScriptRunner, graph_input, quiet_torch, require,
)
from cnnkit.errors import CnnkitError, ModelError, UsageError, first_line
from cnnkit.reporting import QUIET, Reporter

FORMATS = ("onnx", "torchscript", "safetensors")
SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript", ".safetensors": "safetensors"}
INPUT_DTYPES = ("uint8", "float")
TOLERANCE = 1e-4  # largest difference in any probability, fp32
HALF_TOLERANCE = 1e-2  # float16 keeps about three significant digits
CHECK_IMAGES = 8
# What torch.onnx and torch.jit put around their messages: # notes, --- rules, [step] tags.
TORCH_DECORATIONS = ("#", "-", "[")
EXAMPLE_BATCH = 2  # torch.export specialises a dimension of size 1, so a dynamic batch is traced at 2


@dataclass(frozen=True)
class ExportOptions:
    format: str
    dynamic_batch: bool = True
    batch_size: int = 1  # the fixed batch of a static ONNX graph
    opset: int | None = None  # None: torch.onnx's default
    input_dtype: str = "uint8"
    half: bool = False
    tolerance: float | None = None  # None: TOLERANCE, or HALF_TOLERANCE with half

    @property
    def static_batch(self) -> bool:
        """An ONNX graph of a fixed batch; TorchScript and safetensors take any batch."""
        return self.format == "onnx" and not self.dynamic_batch


def resolve_format(fmt: str | None, out: Path) -> str:
    if fmt is None:
        fmt = SUFFIXES.get(out.suffix.lower())
        if fmt is None:
            raise UsageError(f"cannot tell the format from --out {out}", f"pass --format {'|'.join(FORMATS)}")
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt}: not a format export writes", f"choose one of {', '.join(FORMATS)}")
    return fmt


def check_out(out: Path) -> None:
    """Refuse a link or a directory at --out before any work: the file is replaced, never written through."""
    if out.is_symlink():
        raise CnnkitError(f"--out {out} is a symbolic link; export does not write through links",
                          "remove the link, or pass the path of the file itself")
    if out.is_dir():
        raise CnnkitError(f"--out {out} is a directory", "pass the path of the file to write, e.g. model.onnx")


class Preprocessed(nn.Module):
    """images (N, C, H, W) at the run's input size -> class probabilities, in one graph.

    uint8 0-255 or float 0-1 in; the scale and normalisation are one multiply-add, as cnnkit's
    BatchTransform does it; softmax in float32 whatever the model's precision.
    """

    def __init__(self, model: nn.Module, mean: torch.Tensor, std: torch.Tensor, uint8: bool):
        super().__init__()
        self.model = model
        self.register_buffer("scale", 1.0 / ((255.0 if uint8 else 1.0) * std))
        self.register_buffer("shift", -mean / std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = torch.addcmul(self.shift, images.to(self.scale.dtype), self.scale)  # BatchTransform's op, to the last bit
        return self.model(x).float().softmax(1)


def metadata(checkpoint: dict, options: ExportOptions) -> dict[str, str]:
    """The string metadata every format carries: `classes`, and `cnnkit` with the contract and the sections."""
    from cnnkit.version import __version__

    data = dict(checkpoint["data"])
    channels, height, width = data["input_size"]
    batch = options.batch_size if options.static_batch else "batch"
    document = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "cnnkit_version": __version__,
        "exported_from": checkpoint["path"],
        "epoch": checkpoint["train"].get("epoch"),
        "precision": "float16" if options.half else "float32",
        "model": model_document(checkpoint),
        "data": data,
    }
    if options.format == "safetensors":
        document["weights"] = ("the model's state_dict; it takes (x / 255 - data.mean) / data.std at "
                               "data.input_size and returns logits")
    else:
        document["input"] = {
            "name": INPUT_NAME, "layout": "NCHW", "shape": [batch, channels, height, width],
            "dtype": "uint8" if options.input_dtype == "uint8" else "float32",
            "range": [0, 255] if options.input_dtype == "uint8" else [0, 1],
            "resize": f"none inside: the caller resizes and crops images to {height}x{width}"
                      + (f" (cnnkit decodes at {data['size'][0]}x{data['size'][1]}"
                         + (f" after scaling the short side to {data['resize_to']}" if data.get("resize_to") else "")
                         + (", then resizes" if list(data["size"]) != [height, width] else "") + ")"),
            "normalisation": "inside: the graph scales to 0-1 and applies data.mean and data.std",
        }
        document["output"] = {"name": OUTPUT_NAME, "dtype": "float32",
                              "meaning": "softmax probabilities, one column per class in the order of classes"}
    return {"classes": json.dumps(list(data["classes"])), "cnnkit": json.dumps(document)}


# ---- the formats ----------------------------------------------------------------------------


def _onnx_bytes(wrapper: nn.Module, example: torch.Tensor, options: ExportOptions, props: dict[str, str]) -> bytes:
    import onnx

    batch = torch.export.Dim("batch", min=1) if options.dynamic_batch else None
    try:
        # torch.onnx prints its steps on stdout, which belongs to the command's result.
        with quiet_torch(), contextlib.redirect_stdout(io.StringIO()):
            program = torch.onnx.export(
                wrapper, (example,), dynamo=True, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                opset_version=options.opset, dynamic_shapes=({0: batch},) if batch is not None else None,
                verbose=False,
            )
    except Exception as exc:  # torch.export and the ONNX translation raise many types; each is a model that does not export
        raise ModelError(f"torch.onnx cannot export this model{_opset(options)}: {first_line(exc, TORCH_DECORATIONS, 300)}",
                         "try another --opset, or --format torchscript") from None
    proto = program.model_proto
    onnx.helper.set_model_props(proto, props)
    return proto.SerializeToString()


def _opset(options: ExportOptions) -> str:
    return f" at opset {options.opset}" if options.opset is not None else ""


def _torchscript_bytes(wrapper: nn.Module, example: torch.Tensor, props: dict[str, str]) -> bytes:
    try:
        with quiet_torch():
            traced = torch.jit.trace(wrapper, (example,), check_trace=False)  # the export is checked below, once
            buffer = io.BytesIO()
            torch.jit.save(traced, buffer, _extra_files={TORCHSCRIPT_EXTRA: json.dumps(props)})
    except Exception as exc:
        raise ModelError(f"torch.jit cannot trace this model: {first_line(exc, TORCH_DECORATIONS, 300)}", "try --format onnx") from None
    return buffer.getvalue()


def _safetensors_bytes(model: nn.Module, props: dict[str, str]) -> bytes:
    from safetensors.torch import save

    # safetensors refuses tensors that share memory; a state_dict's are distinct copies after clone().
    state = {name: tensor.detach().clone().contiguous() for name, tensor in model.state_dict().items()}
    return save(state, metadata=props)


def model_document(checkpoint: dict) -> dict:
    """The checkpoint's model section without its weights: all a reader needs to rebuild the model (its name,
    sizes, --model-arg's, the source of a zoo or user model, a replaced head), with an older layout made explicit."""
    from cnnkit.engine.checkpoint import explicit_model_section

    return {key: value for key, value in explicit_model_section(checkpoint).items() if key != "state_dict"}


def _safetensors_model(payload: bytes) -> nn.Module:
    """The model rebuilt from the file alone, as a reader of it would: its metadata's sections and its tensors."""
    from safetensors.torch import load

    from cnnkit.engine.checkpoint import build_model

    # The format: an 8-byte little-endian header length, then the JSON header whose __metadata__ is ours.
    length = int.from_bytes(payload[:8], "little")
    document = json.loads(json.loads(payload[8:8 + length])["__metadata__"]["cnnkit"])
    model = build_model(document["model"]["name"], document["model"]["kwargs"], document["model"])
    if document["precision"] == "float16":
        model = model.half()
    model.load_state_dict(load(payload))
    return model.eval()


# ---- the check ------------------------------------------------------------------------------


def check_images(checkpoint: dict, reporter: Reporter) -> tuple[torch.Tensor, str]:
    """A few uint8 images as the run decoded them: from its dataset if it is still there, else seeded noise."""
    data = checkpoint["data"]
    try:
        images, where = _dataset_images(data)
    except (CnnkitError, OSError) as exc:
        reporter.note(f"note: the run's dataset '{data.get('spec')}' is not readable here ({exc}); "
                      f"checking on {CHECK_IMAGES} seeded random images")
        generator = torch.Generator().manual_seed(0)
        size = [CHECK_IMAGES, int(data["channels"]), *map(int, data["size"])]
        return torch.randint(0, 256, size, dtype=torch.uint8, generator=generator), "seeded random images"
    return images, where


def _dataset_images(data: dict) -> tuple[torch.Tensor, str]:
    from cnnkit.data.dataset import TensorSplit
    from cnnkit.data.images import load_image
    from cnnkit.data.parse import parse_recorded_spec
    from cnnkit.data.resolve import load_dataset

    spec = parse_recorded_spec(data["spec"], data.get("kind"))
    # A budget of one byte: a folder comes back as its list of files, of which only a few are decoded.
    dataset = load_dataset(spec, data.get("data_dir", "data"), image_size=tuple(data["size"]),
                           channels=int(data["channels"]), resize_to=data.get("resize_to"),
                           max_size=tuple(data["size"]), budget=1)
    name = "test" if "test" in dataset.splits else next(iter(dataset.splits))
    split = dataset.splits[name]
    picks = torch.linspace(0, len(split) - 1, min(CHECK_IMAGES, len(split))).round().long().unique()
    if isinstance(split, TensorSplit):
        images = split.images[picks]
    else:
        images = torch.stack([load_image(split.files[i], int(data["channels"]), tuple(data["size"]), split.resize_to)
                              for i in picks.tolist()])
    return images, f"{len(images)} images of {dataset.spec}'s {name} split"


def difference(exported: torch.Tensor, reference: torch.Tensor) -> float:
    if exported.shape != reference.shape or not bool(torch.isfinite(exported).all()):
        return float("inf")
    return float((exported.float() - reference.float()).abs().max())


# ---- the command's core ---------------------------------------------------------------------


def export_checkpoint(source: str | Path, out: str | Path, options: ExportOptions, reporter: Reporter = QUIET) -> dict:
    """Export, check and write; returns what was done. Nothing is written unless the check passes."""
    from cnnkit.engine.checkpoint import load_checkpoint, model_from_checkpoint, transform_from_checkpoint
    from cnnkit.fileio import atomic_write_bytes

    out = Path(out)
    check_out(out)
    if options.format == "onnx":
        require(ONNX_MODULES, "--format onnx")
    elif options.format == "safetensors":
        require(("safetensors",), "--format safetensors")
    checkpoint = load_checkpoint(source)
    model = model_from_checkpoint(checkpoint)
    transform = transform_from_checkpoint(checkpoint, "cpu")  # the mean and std, shaped for the model's channels
    reference = Preprocessed(model, transform.mean, transform.std, options.input_dtype == "uint8").eval()
    exported = copy.deepcopy(reference).half() if options.half else reference
    props = metadata(checkpoint, options)
    document = {**json.loads(props["cnnkit"]), "classes": json.loads(props["classes"])}

    images, where = check_images(checkpoint, reporter)
    inputs = images if options.format == "safetensors" else graph_input(images, document)
    example = inputs[:1].expand(options.batch_size if options.static_batch else EXAMPLE_BATCH,
                                *inputs.shape[1:]).contiguous()

    reporter.note(f"exporting {checkpoint['model']['name']} from {checkpoint['path']} as {options.format}"
                  + (" in float16" if options.half else ""))
    if options.format in ("onnx", "torchscript"):
        onnx = options.format == "onnx"
        payload = _onnx_bytes(exported, example, options, props) if onnx else _torchscript_bytes(exported, example, props)
        run = (OnnxRunner if onnx else TorchScriptRunner)(payload)
        with torch.inference_mode():
            want = reference(inputs)
        got = _run_batches(run, inputs, options)
    else:
        payload = _safetensors_bytes(exported.model, props)
        rebuilt = _safetensors_model(payload)
        with torch.inference_mode():
            x = transform(images, train=False)
            want = model(x).float().softmax(1)
            got = rebuilt(x.to(next(rebuilt.parameters()).dtype)).float().softmax(1)

    tolerance = options.tolerance if options.tolerance is not None else HALF_TOLERANCE if options.half else TOLERANCE
    worst = difference(got, want)
    check = {"images": len(images), "on": where, "max_difference": worst, "tolerance": tolerance}
    if not worst <= tolerance:
        raise ModelError(
            f"the exported model differs from the PyTorch model by {worst:.3g} in probability on {where} "
            f"(more than the tolerance {tolerance:g}); nothing was written to {out}",
            "export without --half, or in another --format" if options.half else "export in another --format",
        )
    atomic_write_bytes(out, payload)
    return {"out": str(out), "format": options.format, "bytes": len(payload), "source": checkpoint["path"],
            "model": checkpoint["model"]["name"], "classes": document["classes"],
            "input": document.get("input"), "precision": document["precision"], "check": check}


def _run_batches(run, inputs: torch.Tensor, options: ExportOptions) -> torch.Tensor:
    """Two batches of different sizes for a dynamic graph (it must take both); the runner pads a static one."""
    if options.static_batch or len(inputs) < 2:
        return run(inputs)
    cut = len(inputs) // 2 + 1
    return torch.cat([run(inputs[:cut]), run(inputs[cut:])])

