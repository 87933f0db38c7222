"""cnnkit export: a trained run as ONNX, TorchScript or safetensors, checked against PyTorch before it is kept."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cnnkit.cli.app import app
from cnnkit.cli.common import JsonOption, QuietOption, handle_errors, print_json


@app.command(
    epilog="Examples:\n"
    "  cnnkit export checkpoints/cnn-mnist-sample --format onnx --out cnn.onnx\n"
    "  cnnkit export run/best.pt --format torchscript --out model.pt --input float\n"
    "  cnnkit predict digit.png --model cnn.onnx",
)
@handle_errors
def export(
    source: Annotated[str, typer.Argument(metavar="RUN_OR_CHECKPOINT", help="A run directory (its best.pt) or a checkpoint file.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="The file to write; replaced atomically, only once the export passed its check.", show_default=False)],
    fmt: Annotated[Optional[str], typer.Option("--format", "-f", help="onnx, torchscript or safetensors; default: from --out's suffix (.onnx, .pt, .safetensors).", show_default=False)] = None,
    dynamic_batch: Annotated[Optional[bool], typer.Option("--dynamic-batch/--static-batch", help="ONNX: a graph for any batch size (the default), or for exactly --batch-size images.", show_default=False)] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, max=4096, help="The batch of a --static-batch ONNX graph.", show_default=False)] = None,
    opset: Annotated[Optional[int], typer.Option("--opset", min=7, max=30, help="ONNX opset; default: torch.onnx's.", show_default=False)] = None,
    input_dtype: Annotated[Optional[str], typer.Option("--input", help="What the graph takes: uint8 (0-255, the default) or float (0-1).", show_default=False)] = None,
    half: Annotated[bool, typer.Option("--half", help="Weights and compute in float16 (probabilities stay float32); checked at --tolerance 1e-2.")] = False,
    tolerance: Annotated[Optional[float], typer.Option("--tolerance", min=0.0, max=1.0, help="Largest probability difference the check accepts; default 1e-4, with --half 1e-2.", show_default=False)] = None,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Export a checkpoint with its preprocessing and class names; prints the file written."""
    from cnnkit.engine.export import INPUT_DTYPES, ExportOptions, export_checkpoint, resolve_format
    from cnnkit.errors import UsageError
    from cnnkit.reporting import Reporter

    fmt = resolve_format(fmt, out)
    static = dynamic_batch is False
    for name, given, applies, where in (
        ("--dynamic-batch/--static-batch", dynamic_batch is not None, fmt == "onnx", "to --format onnx"),
        ("--batch-size", batch_size is not None, fmt == "onnx" and static, "to --format onnx with --static-batch"),
        ("--opset", opset is not None, fmt == "onnx", "to --format onnx"),
        ("--input", input_dtype is not None, fmt in ("onnx", "torchscript"), "to the graph formats, onnx and torchscript"),
    ):
        if given and not applies:
            raise UsageError(f"{name} does not apply to --format {fmt}" + ("" if static or fmt != "onnx" else " with a dynamic batch"),
                             f"{name} applies only {where}")
    if input_dtype is not None and input_dtype not in INPUT_DTYPES:
        raise UsageError(f"--input {input_dtype}: not an input type", f"choose one of {', '.join(INPUT_DTYPES)}")
    options = ExportOptions(fmt, dynamic_batch=not static, batch_size=batch_size or 1, opset=opset,
                            input_dtype=input_dtype or "uint8", half=half, tolerance=tolerance)
    reporter = Reporter(quiet=quiet or json_output)
    result = export_checkpoint(source, out, options, reporter)
    check = result["check"]
    reporter.note(f"checked on {check['on']}: largest probability difference {check['max_difference']:.3g} "
                  f"(tolerance {check['tolerance']:g})")
    if json_output:
        print_json(result)
    else:
        print(result["out"])
