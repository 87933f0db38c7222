"""Builder arguments the tutorials turn (widths, a layout version), checked, and the old layouts' weights.

`cnn` and the from-scratch `alexnet` were corrected to their tutorials' layouts (layout 2). Layout 1 is what
cnnkit built before: `cnn` without block 2's second conv, `alexnet` with Dropout first and an adaptive pool.
A checkpoint records no layout, but each layout's weights have their own names, so the weights say which
layout wrote them: `checkpoint_layout` reads that, and a checkpoint of layout 1 rebuilds layout 1.
"""

from __future__ import annotations

from cnnkit.errors import ModelError

CURRENT_LAYOUT = 2
LAYOUTS = (1, 2)
MAX_WIDTH = 65_536  # channels or hidden units: more is a typo, not a model that fits anywhere

# A weight only layout 1 has: `cnn`'s Linear was layer 9 (layout 2: a ReLU; its Linear is 11), `alexnet`'s first
# Linear was classifier.1 (layout 2: a ReLU).
LAYOUT_1_WEIGHTS = {"cnn": "9.weight", "alexnet": "classifier.1.weight"}


def width(model: str, name: str, value) -> int:
    """A positive whole number of channels or units; a ModelError names the knob and its bounds."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WIDTH:
        raise ModelError(f"{model}: {name} must be a whole number from 1 to {MAX_WIDTH:,}, not {value!r}",
                         f"e.g. --model-arg {name}=100")
    return value


def layout(model: str, value) -> int:
    if isinstance(value, bool) or value not in LAYOUTS:
        raise ModelError(f"{model}: layout must be one of {', '.join(map(str, LAYOUTS))}, not {value!r}",
                         f"layout {CURRENT_LAYOUT} is the tutorial's; layout 1 the one cnnkit built before it")
    return value


def checkpoint_layout(name: str, state_dict: dict) -> dict:
    """The builder kwargs that rebuild the layout a checkpoint's weights were saved from: {} for the current one."""
    marker = LAYOUT_1_WEIGHTS.get(name)
    return {"layout": 1} if marker is not None and marker in state_dict else {}
