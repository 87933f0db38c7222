"""Training configuration: plain values only, so it fits in config.json and the checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


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
    label_smoothing: float = 0.0
    init: str = "default"
    augment: str = ""
    val_split: float | None = None
    val_every: int = 0
    out: str = "checkpoints"
    name: str | None = None
    amp: bool | None = None  # None: on for CUDA, off elsewhere
    compile: bool = False
    auto_batch: bool = False
    workers: int | None = None
    limit: int | None = None
    seed: int = 0
    device: str = "auto"
    memory_budget: str | None = None
    # finetune only
    mode: str = "train"
    weights: str | None = None
    head_epochs: int = 0
    unfreeze_epochs: int = 0
    unfreeze_lr: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})
