"""The training loop: phases of epochs over device-resident or streamed batches.

It never reads a metric from the device inside the loop except for a log line:
loss and accuracy accumulate as device tensors. After every epoch it writes
last.pt (and best.pt), metrics.csv and curves.png, in that order, so a kill at
any moment leaves a run that --resume can finish exactly.

A loss that is no longer finite (too high a learning rate) stops the run where
those reads already happen, before anything of the diverged epoch is saved:
last.pt, best.pt and metrics.csv stay as the last finite epoch left them.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from cnnkit.data.dataset import Dataset
from cnnkit.engine import distributed
from cnnkit.engine.checkpoint import build_checkpoint, load_model_weights, save_checkpoint
from cnnkit.engine import feedback
from cnnkit.engine.config import TrainConfig, default_amp, label_smoothing_for
from cnnkit.engine.device import describe_device
from cnnkit.engine.distributed import World
from cnnkit.engine.evaluation import run_evaluation
from cnnkit.engine.interrupt import StopRequest, TrainingInterrupted
from cnnkit.engine.losses import build_loss
from cnnkit.engine.optim import build_optimizer, build_scheduler
from cnnkit.reporting import Reporter
from cnnkit.engine.rundir import write_config, write_metrics, write_val_steps
from cnnkit.engine.state import capture_rng, restore_rng
from cnnkit.viz.curves import best_epoch as history_best_epoch
from cnnkit.engine.step import TrainStep
from cnnkit.errors import CheckpointError, CnnkitError, UsageError


class TrainingDiverged(CnnkitError):
    """The loss or the weights became NaN or infinite; nothing of the diverged epoch was saved."""


@dataclass
class Phase:
    name: str
    epochs: int
    lr: float
    frozen: bool = False  # backbone frozen: only the head trains


@dataclass
class TrainSetup:
    config: TrainConfig
    model: nn.Module
    train_batches: object
    val_batches: object
    transform: Callable
    device: torch.device
    phases: list[Phase]
    run_dir: Path
    model_section: dict  # name and kwargs; the state_dict is added at save time
    data_section: dict
    dataset: Dataset
    freeze: Callable[[nn.Module, bool], None] | None = None
    extra_train: dict = field(default_factory=dict)  # e.g. finetune's trainable counts
    world: World = field(default_factory=World)
    # Features mode writes its checkpoints at the end (and on Ctrl-C) only; the best epoch's trainable
    # weights wait in memory until then (engine/finetune.py CachedFeatures says why).
    checkpoint_every_epoch: bool = True

    @property
    def num_classes(self) -> int:
        return self.model_section["kwargs"]["num_classes"]

    @property
    def amp(self) -> bool:
        return default_amp(self.config.amp, self.device)

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """Unreadable images, each once: found while loading, and by the batches as they stream."""
        found = [*self.dataset.skipped, *getattr(self.train_batches, "skipped", []),
                 *getattr(self.val_batches, "skipped", [])]
        first = {}
        for path, reason in found:
            first.setdefault(path, (path, reason))
        return list(first.values())


@dataclass
class LoopState:
    epoch: int = 0  # epochs completed
    step_in_epoch: int = 0  # batches completed in the unfinished epoch
    global_step: int = 0
    best_val_acc: float = -1.0
    history: list = field(default_factory=list)
    val_history: list = field(default_factory=list)
    partial: dict = field(default_factory=lambda: {"loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0})
    best_epoch: int = 0  # the epoch best.pt comes from (0: none yet); --patience counts from it
    stopped_early: dict | None = None  # feedback.early_stop's record: the run is finished

    @classmethod
    def from_checkpoint(cls, train: dict) -> "LoopState":
        history = list(train["history"])
        best_epoch = train.get("best_epoch")
        return cls(train["epoch"], train["step_in_epoch"], train["global_step"], train["best_val_acc"],
                   history, list(train.get("val_history", [])), dict(train["partial"]),
                   best_epoch if isinstance(best_epoch, int) else history_best_epoch(history) or 0,
                   feedback.early_stop_record(train.get("stopped_early")))


@contextlib.contextmanager
def saved_state(checkpoint: dict, what: str):
    """torch's own loaders check the optimizer and RNG states in depth; what they refuse is a bad checkpoint."""
    try:
        yield
    except (KeyError, ValueError, TypeError, IndexError, RuntimeError, AttributeError) as exc:
        raise CheckpointError(
            f"the {what} state in {checkpoint.get('path', 'the checkpoint')} cannot be restored "
            f"({type(exc).__name__}: {str(exc).strip().splitlines()[0][:160] if str(exc).strip() else 'malformed'})",
            "the file was not written by cnnkit, or was edited since; use a checkpoint its run wrote",
        ) from None


def phase_at(phases: list[Phase], epoch: int) -> tuple[int, int]:
    """(phase index, the epoch that phase starts at) for a 0-based epoch."""
    start = 0
    for index, phase in enumerate(phases):
        if epoch < start + phase.epochs:
            return index, start
        start += phase.epochs
    return len(phases) - 1, start - phases[-1].epochs


class Trainer:
    def __init__(self, setup: TrainSetup, reporter: Reporter):
        self.s = setup
        self.reporter = reporter
        self.cfg = setup.config
        self.model = setup.model
        self.world = setup.world
        self._balance_sampler()
        self.criterion = build_loss(self.cfg.loss, label_smoothing_for(self.cfg), weight=self.loss_class_weights())  # --loss, --balance loss
        self.step = TrainStep(self._wrapped(), self.criterion, amp=setup.amp, batch_size=self.cfg.batch_size,
                              auto_batch=self.cfg.auto_batch, ddp=self.world.enabled, reporter=reporter)
        if self.world.enabled:
            # Same initial weights everywhere (DDP broadcasts them), different dropout per rank.
            torch.manual_seed(self.cfg.seed + 7919 * self.world.rank)
        gen_device = setup.device if setup.device.type == "cuda" else "cpu"
        self.augment_generator = torch.Generator(device=gen_device).manual_seed(self.cfg.seed + self.world.rank)
        self.state = LoopState()
        self.phase_index = -1
        self.best_trainable: dict[str, torch.Tensor] | None = None  # see TrainSetup.checkpoint_every_epoch
        self.optimizer = self.scheduler = None
        self.total_epochs = sum(p.epochs for p in setup.phases)
        self.device_used = describe_device(self.cfg.device, setup.device)
        self.tensorboard = None  # a TensorBoardLog while fit runs with --tensorboard
        self.warned_stuck = False

    # ---- --balance -------------------------------------------------------------------
    def _train_labels(self) -> torch.Tensor:
        return self.s.train_batches.class_labels()

    def _balance_sampler(self) -> None:
        balance = self.cfg.balance
        if balance is not None and balance not in feedback.BALANCE_MODES:
            raise UsageError(f"unknown --balance '{balance}'", f"use one of {', '.join(feedback.BALANCE_MODES)}")
        if balance == "sampler":
            self.s.train_batches.balance(feedback.sample_weights(self._train_labels(), self.s.num_classes))

    def loss_class_weights(self) -> torch.Tensor | None:
        """--balance loss: the loss's per-class `weight=` (feedback.class_weights), on the device; else None."""
        if self.cfg.balance != "loss":
            return None
        return feedback.class_weights(self._train_labels(), self.s.num_classes).to(self.s.device)

    # ---- setup of a phase ------------------------------------------------------------
    def _wrapped(self) -> nn.Module:
        """The model as the step runs it: under DDP (across ranks) and torch.compile when asked."""
        forward = self.model
        if self.world.enabled:
            from torch.nn.parallel import DistributedDataParallel

            device_ids = [self.s.device.index] if self.s.device.type == "cuda" else None
            forward = DistributedDataParallel(self.model, device_ids=device_ids)
        return torch.compile(forward) if self.cfg.compile else forward

    def _enter_phase(self, index: int) -> None:
        phase = self.s.phases[index]
        if self.s.freeze is not None:
            self.s.freeze(self.model, phase.frozen)
            if self.world.enabled:  # DDP reduces the gradients of what was trainable when it was built
                self.step.forward = self._wrapped()
        # Each phase starts with fresh optimizer state for what is trainable in it.
        self.optimizer = build_optimizer(self.model.parameters(), self.cfg.optimizer, phase.lr,
                                         self.cfg.momentum, self.cfg.weight_decay, self.cfg.nesterov)
        self.scheduler = build_scheduler(self.optimizer, self.cfg.schedule, len(self.s.train_batches), phase.epochs)
        self.phase_index = index

    def resume_from(self, checkpoint: dict) -> None:
        train = checkpoint["train"]
        load_model_weights(self.model, checkpoint)  # weights of another model: a clean error, not a traceback
        self.state = LoopState.from_checkpoint(train)
        if not self.world.main:  # the saved partial sums are already the whole world's, held by rank 0
            self.state.partial = {"loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": self.state.partial["seconds"]}
        index, _ = phase_at(self.s.phases, self.state.epoch)
        self._enter_phase(index)
        with saved_state(checkpoint, "optimizer and scheduler"):
            # Optimizer state carries over only inside the phase it belongs to.
            if train.get("phase", 0) == index and train.get("optimizer"):
                self.optimizer.load_state_dict(train["optimizer"])
                self.scheduler.load_state_dict(train["scheduler"] or {})
        per_rank = train.get("rng_ranks")
        with saved_state(checkpoint, "random-number"):
            if per_rank and len(per_rank) == self.world.size:
                restore_rng(per_rank[self.world.rank], self.augment_generator)
            else:
                if self.world.enabled or per_rank:
                    self.reporter.warn(f"resuming with {self.world.size} process(es), saved with {len(per_rank or [0])}: "
                                       "the run continues, but not bit-for-bit as an uninterrupted one")
                restore_rng(train["rng"], self.augment_generator)

    # ---- checkpoints -----------------------------------------------------------------
    def _checkpoint(self, rng: list) -> dict:
        st = self.state
        train = {
            "config": self.cfg.to_dict(),
            "epoch": st.epoch,
            "step_in_epoch": st.step_in_epoch,
            "global_step": st.global_step,
            "best_val_acc": st.best_val_acc,
            "best_epoch": st.best_epoch,
            "stopped_early": st.stopped_early,
            "device": self.device_used,
            "history": st.history,
            "val_history": st.val_history,
            "partial": st.partial,
            "phase": self.phase_index,
            "phases": [vars(p) for p in self.s.phases],
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng[0],
            "rng_ranks": rng,
            "world_size": self.world.size,
            "skipped": [list(s) for s in self.s.skipped],
            **self.s.extra_train,
        }
        model = {**self.s.model_section, "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()}}
        return build_checkpoint(model, self.s.data_section, train)

    def _save(self, best: bool = False, last: bool = True) -> None:
        """last.pt, and best.pt: the current weights when `best`, else the held best weights, if any.

        A --val-every best inside an epoch writes best.pt alone (last=False): last.pt stays the epoch's start.
        """
        rng = distributed.gather(capture_rng(self.augment_generator))  # every rank takes part
        if not self.world.main:
            return
        checkpoint = self._checkpoint(rng)
        if last:
            save_checkpoint(self.s.run_dir / "last.pt", checkpoint)
        if best:
            save_checkpoint(self.s.run_dir / "best.pt", checkpoint)
        elif self.best_trainable is not None:
            current = self._trainable_weights()
            self._load_trainable(self.best_trainable)
            save_checkpoint(self.s.run_dir / "best.pt", self._checkpoint(rng))  # written before the swap back
            self._load_trainable(current)

    def _trainable_weights(self) -> dict[str, torch.Tensor]:
        return {name: p.detach().clone() for name, p in self.model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def _load_trainable(self, weights: dict[str, torch.Tensor]) -> None:
        parameters = dict(self.model.named_parameters())
        for name, value in weights.items():
            parameters[name].copy_(value)

    # ---- the loop --------------------------------------------------------------------
    def fit(self) -> dict:
        s, cfg, st = self.s, self.cfg, self.state
        if self.world.main:
            cpu = {"cpu_threads": torch.get_num_threads()} if s.device.type == "cpu" else {}
            write_config(s.run_dir, {**cfg.to_dict(), "processes": self.world.size, **cpu, "device_used": self.device_used,
                                     "data": {k: v for k, v in s.data_section.items() if k != "classes"}})
            if st.history:  # the checkpoint's history is the record: a kill after last.pt, before metrics.csv
                write_metrics(s.run_dir, st.history)
            if st.val_history:
                write_val_steps(s.run_dir, st.val_history)
        if st.epoch >= self.total_epochs or st.stopped_early:
            if st.stopped_early:
                self.reporter.note(feedback.early_stop_note(st.stopped_early) + "; the run is finished")
            return self._summary(already_finished=True)
        self.reporter.note(f"note: training on {self.device_used}")
        # Judged on the dataset's train split, as inspect-dataset does: a --limit draw's own chance imbalance is noise.
        # A dataset of only a test split (t10k-* IDX files) trains on a part of that split instead.
        whole = s.dataset.splits.get("train") or s.dataset.splits["test"]
        warning = feedback.train_imbalance_warning(whole.labels, s.num_classes, cfg.balance)
        if warning:
            self.reporter.warn(warning)
        if cfg.tensorboard and self.world.main:
            from cnnkit.engine.tensorboard import TensorBoardLog

            self.tensorboard = TensorBoardLog(s.run_dir, st.history, st.val_history)
        try:
            return self._fit_epochs()
        finally:
            if self.tensorboard is not None:
                self.tensorboard.close()

    def _fit_epochs(self) -> dict:
        s, st = self.s, self.state
        if self.phase_index < 0:
            self._enter_phase(phase_at(s.phases, st.epoch)[0])
        warned = {path for path, _ in s.skipped}  # prepare warned of what loading found
        with StopRequest(lambda name: self.reporter.warn(f"{name}: stopping after this batch ({name} again to abort)")) as stop:
            for epoch in range(st.epoch, self.total_epochs):
                index, _ = phase_at(s.phases, epoch)
                if index != self.phase_index:
                    self._enter_phase(index)
                self._train_epoch(epoch, stop)
                for path, reason in s.skipped:
                    if path not in warned:
                        warned.add(path)
                        self.reporter.skipped([(path, reason)])
                if st.stopped_early:
                    self.reporter.note(feedback.early_stop_note(st.stopped_early))
                    break
        return self._summary()

    def _train_epoch(self, epoch: int, stop: StopRequest) -> None:
        s, cfg, st = self.s, self.cfg, self.state
        device = s.device
        phase = s.phases[self.phase_index]
        self.model.train()
        if s.freeze is not None:
            s.freeze(self.model, phase.frozen)  # frozen BatchNorm stays in eval mode
        loss_sum = torch.tensor(st.partial["loss_sum"], dtype=torch.float64, device=device)
        correct = torch.tensor(st.partial["correct"], dtype=torch.long, device=device)
        seen, seconds = st.partial["seen"], st.partial["seconds"]
        label = f"epoch {epoch + 1}/{self.total_epochs}" + (f" [{phase.name}]" if len(s.phases) > 1 else "")
        self.reporter.start(label, len(s.train_batches), completed=st.step_in_epoch)

        live_loss = 0.0  # the loss the last log line read; checked after it for free (no extra device read)

        def live_stats() -> str:
            nonlocal live_loss
            elapsed = seconds + time.perf_counter() - started
            n = max(1, seen)
            live_loss = float(loss_sum) / n
            return f"loss {live_loss:.4f} acc {int(correct) / n:.2%} {seen / max(elapsed, 1e-9):,.0f} img/s"

        started = time.perf_counter()
        for images, labels in s.train_batches.epoch(epoch, st.step_in_epoch):
            try:
                x = s.transform(images, train=True, generator=self.augment_generator)
            except torch.cuda.OutOfMemoryError:
                raise self.step.out_of_memory_error() from None
            logits, loss = self.step(self.optimizer, x, labels)
            if self.cfg.schedule != "none":  # a constant rate needs no per-batch Python
                self.scheduler.step()
            n = labels.shape[0]
            loss_sum += loss.detach().double() * n
            correct += (logits.detach().argmax(1) == labels).sum()
            seen += n
            st.step_in_epoch += 1
            st.global_step += 1
            self.reporter.advance(live_stats)
            # Under torchrun each rank's own sum differs: ranks must stop together, so they wait for the epoch's end.
            if not math.isfinite(live_loss) and not self.world.enabled:
                self._diverged(epoch, live_loss, f"after batch {st.step_in_epoch} of {len(s.train_batches)}")
            if cfg.val_every and st.global_step % cfg.val_every == 0:
                self._validate_midway(epoch, lambda: self._partial(loss_sum.clone(), correct.clone(), seen,
                                                                   seconds + time.perf_counter() - started))
            if self._should_stop(stop):
                seconds += time.perf_counter() - started
                loss_sum, correct, seen = self._world_sums(loss_sum, correct, seen)
                st.partial = {"loss_sum": float(loss_sum), "correct": int(correct), "seen": seen, "seconds": seconds}
                self._check_finite(epoch, st.partial["loss_sum"] / max(1, seen), f"after batch {st.step_in_epoch}")
                self._save()
                self.reporter.finish(f"{label}: interrupted after batch {st.step_in_epoch}/{len(s.train_batches)}")
                raise TrainingInterrupted(
                    f"saved {s.run_dir / 'last.pt'} after batch {st.step_in_epoch} of epoch {epoch + 1}",
                    f"resume with: cnnkit {cfg.command} --resume {s.run_dir}",
                    signum=stop.signum,
                )
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - started
        loss_sum, correct, seen = self._world_sums(loss_sum, correct, seen)
        val = run_evaluation(self.model, s.val_batches, s.transform, s.num_classes, device=device, amp=s.amp, k=1)
        self._check_finite(epoch, float(loss_sum) / max(1, seen), "at its end", val.loss)
        row = {
            "epoch": epoch + 1,
            "step": st.global_step,
            "phase": phase.name,
            "train_loss": float(loss_sum) / max(1, seen),
            "train_acc": int(correct) / max(1, seen),
            "val_loss": val.loss,
            "val_acc": val.accuracy,
            "lr": self.optimizer.param_groups[0]["lr"],
            "seconds": round(seconds, 3),
            "images_per_s": round(seen / max(seconds, 1e-9), 1),
            "val_bal_acc": val.balanced_accuracy,
        }
        st.history.append(row)
        st.epoch, st.step_in_epoch = epoch + 1, 0
        st.partial = {"loss_sum": 0.0, "correct": 0, "seen": 0, "seconds": 0.0}
        is_best = self._is_best(val.accuracy, st.epoch)
        if st.epoch < self.total_epochs:  # a new phase (finetune's unfreeze) gets its own --patience epochs
            since = max(st.best_epoch, phase_at(s.phases, epoch)[1])
            st.stopped_early = feedback.early_stop(st.epoch, since, st.best_epoch, cfg.patience, st.best_val_acc)
        if s.checkpoint_every_epoch or st.epoch == self.total_epochs or st.stopped_early:
            self._save(best=is_best)
        elif is_best:
            self.best_trainable = self._trainable_weights()
        if self.world.main:
            write_metrics(s.run_dir, st.history)
            if st.val_history:
                write_val_steps(s.run_dir, st.val_history)
            self._plot()
            if self.tensorboard is not None:
                self.tensorboard.epoch(row)
        self._warn_if_stuck(row)
        self.reporter.finish(
            f"{label}: train loss {row['train_loss']:.4f} acc {row['train_acc']:.2%} | "
            f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.2%} | {row['images_per_s']:,.0f} img/s, {seconds:.1f}s"
        )

    # ---- divergence ---------------------------------------------------------------------
    def _check_finite(self, epoch: int, train_loss: float, where: str, val_loss: float = 0.0) -> None:
        """Stop before saving anything if a loss or a trainable weight is NaN or infinite.

        Called where the loop reads metrics anyway (epoch end, validation, Ctrl-C); the weights cost one
        more read there. Every rank sees the same summed losses and the same weights, so all stop together.
        """
        for value in (train_loss, val_loss):
            if not math.isfinite(value):
                self._diverged(epoch, value, where)
        if not self._weights_finite():
            self._diverged(epoch, math.nan, where, what="the weights")

    def _weights_finite(self) -> bool:
        tensors = [p.detach() for p in self.model.parameters() if p.requires_grad]
        tensors += [b for b in self.model.buffers() if b.is_floating_point()]  # BatchNorm statistics
        if not tensors:
            return True
        return bool(torch.stack([t.isfinite().all() for t in tensors]).all())

    def _diverged(self, epoch: int, value: float, where: str, what: str = "the loss") -> None:
        lr = self.s.phases[self.phase_index].lr
        option = "--unfreeze-lr" if self.s.phases[self.phase_index].name == "unfreeze" else "--lr"
        kept = [name for name in ("last.pt", "best.pt") if (self.s.run_dir / name).is_file()]
        saved = (f"{' and '.join(kept)} in {self.s.run_dir} hold the last epoch that was finite" if kept
                 else "no checkpoint was saved")
        self.reporter.finish(f"epoch {epoch + 1}/{self.total_epochs}: diverged {where}")
        raise TrainingDiverged(
            f"training diverged: {what} became {'NaN' if math.isnan(value) else value} in epoch {epoch + 1} ({where}); "
            f"{saved}",
            f"start a new run with a lower {option} (this one used {lr:g}; try {lr / 10:g})",
        )

    STOP_CHECK_EVERY = 20  # under torchrun, ranks agree on Ctrl-C every this many batches

    def _should_stop(self, stop: StopRequest) -> bool:
        if not self.world.enabled:
            return stop.requested
        if self.state.step_in_epoch % self.STOP_CHECK_EVERY:
            return False
        return distributed.any_rank(stop.requested, self.s.device)

    def _world_sums(self, loss_sum: torch.Tensor, correct: torch.Tensor, seen: int):
        """Training loss and accuracy over every rank's images (a no-op in one process)."""
        if not self.world.enabled:
            return loss_sum, correct, seen
        seen_t = torch.tensor(seen, dtype=torch.long, device=self.s.device)
        distributed.all_reduce_sum(loss_sum, correct, seen_t)
        return loss_sum, correct, int(seen_t)

    def _partial(self, loss_sum: torch.Tensor, correct: torch.Tensor, seen: int, seconds: float) -> dict:
        """The unfinished epoch's sums over every rank, as last.pt holds them (copies: the loop's own keep running)."""
        loss_sum, correct, seen = self._world_sums(loss_sum, correct, seen)
        return {"loss_sum": float(loss_sum), "correct": int(correct), "seen": seen, "seconds": seconds}

    def _is_best(self, val_acc: float, epoch: int) -> bool:
        """A strictly higher validation accuracy is a new best (a tie is not: --patience counts it as no progress)."""
        if val_acc <= self.state.best_val_acc:
            return False
        self.state.best_val_acc, self.state.best_epoch = val_acc, epoch
        return True

    def _validate_midway(self, epoch: int, partial) -> None:
        st = self.state
        val = run_evaluation(self.model, self.s.val_batches, self.s.transform, self.s.num_classes,
                             device=self.s.device, amp=self.s.amp, k=1)
        self.model.train()
        if self.s.freeze is not None:
            self.s.freeze(self.model, self.s.phases[self.phase_index].frozen)
        self._check_finite(epoch, 0.0, f"at step {st.global_step}", val.loss)
        entry = {"epoch": epoch + 1, "step": st.global_step, "val_loss": val.loss, "val_acc": val.accuracy,
                 "val_bal_acc": val.balanced_accuracy}
        st.val_history.append(entry)
        if self.tensorboard is not None:
            self.tensorboard.val_step(entry)
        self.reporter.note(f"  step {st.global_step}: val loss {val.loss:.4f} acc {val.accuracy:.2%}")
        if self._is_best(val.accuracy, epoch + 1):  # --val-every results choose best.pt too
            if self.s.checkpoint_every_epoch:
                saved, st.partial = st.partial, partial()  # best.pt records the step it was taken at
                self._save(best=True, last=False)
                st.partial = saved
            else:
                self.best_trainable = self._trainable_weights()

    def _warn_if_stuck(self, row: dict) -> None:
        if self.warned_stuck or self.state.global_step < feedback.STUCK_MIN_STEPS or not feedback.loss_is_stuck(row["train_loss"], row["train_acc"], self._train_labels(),
                                                           self.s.num_classes):
            return
        self.warned_stuck = True
        phase = self.s.phases[self.phase_index]
        option = "--unfreeze-lr" if phase.name == "unfreeze" else "--lr"
        message, hint = feedback.stuck_loss_warning(row["epoch"], row["train_loss"], self.s.num_classes, phase.lr, option)
        self.reporter.warn(f"{message}\nhint: {hint}")

    def _plot(self) -> None:
        from cnnkit.viz.curves import plot_curves

        try:
            # The run's final figure at every epoch: report.html embeds this file instead of drawing it again.
            plot_curves(self.state.history, self.s.run_dir / "curves.png",
                        title=f"{self.s.model_section['name']} on {self.s.dataset.name}", val_history=self.state.val_history,
                        best=self.state.best_epoch or None)
        except OSError as exc:  # a figure is not worth stopping training for
            self.reporter.warn(f"could not write curves.png: {exc}")

    def _summary(self, already_finished: bool = False) -> dict:
        st = self.state
        last = st.history[-1] if st.history else {}
        total_seconds = sum(r["seconds"] for r in st.history)
        images = sum(r["images_per_s"] * r["seconds"] for r in st.history)
        return {
            "run_dir": str(self.s.run_dir),
            "model": self.s.model_section["name"],
            "dataset": self.s.data_section["spec"],
            "epochs": st.epoch,
            "already_finished": already_finished,
            "best_val_acc": st.best_val_acc,
            "val_acc": last.get("val_acc"),
            "val_loss": last.get("val_loss"),
            "val_bal_acc": last.get("val_bal_acc"),
            "best_epoch": st.best_epoch,
            "stopped_early": st.stopped_early,
            "device": self.device_used,
            "train_acc": last.get("train_acc"),
            "train_loss": last.get("train_loss"),
            "train_seconds": round(total_seconds, 2),
            "images_per_s": round(images / total_seconds, 1) if total_seconds else None,
            "skipped_images": len(self.s.skipped),
            "validated_on": self.s.data_section.get("val_source"),
            "processes": self.world.size,
            "global_batch": self.cfg.batch_size * self.world.size,
            "amp": self.s.amp,  # bf16 autocast, as asked or as default_amp chose for this device
        }
