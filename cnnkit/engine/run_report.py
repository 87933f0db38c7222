"""A run's report.html: its curves, the best checkpoint evaluated on the split training validated on (confusion
matrix, per-class table, most confident mistakes) and its configuration. Written at the end of a run and by
`cnnkit report RUN`; viz/report.py draws the page.
"""

from __future__ import annotations

import io
from pathlib import Path

from cnnkit.errors import CheckpointError
from cnnkit.reporting import Reporter

REPORT_FILE = "report.html"
MISTAKES = 12  # thumbnails on the page


def run_directory(target: str | Path) -> Path:
    """The run directory `target` names: the folder itself, or the folder of its last.pt or best.pt."""
    path = Path(target)
    if path.is_file() and path.name in ("last.pt", "best.pt"):
        path = path.parent
    if not (path / "last.pt").is_file() and not (path / "best.pt").is_file():
        raise CheckpointError(f"{path} is not a run directory: it has no last.pt or best.pt",
                              "pass the folder `cnnkit train` or `cnnkit finetune` printed last")
    return path


def validated_split(checkpoint: dict) -> str:
    """The split name evaluate uses for the images training validated on: the dataset's test split, or the held-out part."""
    return "test" if checkpoint["data"].get("val_source") == "test" else "val"


def _silent() -> Reporter:
    # The run already said what loading the data says (notes, skipped files); the report repeats none of it.
    return Reporter(quiet=True, stream=io.StringIO())


def _thumbnail(image) -> bytes:
    from torchvision.io import encode_png

    return encode_png(image.contiguous().cpu()).numpy().tobytes()


def _curves_png(run: Path, history: list[dict], title: str, val_history, best: int | None) -> bytes | None:
    """The run's curves.png as the trainer drew it after its last epoch; drawn afresh only where it is missing."""
    from cnnkit.viz.curves import curves_figure
    from cnnkit.viz.figure import png_bytes

    if not history:
        return None
    if (run / "curves.png").is_file():
        return (run / "curves.png").read_bytes()
    return png_bytes(curves_figure(history, title, val_history, best))


def build_report(target: str | Path, *, device: str = "auto", mistakes: int = MISTAKES, workers: int | None = None) -> dict:
    """Everything report.html shows, as plain values and PNG bytes."""
    from cnnkit.engine.checkpoint import load_checkpoint
    from cnnkit.engine.evaluate_checkpoint import evaluate_checkpoint, evaluation_document, worst_mistakes
    from cnnkit.viz.confusion import confusion_figure
    from cnnkit.viz.curves import best_epoch
    from cnnkit.viz.figure import png_bytes

    run = run_directory(target)
    record = load_checkpoint(run, prefer="last" if (run / "last.pt").is_file() else "best", resume=False)
    train, data = record["train"], record["data"]
    split = validated_split(record)
    # A memory budget of 0 streams an image folder from its files, so each mistake keeps its file name
    # (decoded into memory, a folder's images have none); catalog and IDX data are not affected.
    evaluation = evaluate_checkpoint(run, split=split, device=device, workers=workers, budget=0, reporter=_silent())
    worst = worst_mistakes(evaluation, mistakes)
    doc = evaluation_document(evaluation, worst)
    history, config = list(train.get("history", [])), dict(train.get("config", {}))
    title = f"{record['model']['name']} on {Path(str(data['spec'])).name or data['spec']}"
    recorded = train.get("best_epoch")  # --val-every may have chosen best.pt inside an epoch
    best = recorded if isinstance(recorded, int) and recorded > 0 else best_epoch(history)
    seconds = sum(row.get("seconds", 0.0) for row in history)
    summary = [
        ("run", str(run)),
        ("model", record["model"]["name"]),
        ("dataset", data["spec"]),
        ("validated on", f"{split} split ({data.get('val_source', split)}), {doc['count']:,} images"),
        ("checkpoint", f"{doc['checkpoint']} (epoch {doc['epoch']})"),
        ("accuracy", f"{doc['accuracy']:.2%}"),
        ("balanced accuracy", f"{doc['balanced_accuracy']:.2%}"),
        ("loss", f"{doc['loss']:.4f}"),
        ("epochs", f"{train.get('epoch', len(history))}" + (f", best {best}" if best is not None else "")),
        ("training time", f"{seconds:.1f} s"),
        ("device", train.get("device") or config.get("device", "?")),  # what the run used; config says what was asked
    ]
    for m in worst:
        m["png"] = _thumbnail(m.pop("image"))
        m["name"] = Path(m["path"]).name if "path" in m else f"image {m['index']}"
    confusion_title = f"{title} ({split}): {doc['accuracy']:.2%}"
    return {
        "run_dir": run,
        "title": title,
        "summary": summary,
        "split": split,
        "curves_png": _curves_png(run, history, title, train.get("val_history"), best),
        "confusion_png": png_bytes(confusion_figure(evaluation.result.confusion, evaluation.classes, confusion_title)),
        "per_class": doc["per_class"],
        "macro_avg": doc["macro_avg"],
        "weighted_avg": doc["weighted_avg"],
        "mistakes": worst,
        "config": {**config, "data": {k: v for k, v in data.items() if k not in ("classes", "mean", "std")}},
    }


def write_report(target: str | Path, *, device: str = "auto", out: str | Path | None = None, workers: int | None = None) -> Path:
    """Write RUN/report.html (or `out`), and curves.png where it is missing."""
    from cnnkit.fileio import atomic_write_bytes, atomic_write_text
    from cnnkit.viz.report import render_report

    doc = build_report(target, device=device, workers=workers)
    run = doc["run_dir"]
    if doc["curves_png"] is not None and not (run / "curves.png").is_file():
        atomic_write_bytes(run / "curves.png", doc["curves_png"])
    path = Path(out) if out is not None else run / REPORT_FILE
    atomic_write_text(path, render_report(doc))
    return path
