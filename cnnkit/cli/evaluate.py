"""cnnkit evaluate: accuracy, loss, top-k, per-class metrics and the confusion matrix of a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from cnnkit.cli.app import app
from cnnkit.cli.common import (
    MAX_BATCH_SIZE, CacheDirOption, CacheOption, DeviceOption, JsonOption, ModelFileOption, QuietOption, Split, handle_errors,
    print_json, stdout_console,
)

# Beyond this many classes the confusion table is too wide for a terminal; JSON and the PNG still have it.
MAX_TABLE_CLASSES = 20
MAX_TOP_K = 1000  # ImageNet's class count
MAX_WORST = 100  # a gallery of 20 rows of 5: past that it is too tall to draw or to read
SPLIT_WORDS = {"all": "every image", "test": "the test split", "val": "the validation part held out in training",
               "train": "the training part"}


@app.command(
    epilog="Examples:\n"
    '  cnnkit evaluate checkpoints/lenet-mnist-sample\n'
    '  cnnkit evaluate run/best.pt --split val --json\n'
    '  cnnkit evaluate run --confusion confusion.png --misclassified mistakes/',
)
@handle_errors
def evaluate(
    checkpoint: Annotated[str, typer.Argument(help="A checkpoint file, or a run directory (its best.pt).", show_default=False)],
    dataset: Annotated[Optional[str], typer.Option("--dataset", "-d", help="Dataset to evaluate on; default: the one the checkpoint was trained on.")] = None,
    split: Annotated[Optional[Literal[Split.test, Split.val, Split.train, Split.all]], typer.Option("--split", help="test, val (training's validation split), train or all (every image); default: test if the dataset has one, else val on the dataset trained on and all on another folder.")] = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, max=MAX_TOP_K, help="Also report top-k accuracy for this k (shown when k is below the number of classes).")] = 5,
    confusion: Annotated[Optional[Path], typer.Option("--confusion", help="Write the confusion matrix as a PNG with class names.")] = None,
    misclassified: Annotated[Optional[Path], typer.Option("--misclassified", help="Write a gallery of the most confident mistakes: to FILE.png, or to DIR/misclassified.png.")] = None,
    worst: Annotated[int, typer.Option("--worst", min=1, max=MAX_WORST, help="How many mistakes the gallery (and JSON) shows.")] = 25,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, max=MAX_BATCH_SIZE, help="Evaluation batch size; default: the one training validated with.")] = None,
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", envvar="CNNKIT_DATA", help="Root for catalog datasets; default: the one used in training.")] = None,
    cache_dir: CacheDirOption = None,
    cache: CacheOption = True,
    model_file: ModelFileOption = None,
    device: DeviceOption = "auto",
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Evaluate a trained checkpoint: accuracy, loss, top-k, per-class precision/recall/F1, confusion matrix."""
    from cnnkit.engine.evaluate_checkpoint import evaluate_checkpoint, evaluation_document, worst_mistakes
    from cnnkit.reporting import Reporter

    target = gallery_path(misclassified) if misclassified is not None else None  # refused before any work
    reporter = Reporter(quiet=quiet or json_output)
    evaluation = evaluate_checkpoint(
        checkpoint, dataset=dataset, split=split.value if split else None, data_dir=data_dir,
        top_k=top_k, batch_size=batch_size, device=device, reporter=reporter, cache_dir=cache_dir, cache=cache,
        model_file=model_file,
    )
    mistakes = worst_mistakes(evaluation, worst)
    document = evaluation_document(evaluation, mistakes)
    if confusion is not None:
        from cnnkit.viz.confusion import plot_confusion

        title = f"{document['model']} on {Path(document['dataset']).name} ({document['split']}): {document['accuracy']:.2%}"
        document["confusion_png"] = str(plot_confusion(evaluation.result.confusion, evaluation.classes, confusion, title))
    if misclassified is not None:
        from cnnkit.viz.gallery import plot_gallery

        items = [{"image": m["image"], "caption": f"true: {m['true']}\npred: {m['predicted']} ({m['probability']:.0%})"} for m in mistakes]
        document["misclassified_png"] = str(plot_gallery(items, target, f"{len(items)} most confident mistakes"))
    if json_output:
        print_json(document)
        return
    if quiet:  # the headline alone, one line a script can read
        print(headline(document))
        return
    _print_report(document)
    for key, what in (("confusion_png", "confusion matrix"), ("misclassified_png", "mistakes gallery")):
        if key in document:
            reporter.note(f"wrote {what} to {document[key]}")


def gallery_path(misclassified: Path) -> Path:
    """--misclassified x.png is the PNG itself; any other path is a folder for misclassified.png."""
    from cnnkit.data.images import IMAGE_EXTENSIONS
    from cnnkit.errors import UsageError

    suffix = misclassified.suffix.lower()
    if suffix == ".png":
        return misclassified
    if suffix in IMAGE_EXTENSIONS:
        raise UsageError(f"--misclassified {misclassified}: the gallery is written as a PNG, not {suffix}",
                         f"name a .png file ({misclassified.with_suffix('.png')}) or a folder")
    return misclassified / "misclassified.png"


def shows_top_k(doc: dict) -> bool:
    # With k classes or more every image is in its top k: a top-2 accuracy of 100% on 2 classes says nothing.
    return doc["top_k"] < len(doc["classes"])


def headline(doc: dict) -> str:
    top = f", top-{doc['top_k']} {doc['top_k_accuracy']:.2%}" if shows_top_k(doc) else ""
    return f"accuracy {doc['accuracy']:.2%}{top}, loss {doc['loss']:.4f} on {doc['count']:,} images ({doc['split']} split)"


def _print_report(doc: dict) -> None:
    from rich.table import Table
    from rich.text import Text

    console = stdout_console()  # markup off: class names and paths print as they are
    # The title says which part was scored and how many images, so a held-out 20% is never taken for the whole folder.
    summary = Table(title=f"{doc['model']} on {doc['dataset']}: {SPLIT_WORDS[doc['split']]} ({doc['count']:,} images)",
                    show_header=False)
    rows = [("checkpoint", doc["checkpoint"]), ("images", f"{doc['count']:,}"), ("accuracy", f"{doc['accuracy']:.2%}"),
            ("balanced accuracy", f"{doc['balanced_accuracy']:.2%} (mean per-class recall)")]
    if shows_top_k(doc):
        rows.append((f"top-{doc['top_k']} accuracy", f"{doc['top_k_accuracy']:.2%}"))
    rows.append(("loss", f"{doc['loss']:.4f}"))
    for key, value in rows:
        summary.add_row(key, value)
    if doc["skipped"]:
        summary.add_row("skipped images", str(len(doc["skipped"])))
    console.print(summary)

    per_class = Table(title="per class")
    for column in ("class", "precision", "recall", "f1", "support"):
        per_class.add_column(column, justify="left" if column == "class" else "right")
    for row in doc["per_class"]:
        per_class.add_row(row["class"], f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}", str(row["support"]))
    per_class.add_section()
    for label, key in (("macro avg", "macro_avg"), ("weighted avg", "weighted_avg")):
        avg = doc[key]
        per_class.add_row(label, f"{avg['precision']:.3f}", f"{avg['recall']:.3f}", f"{avg['f1']:.3f}", str(avg["support"]))
    console.print(per_class)

    classes = doc["classes"]
    if len(classes) > MAX_TABLE_CLASSES:
        console.print(f"confusion matrix: {len(classes)} classes, too many for a table; use --confusion PNG or --json")
        return
    matrix = Table(title="confusion matrix (rows: true, columns: predicted)")
    matrix.add_column("true \\ pred")
    for name in classes:
        matrix.add_column(name, justify="right")
    for i, (name, counts) in enumerate(zip(classes, doc["confusion"])):
        cells = [Text(str(c), style="bold green" if j == i else "" if c else "dim") for j, c in enumerate(counts)]
        matrix.add_row(name, *cells)
    console.print(matrix)
