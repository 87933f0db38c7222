"""Evaluate a checkpoint on a dataset split, rebuilding exactly what training validated on.

Everything comes from the checkpoint: the model, its preprocessing, the
dataset spec, the validation split (fraction and seed) and the evaluation
batch size. So `--split val` reproduces the val_acc in the run's metrics.csv.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cnnkit.data.dataset import Dataset, FileSplit, Split, check_same_files, every_image
from cnnkit.engine.evaluation import EvalResult
from cnnkit.errors import DataError
from cnnkit.reporting import QUIET, Reporter

SPLITS = ("test", "val", "train", "all")
MAX_LISTED_CLASSES = 20


@dataclass
class Evaluation:
    checkpoint: dict
    dataset: Dataset
    split_name: str
    split: Split
    result: EvalResult
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        return list(self.checkpoint["data"]["classes"])


def default_split(dataset: Dataset, trained_on: bool = True) -> str:
    """The dataset's own test split when it has one; else, on the dataset trained on, training's held-out
    validation part, and on any other folder every image (a separate test folder is scored whole, as
    Keras' evaluate and Ultralytics' val score the folder they are given)."""
    if "test" in dataset.splits:
        return "test"
    return "val" if trained_on else "all"


def pick_split(dataset: Dataset, name: str, config) -> Split:
    """The split to score; `config` (the run's TrainConfig) draws val and train as training did."""
    from cnnkit.engine.setup import training_splits
    from cnnkit.errors import UsageError

    if name not in SPLITS:
        raise UsageError(f"unknown split '{name}'", f"use one of {', '.join(SPLITS)}")
    if name == "all":
        if dataset.decoder is not None:
            dataset.splits = dataset.decoder(dataset.splits)
        return every_image(dataset)
    if name == "test":
        if "test" not in dataset.splits:
            raise DataError(f"dataset '{dataset.spec}' has no test split: it is one set of class folders, "
                            "with no test/ folder beside a train/ one",
                            "use --split all to score every image in it, or --split val for training's held-out part")
        if dataset.decoder is not None:
            dataset.splits.update(dataset.decoder({"test": dataset.splits["test"]}))
        return dataset.splits["test"]
    train, val, _ = training_splits(config, dataset, parts=(name,))
    return val if name == "val" else train


def _listing(classes: list[str]) -> str:
    # Names as they are, unquoted. The error line is printed as plain text, not rich markup, so a
    # class name with square brackets in it shows unchanged.
    shown = ", ".join(classes[:MAX_LISTED_CLASSES])
    return f"({shown}{', ...' if len(classes) > MAX_LISTED_CLASSES else ''}; {len(classes)} classes)"


def check_classes(dataset: Dataset, checkpoint_classes: list[str]) -> None:
    if list(dataset.classes) != list(checkpoint_classes):
        raise DataError(
            f"dataset '{dataset.spec}' has classes {_listing(list(dataset.classes))} "
            f"but the checkpoint was trained on {_listing(list(checkpoint_classes))}",
            "evaluate on a dataset with the same class names in the same order",
        )


def _load_evaluation_dataset(data: dict, spec: str | None, data_dir: str | Path | None, workers, budget, reporter,
                             cache_dir=None, cache: bool = True, decode: bool = True):
    from cnnkit.data.resolve import load_dataset
    from cnnkit.data.parse import parse_recorded_spec, parse_spec
    from cnnkit.hub.install import fetch_missing

    spec = parse_recorded_spec(data["spec"], data.get("kind")) if spec is None else parse_spec(spec)
    # The same arguments training decoded with: mixed-size folders go to the same size,
    # and grey stays grey, so a folder's decode cache is shared with training.
    return load_dataset(
        spec, data_dir if data_dir is not None else data.get("data_dir", "data"),
        image_size=tuple(data["size"]), channels=int(data["channels"]), resize_to=data.get("resize_to"),
        max_size=tuple(data["size"]), workers=workers, budget=budget, reporter=reporter,
        on_missing=fetch_missing, cache_dir=cache_dir, cache=cache, decode=decode,
    )


def evaluate_checkpoint(
    target: str | Path,
    *,
    dataset: str | None = None,
    split: str | None = None,
    data_dir: str | Path | None = None,
    top_k: int = 5,
    batch_size: int | None = None,
    device: str = "auto",
    workers: int | None = None,
    budget: int | None = None,
    keep_predictions: bool = True,
    reporter: Reporter = QUIET,
    cache_dir: str | Path | None = None,
    cache: bool = True,
    model_file: str | Path | None = None,
) -> Evaluation:
    """Load a checkpoint (a run directory means its best.pt) and evaluate it on one split.

    `budget` (bytes) is the memory budget for decoded folders; past it they stream from disk.
    `cache_dir` and `cache` choose the decode cache (cnnkit.data.cache); cache=False decodes afresh.
    A folder is decoded as training decoded it, every split (so that training's decode caches serve it),
    except after a run with --limit or --val-limit: then only the images scored are decoded.
    """
    from cnnkit.data.batches import make_batches
    from cnnkit.engine.checkpoint import load_checkpoint, model_from_checkpoint, transform_from_checkpoint
    from cnnkit.engine.config import default_amp, eval_batch_size, loader_workers, recorded_config
    from cnnkit.engine.device import resolve_device
    from cnnkit.engine.evaluation import run_evaluation
    from cnnkit.errors import UsageError

    if top_k < 1:
        raise UsageError("--top-k must be at least 1")
    if batch_size is not None and batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    checkpoint = load_checkpoint(target)
    data = checkpoint["data"]
    torch_device = resolve_device(device)
    config = recorded_config(checkpoint)
    # A run with --limit or --val-limit drew its images from the undecoded file list (engine/setup.py
    # prepare_data): its val split is redrawn the same way, and only what is scored is decoded.
    loaded = _load_evaluation_dataset(data, dataset, data_dir, workers, budget, reporter, cache_dir, cache,
                                      decode=not (config.limit or config.val_limit))
    check_classes(loaded, data["classes"])
    trained_on = loaded.spec == data.get("spec")
    split_name = split or default_split(loaded, trained_on)
    # val and train are drawn from the train files by seed: only the same files give the same split.
    # (Another dataset's val is not training's held-out part whatever its files, so only the own one is checked.)
    if split_name in ("val", "train") and trained_on:
        check_same_files(data, loaded.fingerprint, loaded.spec, f"--split {split_name}",
                         "evaluate with --split test, or on a separate test folder (--dataset DIR --split all)")
    chosen = pick_split(loaded, split_name, config)
    for note in loaded.notes:
        reporter.note(f"note: {note}")
    reporter.skipped(loaded.skipped)

    model = model_from_checkpoint(checkpoint, model_file).to(torch_device)
    transform = transform_from_checkpoint(checkpoint, torch_device)
    batches = make_batches(
        chosen, channels=loaded.channels, size=loaded.size, device=torch_device, shuffle=False,
        batch_size=batch_size or eval_batch_size(config.batch_size), seed=config.seed,
        workers=loader_workers(workers),
    )
    result = run_evaluation(model, batches, transform, len(data["classes"]), device=torch_device,
                            amp=default_amp(config.amp, torch_device), k=top_k, keep_predictions=keep_predictions)
    skipped = list(getattr(batches, "skipped", []))
    reporter.skipped(skipped)
    if result.count == 0:
        raise DataError(f"the {split_name} split of '{loaded.spec}' has no readable images")
    return Evaluation(checkpoint, loaded, split_name, chosen, result, skipped)


def worst_mistakes(evaluation: Evaluation, count: int) -> list[dict]:
    """The wrong predictions made with the highest confidence, most confident first.

    Each has the image as stored in the split (uint8 C,H,W), its index, and its
    path for folder datasets.
    """
    result = evaluation.result
    if result.predictions is None or count <= 0:
        return []
    wrong = (result.predictions != result.labels).nonzero().flatten()
    order = wrong[result.probabilities[wrong].argsort(descending=True, stable=True)][:count]
    split = evaluation.split
    files = None
    if isinstance(split, FileSplit):
        # Streamed batches drop unreadable files, so positions count only the readable ones.
        skipped = {path for path, _ in evaluation.skipped}
        files = [f for f in split.files if str(f) not in skipped]
    classes = evaluation.classes
    mistakes = []
    for position in order.tolist():
        entry = {
            "index": position,
            "true": classes[int(result.labels[position])],
            "predicted": classes[int(result.predictions[position])],
            "probability": float(result.probabilities[position]),
            "true_probability": float(result.true_probabilities[position]),
        }
        if files is not None:
            from cnnkit.data.images import load_image

            entry["path"] = str(files[position])
            entry["image"] = load_image(files[position], evaluation.dataset.channels, evaluation.dataset.size, split.resize_to)
        else:
            entry["image"] = split.images[position]
        mistakes.append(entry)
    return mistakes


def evaluation_document(evaluation: Evaluation, mistakes: list[dict] | None = None) -> dict:
    """Everything evaluate reports, as plain JSON-ready values."""
    from cnnkit.engine.report import class_report

    result = evaluation.result
    checkpoint = evaluation.checkpoint
    train = checkpoint.get("train", {})
    document = {
        "checkpoint": checkpoint["path"],
        "model": checkpoint["model"]["name"],
        "epoch": train.get("epoch"),
        "dataset": evaluation.dataset.spec,
        "split": evaluation.split_name,
        "count": result.count,
        "accuracy": result.accuracy,
        "loss": result.loss,
        "top_k": result.k,
        "top_k_accuracy": result.topk_accuracy,
        "balanced_accuracy": result.balanced_accuracy,  # mean per-class recall, beside accuracy
        "classes": evaluation.classes,
        **class_report(result.confusion, evaluation.classes),
        "confusion": result.confusion.tolist(),
        "skipped": [{"path": path, "reason": reason} for path, reason in evaluation.skipped],
    }
    if mistakes is not None:
        document["worst_mistakes"] = [{k: v for k, v in m.items() if k != "image"} for m in mistakes]
    return document
