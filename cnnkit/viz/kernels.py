"""Convolution kernels for `visualize-filter`: named presets and the "a,b,c;d,e,f;g,h,i" syntax.

The vertical and horizontal edge filters are the matrices of the PyTorch
"Introduction to CNN" tutorial (Microsoft AI-For-Beginners, plot_convolution):
vertical [[-1,0,1]]*3 responds to left-right changes, horizontal is its transpose.
"""

from __future__ import annotations

import torch

from cnnkit.errors import UsageError

PRESETS: dict[str, list[list[float]]] = {
    "vertical": [[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]],
    "horizontal": [[-1, -1, -1], [0, 0, 0], [1, 1, 1]],
    "sobel-x": [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],
    "sobel-y": [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],
    "laplacian": [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
    "blur": [[1 / 9] * 3] * 3,
    "sharpen": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
}
MAX_SIDE = 31
SYNTAX_HINT = 'name one of ' + ", ".join(PRESETS) + ', or write rows with ";" and values with ",": "-1,0,1;-2,0,2;-1,0,1"'


def parse_kernel(text: str) -> torch.Tensor:
    """A preset name or a rectangular matrix of finite numbers -> float32 (kH, kW); else UsageError."""
    key = text.strip().lower()
    if key in PRESETS:
        return torch.tensor(PRESETS[key], dtype=torch.float32)
    if not key:
        raise UsageError("--kernel is empty", SYNTAX_HINT)
    rows = []
    for number, row in enumerate(text.split(";"), start=1):
        cells = [cell.strip() for cell in row.split(",")]
        try:
            values = [float(cell) for cell in cells]
        except ValueError:
            bad = next(c for c in cells if not _is_number(c))
            raise UsageError(f"--kernel row {number} has '{bad}', which is not a number (and '{text.strip()[:40]}' is no preset)", SYNTAX_HINT) from None
        rows.append(values)
    widths = {len(row) for row in rows}
    if len(widths) != 1:
        raise UsageError(f"--kernel is not rectangular: its rows have {', '.join(str(len(r)) for r in rows)} values", SYNTAX_HINT)
    if len(rows) > MAX_SIDE or len(rows[0]) > MAX_SIDE:
        raise UsageError(f"--kernel is {len(rows)}x{len(rows[0])}; at most {MAX_SIDE}x{MAX_SIDE} is supported")
    kernel = torch.tensor(rows, dtype=torch.float32)
    # Checked after float32 conversion: 1e39 is a finite float64 but inf in float32.
    if not torch.isfinite(kernel).all():
        raise UsageError("--kernel values must be finite numbers within float32 range", SYNTAX_HINT)
    return kernel


def _is_number(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


def kernel_text(kernel: torch.Tensor) -> str:
    """The "a,b;c,d" form of a kernel, exact enough to parse back to the same float32 values."""
    return ";".join(",".join(repr(float(v)) for v in row) for row in kernel.tolist())


def kernel_name(text: str) -> str:
    key = text.strip().lower()
    return f"{key} filter" if key in PRESETS else "custom filter"
