"""Reading and running what `cnnkit export` wrote: ONNX through onnxruntime, TorchScript through torch.jit.

One home for the exported files' contract, shared by export (which runs its own output before it keeps it)
and predict (`--model FILE.onnx`, `--model FILE.pt` that is TorchScript):

- metadata: key `classes` (a JSON list) and key `cnnkit` (a JSON document: the input and output
  contract, the checkpoint's model and data sections), in ONNX `metadata_props`, a TorchScript extra
  file `cnnkit.json` (both keys in one document) or safetensors' header metadata;
- input `images`: (N, C, H, W) at the run's input size, uint8 0-255 or float32 0-1 as `input.dtype` says;
  the graph casts, scales and normalises, but never resizes: the caller brings images to H x W;
- output `probabilities`: float32 softmax, one column per class in the order of `classes`.
"""

from __future__ import annotations

import contextlib
import json
import warnings
import zipfile
from pathlib import Path

import torch

from cnnkit.errors import CheckpointError, CnnkitError, first_line

EXPORT_FORMAT = "cnnkit.export"
EXPORT_VERSION = 1
TORCHSCRIPT_EXTRA = "cnnkit.json"  # the TorchScript extra file; stored as <archive>/extra/cnnkit.json
INPUT_NAME, OUTPUT_NAME = "images", "probabilities"
EXTRA_INSTALL = 'pip install "cnnkit[export]"'
ONNX_MODULES = ("onnx", "onnxscript", "onnxruntime")


def require(modules: tuple[str, ...], what: str) -> None:
    """Import each optional module now, or say which extra installs it (one clean error, not an ImportError)."""
    import importlib

    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise CnnkitError(f"{what} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed",
                          f"install the export extra: {EXTRA_INSTALL}")


@contextlib.contextmanager
def quiet_torch():
    """torch.jit's deprecation warnings and tracer notes are torch's business, not the user's."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# ---- telling the files apart ----------------------------------------------------------------


def _zip_names(path: Path) -> list[str]:
    try:
        if not zipfile.is_zipfile(path):
            return []
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (OSError, zipfile.BadZipFile, ValueError):
        return []  # left to the checkpoint loader, which names what is wrong


def exported_kind(path: Path) -> str | None:
    """"onnx", "torchscript", or None for anything else (a cnnkit checkpoint, a run directory).

    Read from the name and the zip's member list only: nothing is unpickled or run to decide. torch.save
    writes data.pkl and tensors; only TorchScript archives hold a code/ folder of compiled modules.
    """
    if path.is_file() and path.suffix.lower() == ".onnx":
        return "onnx"
    if path.is_file() and any(name.split("/")[1:2] == ["code"] for name in _zip_names(path)):
        return "torchscript"
    return None


def parse_metadata(props: dict[str, str], path: Path) -> dict:
    """The `cnnkit` document with its classes, from a file's string metadata; a file without it is refused."""
    try:
        document = json.loads(props["cnnkit"])
        classes = json.loads(props["classes"])
        valid = (isinstance(document, dict) and document.get("format") == EXPORT_FORMAT
                 and isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes))
    except (KeyError, TypeError, ValueError):
        valid = False
    if not valid:
        raise CheckpointError(f"{path} has no cnnkit export metadata (classes and input size)",
                              "pass a file that `cnnkit export` wrote, or the checkpoint it was exported from")
    if isinstance(document.get("version"), int) and document["version"] > EXPORT_VERSION:
        raise CheckpointError(f"{path} is a cnnkit export of version {document['version']}; this cnnkit reads up to "
                              f"{EXPORT_VERSION}", "upgrade cnnkit")
    problem = _contract_problem(document, classes)
    if problem:
        raise CheckpointError(f"{path} has bad cnnkit export metadata: {problem}",
                              "the file was not written by cnnkit export, or was edited since; export it again")
    return {**document, "classes": classes}


def _contract_problem(document: dict, classes: list) -> str | None:
    """What predict reads from the metadata, bounded before it decodes or allocates anything."""
    from cnnkit.limits import MAX_CHANNELS, MAX_CLASSES, MAX_SIDE

    def side(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_SIDE

    spec, data = document.get("input"), document.get("data")
    if not isinstance(spec, dict) or spec.get("dtype") not in ("uint8", "float32"):
        return "input.dtype is not uint8 or float32"
    shape = spec.get("shape")
    if not (isinstance(shape, list) and len(shape) == 4 and side(shape[1]) and shape[1] <= MAX_CHANNELS
            and side(shape[2]) and side(shape[3])):
        return "input.shape is not [batch, channels, height, width] within bounds"
    if not isinstance(data, dict):
        return "data is not a section"
    if not (side(data.get("channels")) and data["channels"] <= MAX_CHANNELS and isinstance(data.get("size"), list)
            and len(data["size"]) == 2 and all(side(v) for v in data["size"])
            and (data.get("resize_to") is None or side(data["resize_to"]))):
        return "data.channels, data.size or data.resize_to is out of bounds"
    if len(classes) > MAX_CLASSES or len(set(classes)) != len(classes):
        return "classes are too many or repeat"
    return None


def torchscript_metadata(path: Path) -> dict:
    """The extra file, read straight from the zip: the archive's code is not loaded to read it."""
    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.split("/")[1:] == ["extra", TORCHSCRIPT_EXTRA]), None)
            props = json.loads(archive.read(name)) if name else {}
    except (OSError, zipfile.BadZipFile, ValueError):
        props = {}
    return parse_metadata(props if isinstance(props, dict) else {}, path)


# ---- running them ---------------------------------------------------------------------------


class OnnxRunner:
    """An ONNX model (bytes or a file) on onnxruntime's CPU provider."""

    def __init__(self, model: bytes | Path):
        require(("onnxruntime",), "running an ONNX model")
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: its optimiser's notes are no concern of the user's
        try:
            self.session = onnxruntime.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                                        providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for a damaged or foreign file
            raise CheckpointError(f"onnxruntime cannot load {'the exported model' if isinstance(model, bytes) else model}: "
                                  f"{first_line(exc, limit=300)}") from None
        self.props = dict(self.session.get_modelmeta().custom_metadata_map)
        shape = self.session.get_inputs()[0].shape
        self.batch = shape[0] if isinstance(shape[0], int) else None  # None: any batch size

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.batch is None:
            return self._run(images)
        # A static graph takes exactly `batch` images: pad the last chunk, drop the padding's rows.
        out = []
        for chunk in images.split(self.batch):
            n = len(chunk)
            if n < self.batch:
                chunk = torch.cat([chunk, chunk[-1:].expand(self.batch - n, *chunk.shape[1:])])
            out.append(self._run(chunk)[:n])
        return torch.cat(out)

    def _run(self, images: torch.Tensor) -> torch.Tensor:
        try:
            (probabilities,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: images.contiguous().numpy()})
        except Exception as exc:
            raise CnnkitError(f"onnxruntime could not run the model: {first_line(exc, limit=300)}") from None
        return torch.from_numpy(probabilities)


class TorchScriptRunner:
    """A TorchScript archive through torch.jit.load, which runs the archive's code: only for a file the user named."""

    def __init__(self, model: bytes | Path, device: torch.device | str = "cpu"):
        import io

        self.device = torch.device(device)
        try:
            with quiet_torch():
                self.module = torch.jit.load(io.BytesIO(model) if isinstance(model, bytes) else str(model),
                                             map_location=self.device)
        except Exception as exc:
            raise CheckpointError(f"torch.jit cannot load {'the exported model' if isinstance(model, bytes) else model}: "
                                  f"{first_line(exc, limit=300)}") from None

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        with quiet_torch():
            return self.module(images.to(self.device)).float().cpu()


# ---- the caller's side of the contract ------------------------------------------------------


def graph_input(images: torch.Tensor, document: dict) -> torch.Tensor:
    """uint8 (N, c, h, w) as cnnkit decodes them -> what the graph takes (document["input"]).

    Where the run fed the model another size or channel count than it decoded (LeNet's 32x32 from 28x28
    digits, grey images into a 3-channel model), this does the resize and channel change the way cnnkit's
    BatchTransform does; for a uint8 graph the result is rounded back to uint8, so there the probabilities
    can differ slightly from predicting with the checkpoint.
    """
    from cnnkit.data.transforms import BatchTransform

    spec = document["input"]
    channels, height, width = spec["shape"][1:]
    same = images.shape[1] == channels and tuple(images.shape[2:]) == (height, width)
    if spec["dtype"] == "uint8" and same:
        return images
    if same:
        return images.float().div_(255)
    # mean 0, std 1: only BatchTransform's channel change and resize, on 0-1 floats.
    scaled = BatchTransform([0.0] * channels, [1.0] * channels, channels, (height, width))(images)
    if spec["dtype"] == "uint8":
        return scaled.mul_(255).round_().clamp_(0, 255).to(torch.uint8)
    return scaled


class ExportedClassifier:
    """predict's classifier for an exported file: its metadata's classes and decoding, its runtime's probabilities."""

    def __init__(self, path: Path, kind: str, device: torch.device, decoder):
        if kind == "onnx":
            self.run = OnnxRunner(path)
            self.document = parse_metadata(self.run.props, path)
        else:
            self.document = torchscript_metadata(path)  # refused before any of its code is loaded
            self.run = TorchScriptRunner(path, device)
        data = self.document["data"]
        self.source = str(path)
        self.classes = list(self.document["classes"])
        self.decode = decoder(int(data["channels"]), tuple(int(s) for s in data["size"]), data.get("resize_to"))

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        probabilities = self.run(graph_input(images, self.document))
        if probabilities.dim() != 2 or tuple(probabilities.shape) != (len(images), len(self.classes)):
            raise CheckpointError(f"{self.source} returns {list(probabilities.shape)} for {len(images)} images, "
                                  f"not one probability for each of its {len(self.classes)} classes",
                                  "the file was edited since cnnkit exported it; export it again")
        return probabilities


def exported_classifier(path: Path, device: torch.device, decoder) -> ExportedClassifier | None:
    """An ExportedClassifier for an ONNX or TorchScript file; None for a cnnkit checkpoint or a run directory."""
    kind = exported_kind(path)
    return None if kind is None else ExportedClassifier(path, kind, device, decoder)
