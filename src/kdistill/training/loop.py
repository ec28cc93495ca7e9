"""One training loop for plain training and distillation, on Lightning Fabric (devices, DDP/FSDP, mixed precision).

Per step: the teacher (live, cached, ...) gives its outputs for the batch without gradients, under the same
autocast as the student; the student's forward and the methods' loss terms run inside ``DistillationModule`` (the
one module Fabric wraps, so the methods' adapters train and synchronise with the student);
loss = alpha * task + (1 - alpha) * sum_m w_m L_m. Checkpoints every ``trainer.checkpoint_every_steps`` steps and at
each epoch end; SIGTERM/SIGINT checkpoint and stop; events go to Fabric callbacks (``training.callbacks``).
"""

from __future__ import annotations

import math
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import lightning_fabric as L
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from kdistill.config import RunConfig
from kdistill.errors import CheckpointError
from kdistill.methods.base import Method
from kdistill.runs import METRICS_FILE, append_jsonl, read_jsonl, truncate_metrics
from kdistill.tasks import Task
from kdistill.teachers import Teacher
from kdistill.training.checkpoint import (
    EpochTotals,
    Position,
    gather_rng,
    position_from_state,
    position_state,
    promote_last_checkpoint,
    restore_rng,
    save_checkpoint,
)
from kdistill.training.launch import place_teacher
from kdistill.training.nonfinite import describe_batch, nonfinite_error, nonfinite_parameters, nonfinite_terms
from kdistill.training.parts import DistillationModule, Phase, make_optimizer, make_scheduler, phase_for_epoch
from kdistill.training.progress import ProgressDisplay, epoch_line, shows_epoch
from kdistill.training.sampling import EvalShard, ShardSampler, epoch_seed, real_samples
from kdistill.training.signals import StopSignals, interrupted

BatchTransform = Callable[[nn.Module, dict[str, torch.Tensor]], dict[str, torch.Tensor]]


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)
    best_epoch: int | None = None  # 1-based, like every epoch number a person sees (console, metrics, summary)
    best_val_accuracy: float = float("nan")
    epoch_time_s: float = float("nan")
    stopped_early: str | None = None  # the reason a callback gave to ``Trainer.request_stop``


@dataclass
class _Run:
    """The objects of one fit, handed between the loop's parts."""

    module: DistillationModule
    wrapped: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    sampler: ShardSampler
    loader_generator: torch.Generator
    train_loader: DataLoader
    val_loader: DataLoader
    teacher: Teacher | None
    steps_per_epoch: int
    result: FitResult
    display: ProgressDisplay | None = None
    signals: StopSignals | None = None


class Trainer:
    """Runs epochs, validates, checkpoints (every N steps and each epoch), resumes, stops cleanly on signals."""

    def __init__(self, config: RunConfig, run_dir: Path, task: Task, fabric: L.Fabric) -> None:
        self.config = config
        self.run_dir = run_dir
        self.task = task
        self.fabric = fabric
        self.batch_transform: BatchTransform | None = None
        self.student: nn.Module | None = None
        self.stop_reason: str | None = None

    def request_stop(self, reason: str) -> None:
        """Stop after the current epoch (validated and checkpointed); for callbacks, e.g. a search's pruning."""
        self.stop_reason = reason

    def fit(
        self,
        student: nn.Module,
        train_set: Dataset,
        val_set: Dataset,
        teacher: Teacher | None = None,
        methods: dict[str, Method] | None = None,
        resume: bool = False,
        batch_transform: BatchTransform | None = None,
    ) -> FitResult:
        """``batch_transform(student, micro_batch) -> micro_batch`` (optional) rewrites each training micro-batch
        before the teacher and student see it and before the step's tokens are counted (e.g. GKD's on-policy mix,
        ``kdistill.lm.generation.OnPolicyMixer``); its ``set_epoch(epoch)`` is called at each epoch start if defined,
        and its ``state_dict``/``load_state_dict`` (if defined) travel in the checkpoints."""
        self.batch_transform, self.student = batch_transform, student
        run = self._setup(student, train_set, val_set, teacher, methods or {})
        position = self._resume(run) if resume else Position()
        run.result = FitResult(best_epoch=position.best_epoch, best_val_accuracy=position.best_val_accuracy,
                               history=read_jsonl(self.run_dir / METRICS_FILE) if resume else [])
        t, fabric = self.config.trainer, self.fabric
        total = (t.epochs - position.epoch) * run.steps_per_epoch - position.step
        fabric.call("on_fit_start", trainer=self, start_epoch=position.epoch + 1, start_step=position.step,
                    steps_per_epoch=run.steps_per_epoch)
        show = fabric.is_global_zero
        try:
            with ProgressDisplay(self.run_dir.name, total, t.progress and show, show) as run.display, \
                    StopSignals() as run.signals:
                for epoch in range(position.epoch, t.epochs):
                    resumed = epoch == position.epoch
                    self._run_epoch(run, epoch, position.step if resumed else 0,
                                    position.totals if resumed else EpochTotals())
                    if self.stop_reason is not None:
                        run.result.stopped_early = self.stop_reason
                        break
        finally:
            if run.module.taps:
                run.module.taps.remove()
        fabric.call("on_fit_end", trainer=self, result=run.result)
        return run.result

    def _setup(self, student, train_set, val_set, teacher, methods) -> _Run:
        config, fabric, t = self.config, self.fabric, self.config.trainer
        module = DistillationModule(student, methods, self.task)
        train_set = teacher.train_dataset(train_set) if teacher is not None else train_set
        sampler = ShardSampler(len(train_set), config.seed, fabric.global_rank, fabric.world_size)
        generator = torch.Generator()  # the loader's own: creating an epoch's iterator must not draw from torch's RNG
        train_loader = DataLoader(train_set, batch_size=t.batch_size, sampler=sampler, num_workers=t.num_workers,
                                  generator=generator, persistent_workers=t.num_workers > 0,
                                  collate_fn=getattr(train_set, "collate_fn", None))  # batch-level data sets
        if fabric.world_size > 1:  # every sample counted once, with the same number of batches on every process
            val_set = EvalShard(val_set, fabric.global_rank, fabric.world_size)
        val_loader = DataLoader(val_set, batch_size=t.eval_batch_size, shuffle=False, num_workers=t.num_workers,
                                persistent_workers=t.num_workers > 0)
        steps_per_epoch = math.ceil(len(train_loader) / t.accumulate_grad_batches)
        optimizer = make_optimizer(config, [p for p in module.parameters() if p.requires_grad])
        scheduler = make_scheduler(config, optimizer, steps_per_epoch)
        wrapped, optimizer = fabric.setup(module, optimizer)
        train_loader, val_loader = fabric.setup_dataloaders(train_loader, val_loader, use_distributed_sampler=False)
        if teacher is not None:
            place_teacher(fabric, teacher)
        return _Run(module, wrapped, optimizer, scheduler, sampler, generator, train_loader, val_loader, teacher,
                    steps_per_epoch, FitResult())

    def _run_epoch(self, run: _Run, epoch: int, first_step: int, totals: EpochTotals) -> None:
        config, fabric = self.config, self.fabric
        accumulate = config.trainer.accumulate_grad_batches
        phase = phase_for_epoch(config, epoch, run.teacher is not None)
        for method in run.module.methods.values():
            method.set_epoch(epoch)
        restored = first_step > 0 and hasattr(self.batch_transform, "load_state_dict")  # mid-epoch: state loaded
        if hasattr(self.batch_transform, "set_epoch") and not restored:
            self.batch_transform.set_epoch(epoch)
        run.sampler.start_epoch(epoch, skip=first_step * accumulate * config.trainer.batch_size)
        if hasattr(run.train_loader.dataset, "set_epoch"):  # e.g. a cache's replayed views, drawn per epoch
            run.train_loader.dataset.set_epoch(epoch)
        run.loader_generator.manual_seed(epoch_seed(config.seed, epoch))  # worker seeds: the same in a resumed run
        fabric.call("on_train_epoch_start", trainer=self, epoch=epoch + 1)
        run.wrapped.train()
        started = time.perf_counter() - totals.elapsed_s
        assert run.display is not None
        run.display.describe(f"{self.run_dir.name} epoch {epoch + 1}/{config.trainer.epochs}")
        step, micro_batches, remaining = first_step, [], len(run.train_loader)
        for index, batch in enumerate(run.train_loader):
            micro_batches.append(batch)
            if len(micro_batches) < accumulate and index + 1 < remaining:
                continue
            step += 1
            self._train_step(run, micro_batches, phase, epoch, step, totals)
            micro_batches = []
            totals.elapsed_s = time.perf_counter() - started
            self._maybe_checkpoint(run, epoch, step, totals)
        totals.elapsed_s = time.perf_counter() - started
        self._end_epoch(run, epoch, totals)

    def _train_step(self, run: _Run, micro_batches: list, phase: Phase, epoch: int, step: int,
                    totals: EpochTotals) -> None:
        raw = list(micro_batches)
        if self.batch_transform is not None:  # before counting tokens: the transform may change the targets
            micro_batches = [self.batch_transform(self.student, batch) for batch in micro_batches]
        self.fabric.call("on_train_batch_start", trainer=self, epoch=epoch + 1, step=step,
                         micro_batches=micro_batches, raw_batches=raw)
        records = self._optimizer_step(micro_batches, run.wrapped, run.optimizer, run.teacher, phase, epoch, step)
        run.scheduler.step()
        if records is None:
            totals.skipped_steps += 1
        for key, value, count in records or []:
            if key == "correct":
                totals.correct, totals.scored = totals.correct + value, totals.scored + count
            else:
                totals.seen += count if key == "loss" else 0
                totals.sums[key] = totals.sums.get(key, 0.0) + value * count
        loss = totals.sums.get("loss", float("nan")) / max(totals.seen, 1)
        assert run.display is not None
        run.display.advance(loss=loss, acc=totals.correct / max(totals.scored, 1))
        self.fabric.call("on_train_batch_end", trainer=self, epoch=epoch + 1, step=step,
                         global_step=epoch * run.steps_per_epoch + step, loss=loss, records=records or [],
                         skipped=records is None)

    def _optimizer_step(self, micro_batches, wrapped, optimizer, teacher, phase: Phase, epoch: int, step: int = 0):
        """Forward/backward over the micro-batches of one optimiser step, then step. Returns (key, value, count)
        records for logging: per-sample (or per-token) means of each micro-batch and its prediction count; None
        when the step was skipped (a non-finite loss or gradient with ``trainer.on_nonfinite: skip``)."""
        fabric, records, bad_loss = self.fabric, [], None
        divisor = self._step_divisor(micro_batches)
        optimizer.zero_grad(set_to_none=True)
        for position, batch in enumerate(micro_batches):
            last = position == len(micro_batches) - 1
            with fabric.autocast():  # the teacher runs at the student's precision
                teacher_outputs = teacher.outputs(batch) if teacher is not None and phase.weights else None
            with fabric.no_backward_sync(wrapped, enabled=not last), fabric.autocast():
                logits, terms = wrapped(batch, teacher_outputs, phase.weights)
                task_loss = self.task.loss(logits, batch)
                loss = task_loss
                if terms:
                    loss = phase.alpha * task_loss + (1.0 - phase.alpha) * sum(terms.values())
            named = {"loss": loss, "task": task_loss, **terms}
            if bad_loss is None and nonfinite_terms(named):
                bad_loss = (nonfinite_terms(named), batch)
            with fabric.no_backward_sync(wrapped, enabled=not last):  # every process runs it, or DDP would hang
                fabric.backward(loss / divisor)
            hits, count = self.task.correct(logits.detach(), batch)
            scale = self.task.log_scale(batch, count)
            # a count, or a sum of scores (embedding: cosines), over the labelled predictions only
            records.append(("correct", float(hits), self.task.scored(batch, count)))
            records += [(key, float(value.detach()) * scale, count) for key, value in named.items()]
        bad_gradients = nonfinite_parameters(wrapped, gradients=True)
        if self._any_process(bad_loss is not None or bool(bad_gradients)):
            if bad_loss is not None:
                return self._nonfinite("loss", bad_loss[0], bad_loss[1], epoch, step, optimizer)
            return self._nonfinite("gradient", bad_gradients or ["on another process"], micro_batches[-1], epoch,
                                   step, optimizer)
        if self.config.trainer.grad_clip:
            fabric.clip_gradients(wrapped, optimizer, max_norm=self.config.trainer.grad_clip)
        optimizer.step()
        bad = nonfinite_parameters(wrapped, gradients=False)
        if self._any_process(bool(bad)):  # an update cannot be undone: always stop
            raise nonfinite_error("weights after the update", bad or ["on another process"],
                                  describe_batch(micro_batches[-1], epoch, step), self.config)
        return records

    def _step_divisor(self, micro_batches: list) -> float:
        """The divisor of each micro-batch loss. Per-token tasks count the step's tokens on every process: the sum
        over processes divided by their number, since DDP averages the gradients (loss = global sum / tokens)."""
        divisor = self.task.prepare_step(micro_batches)
        key = "step_tokens"
        if self.fabric.world_size > 1 and key in micro_batches[0]:
            local = micro_batches[0][key].to(self.fabric.device, torch.float64)
            total = self.fabric.all_reduce(local, reduce_op="sum")
            for batch in micro_batches:
                batch[key] = (total / self.fabric.world_size).to(batch[key].dtype)
        return divisor

    def _any_process(self, flag: bool) -> bool:
        """True when ``flag`` is set on any process (so all of them stop or skip together)."""
        if self.fabric.world_size == 1:
            return flag
        value = torch.tensor(float(flag), device=self.fabric.device)
        return bool(self.fabric.all_reduce(value, reduce_op="sum") > 0)

    def _nonfinite(self, kind: str, names: list[str], batch, epoch: int, step: int, optimizer) -> None:
        if self.config.trainer.on_nonfinite == "skip":
            optimizer.zero_grad(set_to_none=True)
            return None
        raise nonfinite_error(kind, names, describe_batch(batch, epoch, step), self.config)

    @torch.no_grad()
    def validate(self, model: nn.Module, loader) -> tuple[float, float]:
        """Loss and accuracy over the whole validation set, summed over all processes (each sample once).

        ``model``: the Fabric-wrapped ``DistillationModule`` (so sharded students work), or a bare student."""
        was_training = model.training
        model.eval()
        loss_sum, correct, seen = 0.0, 0.0, 0
        for batch in loader:
            with self.fabric.autocast():
                if isinstance(model, DistillationModule) or isinstance(getattr(model, "module", None),
                                                                         DistillationModule):
                    logits, _ = model(batch, None, {})
                else:
                    logits = self.task.logits(model, batch)
            batch, logits = real_samples(batch, logits)
            if logits.shape[0] == 0:
                continue
            hits, count = self.task.correct(logits, batch)
            loss_sum += float(self.task.loss(logits, batch)) * count
            correct, seen = correct + float(hits), seen + count
        model.train(was_training)
        totals = torch.tensor([loss_sum, correct, seen], dtype=torch.float64, device=self.fabric.device)
        loss_sum, correct, seen = self.fabric.all_reduce(totals, reduce_op="sum").tolist()
        return loss_sum / max(seen, 1), correct / max(seen, 1)

    def _end_epoch(self, run: _Run, epoch: int, totals: EpochTotals) -> None:
        fabric, result = self.fabric, run.result
        val_loss, val_accuracy = self.validate(run.wrapped, run.val_loader)
        totals = self._all_processes(totals)
        seen = max(totals.seen, 1)
        fabric.call("on_validation_end", trainer=self, epoch=epoch + 1, val_loss=val_loss, val_accuracy=val_accuracy)
        record = {
            "epoch": epoch + 1,
            "lr": run.scheduler.get_last_lr()[0],
            "train_accuracy": totals.correct / max(totals.scored, 1),
            **{f"train_{k}": v / seen for k, v in totals.sums.items()},
            "val_loss": val_loss,
            "val_accuracy": val_accuracy,
            "epoch_time_s": totals.elapsed_s,
        }
        if totals.skipped_steps:
            record["skipped_steps"] = totals.skipped_steps
        finite = math.isfinite(val_loss) and math.isfinite(val_accuracy)  # NaN weights are never "best"
        improved = finite and not val_accuracy <= result.best_val_accuracy  # NaN-safe: the first finite one counts
        if improved:
            result.best_val_accuracy, result.best_epoch = val_accuracy, epoch + 1
        result.history.append(record)
        result.epoch_time_s = sum(r["epoch_time_s"] for r in result.history) / len(result.history)
        assert run.display is not None
        if shows_epoch(record["epoch"], self.config.trainer.epochs):
            run.display.line(epoch_line(record, self.config.trainer.epochs, improved))
        if fabric.is_global_zero:  # metrics before the checkpoint: resume drops lines past the checkpoint's epoch
            append_jsonl(self.run_dir / METRICS_FILE, record)
            fabric.log_dict({k: v for k, v in record.items() if k != "epoch"}, step=epoch + 1)
        path = self._checkpoint(run, Position(epoch + 1, 0), improved)
        fabric.call("on_checkpoint", trainer=self, path=path, kind="epoch", epoch=epoch + 1, step=0)
        fabric.call("on_train_epoch_end", trainer=self, epoch=epoch + 1, record=record, improved=improved)
        self._stop_if_signalled(run, f"the end of epoch {epoch + 1}", path)

    def _all_processes(self, totals: EpochTotals) -> EpochTotals:
        """The epoch's training sums over every process (padding repeats included: a few samples at most)."""
        if self.fabric.world_size == 1:
            return totals
        keys = sorted(totals.sums)
        local = torch.tensor([totals.correct, totals.seen, totals.scored, *(totals.sums[k] for k in keys)],
                             dtype=torch.float64, device=self.fabric.device)
        summed = self.fabric.all_reduce(local, reduce_op="sum").tolist()
        return EpochTotals(dict(zip(keys, summed[3:], strict=True)), summed[0], int(summed[1]), totals.skipped_steps,
                           totals.elapsed_s, int(summed[2]))

    def _maybe_checkpoint(self, run: _Run, epoch: int, step: int, totals: EpochTotals) -> None:
        every = self.config.trainer.checkpoint_every_steps
        signalled = self._any_process(run.signals is not None and run.signals.received is not None)
        due = every is not None and (epoch * run.steps_per_epoch + step) % every == 0
        if not (signalled or (due and step < run.steps_per_epoch)):  # the epoch's last step: the epoch checkpoint
            return
        path = self._checkpoint(run, Position(epoch, step, totals), improved=False)
        kind = "signal" if signalled else "step"
        self.fabric.call("on_checkpoint", trainer=self, path=path, kind=kind, epoch=epoch + 1, step=step)
        if signalled:
            self._stop_if_signalled(run, f"epoch {epoch + 1}, step {step} of {run.steps_per_epoch}", path, force=True)

    def _stop_if_signalled(self, run: _Run, where: str, path: Path, force: bool = False) -> None:
        received = run.signals.received if run.signals is not None else None
        if force or self._any_process(received is not None):
            raise interrupted(received or 15, where, path)

    def _checkpoint(self, run: _Run, position: Position, improved: bool) -> Path:
        result = run.result
        position.best_epoch, position.best_val_accuracy = result.best_epoch, result.best_val_accuracy
        state = {
            "module": run.wrapped,
            "optimizer": run.optimizer,
            "scheduler": run.scheduler,
            "position": position_state(position),
            "rng": gather_rng(self.fabric),
            "transform": self.batch_transform.state_dict() if hasattr(self.batch_transform, "state_dict") else {},
        }
        return save_checkpoint(self.fabric, self.run_dir, state, run.module, improved)

    def _resume(self, run: _Run) -> Position:
        fabric = self.fabric
        last = promote_last_checkpoint(fabric, self.run_dir)
        state = {"module": run.wrapped, "optimizer": run.optimizer, "scheduler": run.scheduler}
        try:
            rest = fabric.load(last / "state.pt", state, strict=True, weights_only=True)
        except (KeyError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
            raise CheckpointError(f"cannot resume from {last}: {str(exc).strip().splitlines()[0]} (a checkpoint "
                                  "from another kdistill version or another model)") from None
        restore_rng(rest["rng"][fabric.global_rank])
        if rest.get("transform") and hasattr(self.batch_transform, "load_state_dict"):
            self.batch_transform.load_state_dict(rest["transform"])
        position = position_from_state(rest["position"])
        if fabric.is_global_zero:
            truncate_metrics(self.run_dir / METRICS_FILE, position.epoch)
        fabric.barrier()
        return position


__all__ = ["BatchTransform", "DistillationModule", "FitResult", "Phase", "Trainer", "make_optimizer",
           "make_scheduler", "phase_for_epoch"]
