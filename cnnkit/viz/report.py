"""report.html: one self-contained page about a run (figures inlined as base64 PNG, no script, no link out).

Every string on the page that comes from the user or the data (class names, file names, config values,
paths) goes through html.escape: a class folder named `<script>` is shown as text, never run.
"""

from __future__ import annotations

import base64
import html
import json

from cnnkit.viz.figure import drawable

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { padding: 0.2em 0.8em; border-bottom: 1px solid #eee; text-align: right; }
td:first-child, th:first-child { text-align: left; }
table.summary td { text-align: left; }
img.figure { max-width: 100%; }
.mistakes { display: flex; flex-wrap: wrap; gap: 0.8em; }
.mistakes figure { margin: 0; width: 9em; font-size: 0.8em; overflow-wrap: anywhere; }
.mistakes img { width: 8em; height: 8em; object-fit: contain; image-rendering: pixelated; background: #eee; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; }
"""


def text(value) -> str:
    """Any value as escaped HTML text (quotes too: values also land in attributes); a name that is not
    UTF-8 on disk shows its bad bytes as U+FFFD, as in the figures."""
    return html.escape(drawable(str(value)), quote=True)


def png_img(data: bytes, alt: str, css: str = "figure") -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img class="{css}" alt="{text(alt)}" src="data:image/png;base64,{encoded}">'


def table(rows: list[list], header: list[str] | None = None, css: str = "") -> str:
    head = "<tr>" + "".join(f"<th>{text(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{text(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="{css}">{head}{body}</table>' if css else f"<table>{head}{body}</table>"


def _per_class(doc: dict) -> str:
    rows = [[r["class"], f"{r['precision']:.3f}", f"{r['recall']:.3f}", f"{r['f1']:.3f}", r["support"]]
            for r in doc["per_class"]]
    for label, key in (("macro avg", "macro_avg"), ("weighted avg", "weighted_avg")):
        avg = doc[key]
        rows.append([label, f"{avg['precision']:.3f}", f"{avg['recall']:.3f}", f"{avg['f1']:.3f}", avg["support"]])
    return table(rows, ["class", "precision", "recall", "f1", "support"])


def _mistakes(mistakes: list[dict]) -> str:
    if not mistakes:
        return "<p>No mistakes on this split.</p>"
    cells = []
    for m in mistakes:
        name = m.get("name", f"image {m['index']}")
        caption = (f"<b>{text(m['predicted'])}</b> ({m['probability']:.0%}), true {text(m['true'])}"
                   f"<br><span title=\"{text(m.get('path', name))}\">{text(name)}</span>")
        cells.append(f"<figure>{png_img(m['png'], name, 'thumb')}<figcaption>{caption}</figcaption></figure>")
    return f'<div class="mistakes">{"".join(cells)}</div>'


def render_report(doc: dict) -> str:
    """The page for `doc`: title, summary, curves_png, confusion_png, the evaluation's per-class figures,
    mistakes (each with png, true, predicted, probability, name and path) and config."""
    sections = [
        f"<h1>{text(doc['title'])}</h1>",
        table([[key, value] for key, value in doc["summary"]], css="summary"),
        "<h2>Training curves</h2>",
        png_img(doc["curves_png"], "training curves") if doc.get("curves_png") else "<p>No finished epoch.</p>",
        f"<h2>Confusion matrix ({text(doc['split'])} split)</h2>",
        png_img(doc["confusion_png"], "confusion matrix"),
        "<h2>Per class</h2>",
        _per_class(doc),
        f"<h2>Most confident mistakes ({len(doc['mistakes'])})</h2>",
        _mistakes(doc["mistakes"]),
        "<h2>Configuration</h2>",
        f"<pre>{text(json.dumps(doc['config'], indent=2, sort_keys=True, default=str))}</pre>",
    ]
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{text(doc['title'])}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(sections) + "\n</body>\n</html>\n"
    )
