"""What a small classification run loads: Lightning Fabric alone, never the `lightning` meta-package, and none of
the language-model stack (transformers), which costs hundreds of MB per command (README, Limitations)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")

# Run in a fresh interpreter, so imports made by other tests cannot hide or fake one. Packages that are not kdistill
# dependencies but linger in environments made before the switch to lightning-fabric are hidden, as a fresh
# `pip install kdistill` leaves them out: lightning_fabric probes torchmetrics whenever it is installed, and
# torchmetrics imports transformers and scipy. An `import lightning` left in kdistill then fails the run.
PROBE = """
import importlib.abc, json, sys

NOT_DEPENDENCIES = {"lightning", "pytorch_lightning", "torchmetrics"}

class HideNonDependencies(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in NOT_DEPENDENCIES:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, HideNonDependencies())
from kdistill import cli
code = 0
try:
    cli.main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code or 0, "modules": sorted(m for m in sys.modules if "." not in m)}))
"""


@pytest.mark.slow
def test_a_digits_run_loads_fabric_but_no_language_model_stack(tmp_path) -> None:
    args = ["train", "--data", "digits", "--student", "mlp", "--student-kwargs", "{width: 8, depth: 1}", "--epochs",
            "1", "--no-progress", "--accelerator", "cpu", "--output-dir", str(tmp_path), "--name", "small"]
    result = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"})
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["code"] == 0, result.stderr
    assert (tmp_path / "small" / "summary.json").is_file()
    modules = set(report["modules"])
    assert {"torch", "lightning_fabric"} <= modules  # the run really trained through Fabric
    assert not modules & {"transformers", "torchmetrics", "lightning", "pytorch_lightning"}
