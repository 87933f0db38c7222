"""Options shared by `train` and `finetune`. Their names are public interface (README, "Commands")."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from cnnkit.cli.common import MAX_BATCH_SIZE, MAX_WORKERS

MAX_EPOCHS = 100_000  # also the most --resume --epochs can make the total: more is a typo, not a plan


class OptimizerName(str, Enum):
    sgd = "sgd"
    adam = "adam"
    adamw = "adamw"
    rmsprop = "rmsprop"


class ScheduleName(str, Enum):
    none = "none"
    step = "step"
    cosine = "cosine"
    onecycle = "onecycle"


def _positive(value: Optional[float]) -> Optional[float]:
    if value is not None and not 0 < value < float("inf"):  # nan and inf too: they train to nan
        raise typer.BadParameter(f"{value} is not a positive finite number")
    return value


def _fraction(value: Optional[float]) -> Optional[float]:
    if value is not None and not 0 < value < 1:
        raise typer.BadParameter(f"{value} is not between 0 and 1")
    return value


def _finite_non_negative(value: Optional[float]) -> Optional[float]:
    if value is not None and not 0 <= value < float("inf"):  # min=0.0 alone lets inf through
        raise typer.BadParameter(f"{value} is not a finite number >= 0")
    return value


def _byte_size(value: Optional[str]) -> Optional[str]:
    """Read the size now (the one parser, cnnkit.data.memory's), so `nan` is a usage error at once."""
    if value is not None:
        from cnnkit.data.memory import parse_bytes
        from cnnkit.errors import UsageError

        try:
            parse_bytes(value)
        except UsageError as exc:
            raise typer.BadParameter(exc.message) from None
    return value


Dataset = Annotated[str, typer.Option("--dataset", "-d", help="Catalog name, image folder or IDX directory.")]
Epochs = Annotated[Optional[int], typer.Option("--epochs", "-e", min=1, max=MAX_EPOCHS, help="Epochs to train (default 5; with --resume: the new total).", show_default=False)]
BatchSize = Annotated[int, typer.Option("--batch-size", "-b", min=1, max=MAX_BATCH_SIZE, help="Images per batch (per process under torchrun).")]
Lr = Annotated[float, typer.Option("--lr", callback=_positive, help="Learning rate.")]
Optimizer = Annotated[OptimizerName, typer.Option("--optimizer", case_sensitive=False, help="Optimizer.")]
Momentum = Annotated[float, typer.Option("--momentum", min=0.0, max=1.0, help="Momentum for sgd and rmsprop.")]
Nesterov = Annotated[bool, typer.Option("--nesterov", help="Nesterov momentum for sgd.")]
WeightDecay = Annotated[float, typer.Option("--weight-decay", callback=_finite_non_negative, help="Weight decay.")]
Schedule = Annotated[ScheduleName, typer.Option("--schedule", case_sensitive=False, help="Learning-rate schedule.")]
LabelSmoothing = Annotated[Optional[float], typer.Option("--label-smoothing", min=0.0, max=0.99, help="Label smoothing for the loss (default: 0.1 for train with cross-entropy outside a recipe, else 0).", show_default=False)]
Augment = Annotated[str, typer.Option("--augment", help="Comma list of flip[:P], crop[:PAD], rotate[:DEGREES], jitter[:B[:C[:S[:H]]]] (arguments after colons), e.g. rotate:15,flip:0.5,crop:4; batched, on the device.")]
ValSplit = Annotated[Optional[float], typer.Option("--val-split", callback=_fraction, help="Hold out this fraction of train for validation (default: validate on the test split, or 0.2 without one).", show_default=False)]
ValEvery = Annotated[int, typer.Option("--val-every", min=0, help="Also validate every N batches (0: only at epoch end).")]
Out = Annotated[Path, typer.Option("--out", help="Root for run directories.")]
Name = Annotated[Optional[str], typer.Option("--name", help="Run directory name (default <model>-<dataset>[-N]).", show_default=False)]
Resume = Annotated[Optional[Path], typer.Option("--resume", help="Run directory or checkpoint to continue exactly.", show_default=False)]
Amp = Annotated[Optional[bool], typer.Option("--amp/--no-amp", help="bf16 autocast (default: on for CUDA and for CPUs with AVX-512-BF16 or AMX; --no-amp refuses it).", show_default=False)]
Compile = Annotated[bool, typer.Option("--compile", help="Wrap the model in torch.compile.")]
AutoBatch = Annotated[bool, typer.Option("--auto-batch", help="On a CUDA out-of-memory error, split each batch into halves (then quarters...) and retry; the step stays that of --batch-size.")]
Workers = Annotated[Optional[int], typer.Option("--workers", min=0, max=MAX_WORKERS, help="Decode workers for folders.", show_default=False)]
Limit = Annotated[Optional[int], typer.Option("--limit", min=1, help="Use only N training images, for quick trials.", show_default=False)]
MemoryBudget = Annotated[Optional[str], typer.Option("--memory-budget", envvar="CNNKIT_MEMORY_BUDGET", callback=_byte_size, help="Largest decoded dataset held in memory, e.g. 4G (default: a quarter of RAM).", show_default=False)]


# ---- the tutorials' init, loss and normalisation: --init, --init-bias, --loss, --normalize. Each is read at option time with the
# parser the engine uses (imported only then: --help imports no torch), so a bad value is a usage error, exit 2.
def _option_value(check, value):
    from cnnkit.errors import UsageError

    try:
        check(value)
    except UsageError as exc:
        raise typer.BadParameter(exc.message) from None
    return value


def _parsed_init(value: Optional[str]) -> Optional[str]:
    from cnnkit.models.init import parse_init

    return value if value is None else _option_value(parse_init, value)


def _parsed_bias(value: Optional[float]) -> Optional[float]:
    from cnnkit.models.init import check_bias

    return _option_value(check_bias, value)


def _parsed_loss(value: Optional[str]) -> Optional[str]:
    from cnnkit.engine.losses import check_loss

    return value if value is None else _option_value(check_loss, value)


def _parsed_normalize(value: Optional[str]) -> Optional[str]:
    from cnnkit.engine.normalize import parse_normalize

    return value if value is None else _option_value(parse_normalize, value)


Init = Annotated[str, typer.Option("--init", callback=_parsed_init, help="Weight initialisation SCHEME[:ARGS]: default, kaiming-normal, kaiming-uniform, xavier-normal, xavier-uniform, normal:MEAN,STD, uniform:A,B, constant:V, zeros, orthogonal, tutorial-003 (old names: kaiming, xavier, normal).")]
InitBias = Annotated[Optional[float], typer.Option("--init-bias", callback=_parsed_bias, help="Set every conv and linear bias to V after --init (default: the scheme's own: 0, or PyTorch's for default).", show_default=False)]
Loss = Annotated[str, typer.Option("--loss", callback=_parsed_loss, help="Training loss on the logits: cross-entropy, nll, bce, mse, l1, smooth-l1, multi-margin, kl-div, poisson-nll. Validation loss is always cross-entropy.")]
Normalize = Annotated[str, typer.Option("--normalize", callback=_parsed_normalize, help="dataset (its own mean/std), none (ToTensor only), imagenet, or MEAN[,MEAN...][/STD[,STD...]] such as 0.5/0.5.")]
# ---- recipes and configuration files ----
Recipe = Annotated[Optional[str], typer.Option("--recipe", help="A built-in recipe (`cnnkit recipes` lists them): the tutorial's settings; options given here override it.", show_default=False)]
Config = Annotated[Optional[Path], typer.Option("--config", help="Settings from a TOML, YAML or JSON file with TrainConfig's keys (a run's config.json is one); over the recipe, under the options given here.", show_default=False)]
PrintConfig = Annotated[bool, typer.Option("--print-config", help="Print the resolved settings as JSON and exit, without training or reading data.")]
# ---- what a training run tells the user --------------------------------------------
class BalanceName(str, Enum):
    sampler = "sampler"
    loss = "loss"


Balance = Annotated[Optional[BalanceName], typer.Option("--balance", case_sensitive=False, help="For imbalanced classes: sampler draws each epoch with class-balanced weights; loss weights the loss by class instead.", show_default=False)]
Patience = Annotated[Optional[int], typer.Option("--patience", min=1, help="Stop early after N epochs without a higher validation accuracy (best.pt keeps the best).", show_default=False)]
Tensorboard = Annotated[bool, typer.Option("--tensorboard", help="Also write TensorBoard event files to RUN/tb/ (needs cnnkit[tensorboard]).")]
# ---- real folders ----------------------------------------------------------------------------------
ValLimit = Annotated[Optional[int], typer.Option("--val-limit", min=1, help="Validate on at most this many images, drawn across classes (default: with --limit, the same share of the validation images).", show_default=False)]
# ---- any model: --image-size and --model-arg ----
def _image_size(value: Optional[str]) -> Optional[list]:
    """`N` or `H,W` -> [H, W], within the bounds every checkpoint is checked against."""
    if value is None:
        return None
    from cnnkit.limits import MAX_PIXELS, MAX_SIDE

    parts = [p.strip() for p in value.replace("x", ",").split(",")]
    if len(parts) not in (1, 2) or not all(p.isdigit() for p in parts):
        raise typer.BadParameter(f"{value!r} is not N or H,W (e.g. 32 or 224,224)")
    height, width = (int(parts[0]),) * 2 if len(parts) == 1 else map(int, parts)
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE) or height * width > MAX_PIXELS:
        raise typer.BadParameter(f"{value} is outside 1 to {MAX_SIDE} a side, {MAX_PIXELS:,} pixels in all")
    return [height, width]


def parse_model_value(text: str):
    """A --model-arg value as the builder wants it: bool, int, float, else the string itself."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            number = kind(text)
        except ValueError:
            continue
        if kind is float and number != number or number in (float("inf"), float("-inf")):
            raise typer.BadParameter(f"{text!r} is not a finite number")
        return number
    return text


def parse_model_args(values: Optional[list]) -> dict:
    """--model-arg KEY=VALUE ... as the dict TrainConfig.model_args holds (Typer keeps a list option a list)."""
    args = {}
    for item in values or []:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key.isidentifier():
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE with KEY a Python name (e.g. hidden=256)")
        args[key] = parse_model_value(text.strip())
    return args


ImageSize = Annotated[Optional[str], typer.Option("--image-size", callback=_image_size, help="Feed the model N x N images (or H,W), whatever its native size; stored in the checkpoint.", show_default=False)]
ModelArgs = Annotated[Optional[list[str]], typer.Option("--model-arg", callback=parse_model_args, help="KEY=VALUE passed to the model's builder (repeatable; int, float, true/false or text).", show_default=False)]
