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


# Schedules whose rate at a step depends on how long the run is planned to be (engine/optim.py lr_factor).
LENGTH_DEPENDENT_SCHEDULES = ("step", "cosine", "onecycle")


def _continue(checkpoint: dict, run_dir: Path, reporter: Reporter, epochs, device, workers, auto_batch) -> dict:
    config = TrainConfig.from_dict(checkpoint["train"]["config"])
    config.model = verified_model_name(checkpoint)  # a user's model file: only as the checkpoint saw it
    planned = config.epochs
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
        _say_if_replanned(config.schedule, planned, config.epochs, checkpoint["train"].get("epoch", 0), reporter)
        # Rank 0 alone writes in the run directory, so it alone holds the lock; the others learn if it failed.
        distributed.on_rank_zero(lambda: claim_for_resume(resumable_run_dir(checkpoint["path"])))
        done = trainer.state.epoch
        if done < trainer.total_epochs and not trainer.state.stopped_early:  # an early-stopped run is finished
            reporter.note(f"resuming {run_dir} at epoch {done + 1}, batch {trainer.state.step_in_epoch + 1}")
        return _fit(trainer, setup)
    finally:
        distributed.shutdown()


def _say_if_replanned(schedule: str, planned: int, epochs: int, done: int, reporter: Reporter) -> None:
    """A new --epochs on step/cosine/onecycle re-plans the rate over the new length: say so, once.

    Continuing (rather than refusing) is the choice: extending a finished or interrupted run is what
    --resume --epochs is for, every schedule is a pure function of (step, total), so the new plan is
    exact and resumable again, and refusing would leave no way to train such a run further. What
    changes is said because the run then differs from one started with the new --epochs: its first
    `done` epochs followed the old plan, and at the boundary the rate jumps to the new plan's value.
    """
    if epochs == planned or schedule not in LENGTH_DEPENDENT_SCHEDULES or done >= epochs:
        return
    plural = "s" if planned != 1 else ""
    reporter.note(f"note: the {schedule} learning-rate plan was for {planned} epoch{plural}; from epoch "
                  f"{done + 1} on it follows the plan for {epochs} (a run started with --epochs {epochs} follows "
                  "that plan from its first step)")


def _fit(trainer: Trainer, setup: TrainSetup) -> dict:
    """Train, and say what the run was: finetune runs add their mode, weights, head and phases."""
    summary = {**trainer.fit(), **finetune_summary(setup.extra_train)}
    # ---- report.html once the run is done ----
    # Rank 0 evaluates alone, so the process group goes first: no collective waits for peers that have left.
    distributed.shutdown()
    if setup.world.main:
        summary["report"] = _write_report(setup, trainer.reporter)
    return summary


def _write_report(setup: TrainSetup, reporter: Reporter) -> str | None:
    """A report that cannot be written is worth a warning, not a failed run: the checkpoints are saved."""
    from cnnkit.engine.run_report import write_report
    from cnnkit.errors import CnnkitError

    try:
        path = write_report(setup.run_dir, device=str(setup.device), workers=setup.config.workers)
    except (CnnkitError, OSError) as exc:
        reporter.warn(f"could not write report.html: {getattr(exc, 'message', None) or exc}")
        reporter.note(f"hint: write it later with `cnnkit report {setup.run_dir}`")
        return None
    reporter.note(f"wrote the run report to {path}")
    return str(path)
