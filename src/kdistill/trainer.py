"""One training loop for plain training and distillation, on Lightning Fabric (devices, DDP, mixed precision).

Per step: the teacher (live, cached, ...) gives its outputs for the batch without gradients; the student's
forward and the methods' loss terms run inside ``DistillationModule`` (the one module Fabric wraps, so the
methods' adapters train and synchronise with the student); loss = alpha * task + (1 - alpha) * sum_m w_m L_m.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.loggers import TensorBoardLogger
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader, Dataset

from kdistill.config import RunConfig
from kdistill.errors import ConfigError, NumericalError, RunFolderError
from kdistill.methods.base import Method
from kdistill.models.weights import save_weights
from kdistill.outputs import ModelOutputs
from kdistill.runs import (
    BEST_WEIGHTS,
    LAST_CHECKPOINT,
    METRICS_FILE,
    STUDENT_WEIGHTS,
    append_jsonl,
    find_checkpoint,
    publish_best,
    read_jsonl,
    truncate_metrics,
    verify_checksums,
    write_checksums,
)
from kdistill.taps import FeatureTaps
from kdistill.tasks import Task
from kdistill.teacher import Teacher

BatchTransform = Callable[[nn.Module, dict[str, torch.Tensor]], dict[str, torch.Tensor]]


class DistillationModule(nn.Module):
    """Student plus the methods' trainable parts; ``forward`` returns the student's logits and the loss terms."""

    def __init__(self, student: nn.Module, methods: dict[str, Method], task: Task) -> None:
        super().__init__()
        self.student = student
        self.methods = nn.ModuleDict(methods)
        self.task = task
        taps = sorted({name for m in methods.values() for name in m.student_taps()})
        self.taps = FeatureTaps(student, taps, role="student") if taps else None

    def forward(
        self, batch: dict[str, torch.Tensor], teacher_outputs: ModelOutputs | None, weights: dict[str, float]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = self.task.logits(self.student, batch)
        student_outputs = ModelOutputs(logits, self.taps.collect() if self.taps else {})
        terms: dict[str, torch.Tensor] = {}
        if teacher_outputs is not None:
            for name, method in self.methods.items():
                if weights.get(name, 0.0) > 0:
                    for term, value in method(student_outputs, teacher_outputs, batch).items():
                        terms[term] = weights[name] * value
        return logits, terms


@dataclass
class Phase:
    """The loss mix for a range of epochs (distill.stages, then the main setting)."""

    alpha: float
    weights: dict[str, float]


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1
    best_val_accuracy: float = float("nan")
    epoch_time_s: float = float("nan")


def phase_for_epoch(config: RunConfig, epoch: int, distilling: bool) -> Phase:
    if not distilling:
        return Phase(alpha=1.0, weights={})
    start = 0
    for stage in config.distill.stages:
        if epoch < start + stage.epochs:
            alpha = config.distill.alpha if stage.alpha is None else stage.alpha
            return Phase(alpha=alpha, weights=dict(stage.methods))
        start += stage.epochs
    return Phase(alpha=config.distill.alpha, weights=dict(config.distill.methods))


def make_optimizer(config: RunConfig, params) -> torch.optim.Optimizer:
    o = config.optim
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=True)
    cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
    return cls(params, lr=o.lr, weight_decay=o.weight_decay)


def make_scheduler(config: RunConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
    o, total = config.optim, config.trainer.epochs * steps_per_epoch
    warmup = o.warmup_epochs * steps_per_epoch

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if o.schedule == "cosine":
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        if o.schedule == "step":
            return o.gamma ** ((step // steps_per_epoch) // o.step_size)
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def make_fabric(config: RunConfig, run_dir: Path) -> L.Fabric:
    t = config.trainer
    logger = TensorBoardLogger(root_dir=str(run_dir), name="tensorboard", version="")
    try:
        return L.Fabric(
            accelerator=t.accelerator, devices=t.devices, strategy=t.strategy, precision=t.precision, loggers=[logger]
        )
    except (ValueError, TypeError, RuntimeError) as exc:  # e.g. accelerator cuda on a machine without a GPU
        raise ConfigError(f"trainer accelerator/devices/strategy/precision: {str(exc).splitlines()[0]}") from None


class Trainer:
    """Runs epochs, validates, checkpoints every epoch, resumes from the last checkpoint."""

    def __init__(self, config: RunConfig, run_dir: Path, task: Task, fabric: L.Fabric) -> None:
        self.config = config
        self.run_dir = run_dir
        self.task = task
        self.fabric = fabric
        self.batch_transform: BatchTransform | None = None
        self.student: nn.Module | None = None

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
        ``kdistill.lm.generation.OnPolicyMixer``); its ``set_epoch(epoch)`` is called at each epoch start if defined."""
        config, fabric = self.config, self.fabric
        module = DistillationModule(student, methods or {}, self.task)
        self.batch_transform, self.student = batch_transform, student
        train_set = teacher.train_dataset(train_set) if teacher is not None else train_set
        train_loader = self._loader(train_set, shuffle=True)
        val_loader = fabric.setup_dataloaders(self._loader(val_set, shuffle=False), move_to_device=True)
        optimizer = make_optimizer(config, [p for p in module.parameters() if p.requires_grad])
        steps_per_epoch = math.ceil(len(train_loader) / config.trainer.accumulate_grad_batches)
        scheduler = make_scheduler(config, optimizer, steps_per_epoch)
        wrapped, optimizer = fabric.setup(module, optimizer)
        if teacher is not None:
            teacher.to(fabric.device)

        result, start_epoch = FitResult(), 0
        if resume:
            start_epoch, result = self._load_checkpoint(module, optimizer, scheduler)
        show = config.trainer.progress and fabric.is_global_zero
        total = (config.trainer.epochs - start_epoch) * steps_per_epoch
        try:
            with _ProgressContext(self.run_dir.name, total, show) as bar:
                for epoch in range(start_epoch, config.trainer.epochs):
                    self._run_epoch(
                        epoch, wrapped, module, optimizer, scheduler, train_loader, val_loader, teacher, result, bar
                    )
        finally:
            if module.taps:
                module.taps.remove()
        return result

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        t = self.config.trainer
        generator = torch.Generator().manual_seed(self.config.seed)
        batch_size = t.batch_size if shuffle else t.eval_batch_size
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=t.num_workers,
            generator=generator,
            drop_last=False,
            persistent_workers=t.num_workers > 0,
        )

    def _run_epoch(
        self,
        epoch,
        wrapped,
        module,
        optimizer,
        scheduler,
        train_loader,
        val_loader,
        teacher,
        result,
        bar: _ProgressContext,
    ):
        config, fabric = self.config, self.fabric
        phase = phase_for_epoch(config, epoch, teacher is not None)
        for method in module.methods.values():
            method.set_epoch(epoch)
        if hasattr(self.batch_transform, "set_epoch"):
            self.batch_transform.set_epoch(epoch)
        # Reseed the shuffle per epoch so a resumed run sees the same order as an uninterrupted one.
        train_loader.generator.manual_seed(config.seed * 100_003 + epoch)
        loader = fabric.setup_dataloaders(train_loader, move_to_device=True)
        wrapped.train()
        sums: dict[str, float] = {}
        correct, seen, started = 0, 0, time.perf_counter()
        bar.describe(f"{self.run_dir.name} epoch {epoch + 1}/{config.trainer.epochs}")
        accumulate, micro_batches = config.trainer.accumulate_grad_batches, []
        for index, batch in enumerate(loader):
            micro_batches.append(batch)
            if len(micro_batches) < accumulate and index + 1 < len(loader):
                continue
            for key, value, count in self._optimizer_step(micro_batches, wrapped, optimizer, teacher, phase, epoch):
                if key == "correct":
                    correct, seen = correct + value, seen + count
                else:
                    sums[key] = sums.get(key, 0.0) + value * count
            scheduler.step()
            micro_batches = []
            bar.advance(loss=sums["loss"] / max(seen, 1), acc=correct / max(seen, 1))
        epoch_time = time.perf_counter() - started
        val_loss, val_accuracy = self.validate(module.student, val_loader)
        record = {
            "epoch": epoch,
            "lr": scheduler.get_last_lr()[0],
            "train_accuracy": correct / max(seen, 1),
            **{f"train_{k}": v / max(seen, 1) for k, v in sums.items()},
            "val_loss": val_loss,
            "val_accuracy": val_accuracy,
            "epoch_time_s": epoch_time,
        }
        improved = not val_accuracy <= result.best_val_accuracy  # NaN-safe: the first epoch always counts
        if improved:
            result.best_val_accuracy, result.best_epoch = val_accuracy, epoch
        result.history.append(record)
        result.epoch_time_s = sum(r["epoch_time_s"] for r in result.history) / len(result.history)
        if fabric.is_global_zero:  # metrics before the checkpoint: resume drops lines past the checkpoint's epoch
            append_jsonl(self.run_dir / METRICS_FILE, record)
            fabric.log_dict({k: v for k, v in record.items() if k != "epoch"}, step=epoch)
        self._save_checkpoint(module, optimizer, scheduler, epoch, result, improved)

    def _optimizer_step(self, micro_batches, wrapped, optimizer, teacher, phase: Phase, epoch: int):
        """Forward/backward over the micro-batches of one optimiser step, then step. Yields (key, value, count)
        for logging: per-sample (or per-token) mean values of each micro-batch and its prediction count."""
        fabric, records = self.fabric, []
        if self.batch_transform is not None:  # before counting tokens: the transform may change the targets
            micro_batches = [self.batch_transform(self.student, batch) for batch in micro_batches]
        divisor = self.task.prepare_step(micro_batches)  # e.g. language models: normalise by the step's tokens
        optimizer.zero_grad(set_to_none=True)
        for position, batch in enumerate(micro_batches):
            teacher_outputs = teacher.outputs(batch) if teacher is not None and phase.weights else None
            last = position == len(micro_batches) - 1
            with fabric.no_backward_sync(wrapped, enabled=not last), fabric.autocast():
                logits, terms = wrapped(batch, teacher_outputs, phase.weights)
                task_loss = self.task.loss(logits, batch)
                loss = task_loss
                if terms:
                    loss = phase.alpha * task_loss + (1.0 - phase.alpha) * sum(terms.values())
            if not torch.isfinite(loss):
                raise NumericalError(
                    f"loss became {loss.item()} at epoch {epoch + 1}; lower optim.lr or use precision 32-true"
                )
            with fabric.no_backward_sync(wrapped, enabled=not last):
                fabric.backward(loss / divisor)
            hits, count = self.task.correct(logits.detach(), batch)
            scale = self.task.log_scale(batch, count)
            records.append(("correct", float(hits), count))  # a count, or a sum of scores (embedding: cosines)
            records += [(key, float(value.detach()) * scale, count) for key, value in
                        {"loss": loss, "task": task_loss, **terms}.items()]
        if self.config.trainer.grad_clip:
            fabric.clip_gradients(wrapped, optimizer, max_norm=self.config.trainer.grad_clip)
        optimizer.step()
        return records

    @torch.no_grad()
    def validate(self, student: nn.Module, loader) -> tuple[float, float]:
        """Loss and accuracy of the (unwrapped) student on a loader, summed over all processes."""
        student.eval()
        loss_sum, correct, seen = 0.0, 0, 0
        for batch in loader:
            with self.fabric.autocast():
                logits = self.task.logits(student, batch)
            hits, count = self.task.correct(logits, batch)
            loss_sum += float(self.task.loss(logits, batch)) * count
            correct, seen = correct + float(hits), seen + count
        student.train()
        totals = self.fabric.all_reduce(torch.tensor([loss_sum, correct, seen], dtype=torch.float64), reduce_op="sum")
        loss_sum, correct, seen = totals.tolist()
        return loss_sum / max(seen, 1), correct / max(seen, 1)

    # Checkpoints: student weights (safetensors), method parts (safetensors), training state (weights-only torch).
    def _save_checkpoint(self, module, optimizer, scheduler, epoch, result: FitResult, improved: bool) -> None:
        """Write ``checkpoints/last`` as one unit: built in ``last.tmp`` (``state.pt`` written last marks it
        complete), then swapped in. The best weights so far travel inside it, so "best" always matches "last"."""
        if not self.fabric.is_global_zero:
            return
        last = self.run_dir / LAST_CHECKPOINT
        tmp, old = last.with_name("last.tmp"), last.with_name("last.old")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_weights(module.student, tmp / STUDENT_WEIGHTS)
        if improved:
            shutil.copyfile(tmp / STUDENT_WEIGHTS, tmp / BEST_WEIGHTS)
        elif (last / BEST_WEIGHTS).is_file():
            os.link(last / BEST_WEIGHTS, tmp / BEST_WEIGHTS)  # unchanged: a hard link costs no copy
        if len(list(module.methods.parameters())) or len(list(module.methods.buffers())):
            save_weights(module.methods, tmp / "methods.safetensors")
        state = {
            "epoch": epoch,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": torch.get_rng_state(),
            "best_epoch": result.best_epoch,
            "best_val_accuracy": result.best_val_accuracy,
        }
        torch.save(state, tmp / "state.tmp")
        (tmp / "state.tmp").replace(tmp / "state.pt")
        write_checksums(tmp)  # verified on resume: a damaged file is refused by name
        if last.exists():
            shutil.rmtree(old, ignore_errors=True)
            last.rename(old)
        tmp.rename(last)
        shutil.rmtree(old, ignore_errors=True)
        publish_best(self.run_dir)

    def _load_checkpoint(self, module, optimizer, scheduler) -> tuple[int, FitResult]:
        last = find_checkpoint(self.run_dir)
        if last is None:
            raise RunFolderError(f"no complete checkpoint in {self.run_dir / 'checkpoints'} to resume from")
        if last != self.run_dir / LAST_CHECKPOINT:  # a kill mid-swap: promote the complete one to "last"
            shutil.rmtree(self.run_dir / LAST_CHECKPOINT, ignore_errors=True)
            last = last.rename(self.run_dir / LAST_CHECKPOINT)
        verify_checksums(last)  # before anything is read or published from it
        publish_best(self.run_dir)
        module.student.load_state_dict(load_file(str(last / STUDENT_WEIGHTS)))
        if (last / "methods.safetensors").is_file():
            module.methods.load_state_dict(load_file(str(last / "methods.safetensors")))
        state = torch.load(last / "state.pt", weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        truncate_metrics(self.run_dir / METRICS_FILE, state["epoch"])
        result = FitResult(
            history=read_jsonl(self.run_dir / METRICS_FILE),
            best_epoch=state["best_epoch"],
            best_val_accuracy=state["best_val_accuracy"],
        )
        return state["epoch"] + 1, result


class _ProgressContext:
    """One rich progress bar for the whole run with live loss/accuracy; does nothing when progress is off."""

    def __init__(self, title: str, total: int, show: bool) -> None:
        self.title, self.total, self.show = title, total, show
        self.progress: Progress | None = None
        self.task_id = None

    def __enter__(self) -> _ProgressContext:
        if self.show:
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]:.4f} acc {task.fields[acc]:.4f}"),
                TimeElapsedColumn(),
            )
            self.progress.__enter__()
            self.task_id = self.progress.add_task(self.title, total=self.total, loss=float("nan"), acc=float("nan"))
        return self

    def describe(self, text: str) -> None:
        if self.progress is not None:
            self.progress.update(self.task_id, description=text)

    def advance(self, **fields: float) -> None:  # one optimiser step
        if self.progress is not None:
            self.progress.update(self.task_id, advance=1, **fields)

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)
