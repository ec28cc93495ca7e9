"""A training run in its own process, for tests that kill it: ``python train_child.py OUT NAME EPOCHS [--resume]``.

It trains through the public API with a callback that reports each optimiser step in ``OUT/NAME.step`` and sleeps a
little per step, so that a test can send a real signal at a chosen point. The sleep changes no number.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from kdistill import api, load_config

STEP_SLEEP_S = 0.02


class StepReporter:
    def __init__(self, path: Path) -> None:
        self.path = path

    def on_train_batch_end(self, global_step: int) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(str(global_step))
        tmp.replace(self.path)  # the test reads it while we write: never half a number
        time.sleep(STEP_SLEEP_S)


def config(out: Path, name: str, epochs: int):
    return load_config(overrides=[
        f"output_dir={out}", f"name={name}", "data.name=digits", "student={name: mlp, kwargs: {width: 8, depth: 1}}",
        f"trainer.epochs={epochs}", "trainer.batch_size=64", "trainer.checkpoint_every_steps=3",
        "trainer.progress=false", "trainer.accelerator=cpu", "data.augment_crop_padding=1",
    ])


if __name__ == "__main__":
    out, name, epochs = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    api.train(config(out, name, epochs), resume="--resume" in sys.argv, callbacks=[StepReporter(out / f"{name}.step")])
