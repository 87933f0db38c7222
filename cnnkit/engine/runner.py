"""Start or resume a training run (train or finetune): the entry points the CLI (and the Python API) call."""

from __future__ import annotations

from pathlib import Path

from cnnkit.data.dataset import check_same_files
from cnnkit.engine import distributed
from cnnkit.engine.checkpoint import load_checkpoint, verified_model_name
from cnnkit.engine.config import TrainConfig
from cnnkit.engine.finetune import finetune_summary
from cnnkit.reporting import Reporter
from cnnkit.engine.rundir import check_writable, claim_for_resume, resumable_run_dir, run_locks_released
from cnnkit.engine.setup import prepare
from cnnkit.engine.trainer import Trainer, TrainSetup


def start_training(config: TrainConfig, reporter: Reporter | None = None) -> dict:
    reporter = reporter or Reporter()
    try:
        with run_locks_released():
            setup = prepare(config, reporter)  # creates and locks the run directory
            return _fit(Trainer(setup, reporter), setup)
    finally:
        distributed.shutdown()


def resume_training(target: str | Path, reporter: Reporter | None = None, *, epochs: int | None = None,
                    device: str | None = None, workers: int | None = None, auto_batch: bool = False) -> dict:
    """Continue from last.pt with the run's own configuration; --epochs may raise the total.

    --auto-batch may be switched on for the rest of a run that ran out of memory: it keeps the step, so the run
    continues as it was configured.
    """
    reporter = reporter or Reporter()
    checkpoint = load_checkpoint(target, prefer="last")
    run_dir = Path(checkpoint["path"]).parent
    check_writable(run_dir)
    with run_locks_released():
        return _continue(checkpoint, run_dir, reporter, epochs, device, workers, auto_batch)


def _continue(checkpoint: dict, run_dir: Path, reporter: Reporter, epochs, device, workers, auto_batch) -> dict:
    config = TrainConfig.from_dict(checkpoint["train"]["config"])
    config.model = verified_model_name(checkpoint)  # a user's model file: only as the checkpoint saw it (H1)
    if epochs is not None:
        config.epochs = epochs
    if device and device != "auto":
        config.device = device
    if workers is not None:
        config.workers = workers
    config.auto_batch = config.auto_batch or auto_batch
    try:
        setup = prepare(config, reporter, run_dir=run_dir)
        check_same_files(checkpoint["data"], setup.data_section.get("fingerprint"), setup.data_section["spec"],
                         "--resume", "start a new run on the changed folder, or put the files back as they were")
        trainer = Trainer(setup, reporter)
        trainer.resume_from(checkpoint)  # the checkpoint is now known to be whole and to fit: say what else is wrong
        # Rank 0 alone writes in the run directory, so it alone holds the lock; the others learn if it failed.
        distributed.on_rank_zero(lambda: claim_for_resume(resumable_run_dir(checkpoint["path"])))
        done = trainer.state.epoch
        if done < trainer.total_epochs:
            reporter.note(f"resuming {run_dir} at epoch {done + 1}, batch {trainer.state.step_in_epoch + 1}")
        return _fit(trainer, setup)
    finally:
        distributed.shutdown()


def _fit(trainer: Trainer, setup: TrainSetup) -> dict:
    """Train, and say what the run was: finetune runs add their mode, weights, head and phases."""
    return {**trainer.fit(), **finetune_summary(setup.extra_train)}
