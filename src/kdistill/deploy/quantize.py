"""int8 post-training quantization of an ONNX file through ONNX Runtime: dynamic, or static QDQ per-channel.

Static follows ONNX Runtime's recipe: ``quant_pre_process`` (shape inference, graph optimisation), then
``quantize_static`` in the QDQ format with per-channel weight scales, calibrated on training samples.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from torch.utils.data import DataLoader, Dataset, Subset

from kdistill.deploy.errors import QuantizeError

INT8_TASKS = ("classification",)  # calibration and top-1 parity are defined for class logits
INT8_FORMATS = {"dynamic": ("onnx",), "static": ("onnx",), "qat": ("onnx", "pt2")}


def check_int8_supported(task_name: str, format_name: str, method: str) -> None:
    """One-line error before any work when int8 is asked where it cannot be delivered."""
    if task_name not in INT8_TASKS:
        raise QuantizeError(f"int8 is not supported for task {task_name!r} yet (supported: {', '.join(INT8_TASKS)}); "
                            "export it in float (--quantize none)")
    formats = INT8_FORMATS[method]
    if format_name not in formats:
        raise QuantizeError(f"int8 ({method}) is not supported for format {format_name!r}: use --format "
                            f"{' or '.join(formats)}, or --quantize none")


class _Calibration:
    """ONNX Runtime's CalibrationDataReader protocol over a data set's first samples."""

    def __init__(self, dataset: Dataset, input_names: tuple[str, ...], samples: int, batch_size: int = 32):
        subset = Subset(dataset, range(min(samples, len(dataset))))
        self._batches = iter(DataLoader(subset, batch_size=batch_size, shuffle=False))
        self._input_names = input_names

    def get_next(self) -> dict | None:
        batch = next(self._batches, None)
        return None if batch is None else {n: batch[n].numpy() for n in self._input_names}


def quantize_onnx(float_path: Path, out_path: Path, method: str, calibration: Dataset | None = None,
                  input_names: tuple[str, ...] = ("input",), samples: int = 256) -> Path:
    """Write the int8 version of ``float_path`` to ``out_path``."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as folder:
        prepared = Path(folder) / "prepared.onnx"
        quant_pre_process(str(float_path), str(prepared))
        if method == "dynamic":
            quantize_dynamic(str(prepared), str(out_path), weight_type=QuantType.QInt8, per_channel=True)
        elif method == "static":
            if calibration is None:
                raise QuantizeError("static int8 needs calibration samples")
            reader = _Calibration(calibration, input_names, samples)
            quantize_static(str(prepared), str(out_path), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                            weight_type=QuantType.QInt8, activation_type=QuantType.QInt8)
        else:
            raise QuantizeError(f"unknown ONNX Runtime int8 method {method!r}: dynamic | static")
    return out_path
