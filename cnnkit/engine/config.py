"""Training configuration: plain values only, so it fits in config.json and the checkpoint.

Also the defaults that depend on where the run happens (amp, loader workers), computed in one place.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

COMMANDS = ("train", "finetune")
FINETUNE_MODES = ("finetune", "features")
DEFAULT_LOADER_WORKERS = 2  # DataLoader workers for streamed folders when --workers is not given
MAX_EVAL_BATCH = 512


@dataclass
class TrainConfig:
    model: str = "lenet"
    dataset: str = "mnist-sample"
    data_dir: str = "data"
    epochs: int = 5
    batch_size: int = 64
    lr: float = 5e-3
    optimizer: str = "adamw"
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "onecycle"
    label_smoothing: float | None = None  # None: label_smoothing_for decides
    init: str = "default"
    augment: str = ""
    val_split: float | None = None
    val_every: int = 0
    out: str = "checkpoints"
    name: str | None = None
    amp: bool | None = None  # None: default_amp decides
    compile: bool = False
    auto_batch: bool = False
    workers: int | None = None
    limit: int | None = None
    seed: int = 0
    device: str = "auto"
    memory_budget: str | None = None
    command: str = "train"  # which command started the run, and so resumes it
    # the model and its input (any model: FILE.py:NAME, torchvision:NAME, timm:NAME)
    model_args: dict = field(default_factory=dict)  # --model-arg KEY=VALUE, passed to the builder
    image_size: list | None = None  # --image-size [H, W]; None: the model's native or the data's size
    # the tutorials' recipes
    recipe: str | None = None  # the built-in recipe this run started from
    loss: str = "cross-entropy"
    normalize: str = "dataset"  # dataset | none | imagenet | MEAN[,MEAN...][/STD[,STD...]]
    init_bias: float | None = None  # None: each scheme's own bias rule
    # real folders
    patience: int | None = None  # early stopping: epochs without a better validation accuracy
    balance: str | None = None  # None, "sampler" or "loss"
    val_limit: int | None = None
    tensorboard: bool = False
    cache_dir: str | None = None  # None: CNNKIT_CACHE, else $XDG_CACHE_HOME/cnnkit or ~/.cache/cnnkit
    cache: bool = True  # --no-cache: decode every time, write no cache
    # finetune only
    finetune_mode: str | None = None  # "finetune" or "features"
    weights: str | None = None
    head_epochs: int = 0
    unfreeze_epochs: int = 0
    unfreeze_lr: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        values = upgrade_config(values)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def upgrade_config(values: dict) -> dict:
    """A config written before `mode` was split: mode "train" was the train command, any other a finetune mode."""
    if "mode" not in values:
        return values
    values = dict(values)
    mode = values.pop("mode")
    values.setdefault("command", "train" if mode == "train" else "finetune")
    values.setdefault("finetune_mode", None if mode == "train" else mode)
    return values


def recorded_config(checkpoint: dict) -> TrainConfig:
    """The configuration a checkpoint's run was trained with (the defaults for a file that records none)."""
    return TrainConfig.from_dict(checkpoint.get("train", {}).get("config", {}))


# cnnkit's own default for `train` with cross-entropy: measured, LeNet on mnist-sample reaches 97% at
# optimizer step 225 instead of 400 (issue 18). Recipes, finetune and the other losses keep the plain target.
DEFAULT_LABEL_SMOOTHING = 0.1


def label_smoothing_for(cfg: TrainConfig) -> float:
    """--label-smoothing as given, else cnnkit's default: 0.1 for train with cross-entropy outside a recipe, else 0."""
    if cfg.label_smoothing is not None:
        return cfg.label_smoothing
    plain = cfg.command != "train" or cfg.loss != "cross-entropy" or cfg.recipe is not None
    return 0.0 if plain else DEFAULT_LABEL_SMOOTHING


def default_amp(requested: bool | None, device) -> bool:
    """bf16 autocast: as asked (--amp / --no-amp), else on for CUDA and for CPUs with native bf16 instructions.

    Where the CPU has AVX-512-BF16 or AMX, bf16 trains the cnn 1.3x and ResNet18 2x faster (issue 18);
    elsewhere it is emulated and slower than float32, so it stays off.
    """
    if requested is not None:
        return requested
    if device.type == "cuda":
        return True
    from cnnkit.engine.device import cpu_bf16

    return device.type == "cpu" and cpu_bf16() is not None


def loader_workers(requested: int | None) -> int:
    return DEFAULT_LOADER_WORKERS if requested is None else requested


def eval_batch_size(batch_size: int) -> int:
    """Evaluation keeps no gradients, so it affords twice the training batch (up to a bound)."""
    return min(MAX_EVAL_BATCH, 2 * batch_size)
