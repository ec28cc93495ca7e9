"""What a person watching sees: one progress bar over all steps and one line per epoch (numbered from 1); after
training, a bar and a timing line per test pass ("test: student", "test: teacher")."""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator, Sized
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from kdistill.console import cli_console

MAX_EPOCH_LINES = 40  # a 720-epoch run on a tiny labelled set would otherwise print 720 lines


def shows_epoch(epoch: int, epochs: int) -> bool:
    """Whether epoch ``epoch`` (1-based) gets a console line: every epoch of a short run; evenly spaced ones and the
    last of a long run (metrics.jsonl always has every epoch)."""
    every = -(-epochs // MAX_EPOCH_LINES)  # ceil
    return epoch % every == 0 or epoch == epochs or epoch == 1


def epoch_line(record: dict, epochs: int, improved: bool) -> str:
    """'epoch 3/10  train loss 0.4123 acc 88.21%  val loss 0.3512 acc 91.03%  12.3 s  best'."""
    skipped = f"  {record['skipped_steps']} steps skipped (non-finite)" if record.get("skipped_steps") else ""
    return (
        f"epoch {record['epoch']}/{epochs}  train loss {record['train_loss']:.4f} acc "
        f"{100 * record['train_accuracy']:.2f}%  val loss {record['val_loss']:.4f} acc "
        f"{100 * record['val_accuracy']:.2f}%  {record['epoch_time_s']:.1f} s"
        + ("  best" if improved else "")
        + skipped
    )


class ProgressDisplay:
    """The bar (when ``show_bar``) and the epoch lines (when ``show_lines``; only rank 0 shows anything)."""

    def __init__(self, title: str, total: int, show_bar: bool, show_lines: bool) -> None:
        self.title, self.total, self.show_bar, self.show_lines = title, total, show_bar, show_lines
        self.progress: Progress | None = None
        self.task_id = None

    def __enter__(self) -> ProgressDisplay:
        if self.show_bar:
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]:.4f} acc {task.fields[acc]:.4f}"),
                TimeElapsedColumn(),
                console=cli_console(),  # 160 columns when logged: epoch lines stay one line
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

    def line(self, text: str) -> None:
        if not self.show_lines:
            return
        if self.progress is not None:
            self.progress.console.print(text, highlight=False)
        else:
            cli_console().print(text, highlight=False)

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)


# Whether test passes are shown: set by ``evaluation_display`` around a run's final evaluation only, so the same
# prediction loops stay silent elsewhere (kdistill eval's table, compare's teacher pass).
_SHOW_EVALUATION = contextvars.ContextVar("show_evaluation", default=False)


@contextmanager
def evaluation_display(show: bool) -> Iterator[None]:
    """Inside, each ``evaluation_pass`` is shown when ``show`` (``trainer.progress`` on rank 0)."""
    token = _SHOW_EVALUATION.set(show)
    try:
        yield
    finally:
        _SHOW_EVALUATION.reset(token)


def evaluation_pass(batches, label: str, items: int) -> Iterator:
    """Yields ``batches`` unchanged. Inside a shown ``evaluation_display``: a bar labelled ``label`` while it runs
    (on a terminal only: a log gets no bar frames) and then one line, 'test: student  359 items  0.41 s'."""
    if not _SHOW_EVALUATION.get():
        yield from batches
        return
    console = cli_console()
    total = len(batches) if isinstance(batches, Sized) else None
    start = time.perf_counter()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as progress:
        bar = progress.add_task(label, total=total)
        for batch in batches:
            yield batch
            progress.advance(bar)
    console.print(f"{label}  {items} items  {time.perf_counter() - start:.2f} s", highlight=False)
