"""benchmarks/deploy_fmnist.py refuses bad flags in one error line, before any training starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "benchmarks/deploy_fmnist.py"


@pytest.mark.parametrize(("flags", "message"), [
    (["--prune-steps", "0"], "error: --prune-steps: input should be greater than 0 (got 0)"),
    (["--prune", "1.5"], "error: --prune: input should be less than 1 (got 1.5)"),
    (["--qat-epochs", "0"], "error: --qat-epochs: input should be greater than 0 (got 0)"),
    (["--calibration", "minmax", "--keep-float", "middle"], "error: "),
])
def test_bad_flags_are_one_error_line_before_training(tmp_path, flags, message):
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(SCRIPT), *flags, "--output-dir", str(out)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), done.stderr
    assert not out.exists()  # refused before the output folder (and any training)
