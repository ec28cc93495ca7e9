"""The loop's events. Subscribe with any object that has methods of these names (Fabric callbacks: pass them as
``api.train(config, callbacks=[...])`` or ``make_fabric(..., callbacks=[...])``); each method may take any subset of
the keyword arguments listed, the others are filtered out (``fabric.call``). Epochs are numbered from 1.

Every process calls its callbacks; check ``trainer.fabric.is_global_zero`` before writing files. To stop a run early
(a hyper-parameter search pruning a trial), call ``trainer.request_stop(reason)`` from any event: the loop finishes
the epoch (validation, checkpoint) and returns with ``FitResult.stopped_early = reason``.
"""

from __future__ import annotations

EVENTS = {
    "on_fit_start": "trainer, start_epoch, start_step, steps_per_epoch",
    "on_train_epoch_start": "trainer, epoch",
    "on_train_batch_start": "trainer, epoch, step, micro_batches, raw_batches (before the batch transform)",
    "on_train_batch_end": "trainer, epoch, step, global_step, loss, records, skipped",
    "on_validation_end": "trainer, epoch, val_loss, val_accuracy",
    "on_checkpoint": "trainer, path, kind ('step' | 'epoch' | 'signal'), epoch, step",
    "on_train_epoch_end": "trainer, epoch, record, improved",
    "on_fit_end": "trainer, result",
}


class Callback:
    """A base class with every event as a no-op (optional: any object with some of these methods works)."""

    def on_fit_start(self, trainer, start_epoch: int, start_step: int, steps_per_epoch: int) -> None: ...

    def on_train_epoch_start(self, trainer, epoch: int) -> None: ...

    def on_train_batch_start(self, trainer, epoch: int, step: int, micro_batches: list, raw_batches: list) -> None: ...

    def on_train_batch_end(self, trainer, epoch: int, step: int, global_step: int, loss: float, records: list,
                           skipped: bool) -> None: ...

    def on_validation_end(self, trainer, epoch: int, val_loss: float, val_accuracy: float) -> None: ...

    def on_checkpoint(self, trainer, path, kind: str, epoch: int, step: int) -> None: ...

    def on_train_epoch_end(self, trainer, epoch: int, record: dict, improved: bool) -> None: ...

    def on_fit_end(self, trainer, result) -> None: ...
