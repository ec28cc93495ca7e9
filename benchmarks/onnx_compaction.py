"""What ``compact_onnx`` saves: a run's student exported to ONNX as the exporter writes it (debug metadata already
stripped) and compacted, bytes of each and the largest |output difference| in ONNX Runtime on its test images.

    .venv/bin/python benchmarks/onnx_compaction.py RUN [RUN ...]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from kdistill.deploy.export import ExportJob
from kdistill.deploy.formats import compact_onnx, strip_debug_metadata
from kdistill.deploy.source import load_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    args = parser.parse_args()
    import onnxruntime as ort

    for run_dir in args.runs:
        job = ExportJob.of_run(load_run(Path(run_dir)))
        with tempfile.TemporaryDirectory() as tmp:
            plain, compact = Path(tmp) / "plain.onnx", Path(tmp) / "compact.onnx"
            program = torch.onnx.export(job.module.eval(), job.example(), dynamo=True, verbose=False,
                                        input_names=list(job.input_names), output_names=["logits"],
                                        external_data=False)
            strip_debug_metadata(program.model)
            program.save(str(plain))
            shutil.copy(plain, compact)
            compact_onnx(compact)
            x = job.example()[0].numpy()  # the export batch (no dynamic axis here)
            outputs = [ort.InferenceSession(str(p)).run(None, {job.input_names[0]: x})[0] for p in (plain, compact)]
            before, after = plain.stat().st_size, compact.stat().st_size
            print(f"{run_dir}: {before:,} -> {after:,} bytes ({100 * (after - before) / before:+.1f}%), "
                  f"max |diff| {float(np.abs(outputs[0] - outputs[1]).max()):.1e}")


if __name__ == "__main__":
    main()
