"""int8 post-training quantization of an ONNX file through ONNX Runtime: dynamic, or static QDQ per-channel.

Static follows ONNX Runtime's recipe: ``quant_pre_process`` (shape inference, graph optimisation), then
``quantize_static`` in the QDQ format with per-channel weight scales, calibrated on training samples.
Dynamic (weights int8 ahead of time, activations scaled per batch at run time) is the usual choice for
transformers, whose activation ranges vary too much from sentence to sentence for one calibrated scale.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import onnx
from torch.utils.data import DataLoader, Dataset, Subset

from kdistill.deploy.errors import QuantizeError
from kdistill.tasks import TASKS, Task

INT8_FORMATS = {"dynamic": ("onnx",), "static": ("onnx",), "qat": ("onnx", "pt2")}
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
KEEP_FLOAT_LAYERS = ("first", "last")
COMPUTE_OPS = ("Conv", "Gemm", "MatMul")  # the layers whose weights int8 stores


@dataclass(frozen=True)
class StaticRecipe:
    """How static int8 calibrates. ``minmax`` takes each activation's full observed range; ``percentile``
    (99.999th) and ``entropy`` clip rare outliers so the common values get finer steps. ``keep_float`` leaves the
    first and/or last weighted layer in fp32: the input layer sees raw pixels, the output layer decides the class."""

    calibration: str = "minmax"
    keep_float: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.calibration not in CALIBRATION_METHODS:
            raise QuantizeError(f"unknown calibration method {self.calibration!r}: "
                                f"{' | '.join(CALIBRATION_METHODS)}")
        unknown = sorted(set(self.keep_float) - set(KEEP_FLOAT_LAYERS))
        if unknown:
            raise QuantizeError(f"keep_float takes {' and/or '.join(KEEP_FLOAT_LAYERS)}, not {unknown}")


def check_int8_supported(task: Task, format_name: str, method: str) -> None:
    """One-line error before any work when int8 is asked where it cannot be delivered (each task declares its
    ``int8_methods``)."""
    if method not in task.int8_methods:
        tasks = [name for name in TASKS.names() if method in TASKS.get(name).int8_methods]
        others = " or ".join(task.int8_methods)
        hint = f"use --method {others}" if others else "export it in float (--quantize none)"
        raise QuantizeError(f"int8 ({method}) is not supported for task {task.name!r} (supported: "
                            f"{', '.join(tasks)}); {hint}")
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


def prepare_for_quantization(float_path: Path, prepared: Path) -> None:
    """``quant_pre_process``; ONNX's own shape inference where ORT's symbolic one cannot follow the graph.

    Why the fallback: the symbolic pass cannot relate the exporter's ``Min(512, sequence)`` position slice to the
    ``sequence`` axis of transformer inputs and stops with "Incomplete symbolic shape inference". It runs in
    ``prepared``'s (temporary) folder because on failure it leaves a model and its weights in the working folder.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source, target = str(Path(float_path).resolve()), str(Path(prepared).resolve())
    with contextlib.chdir(Path(target).parent):
        try:
            quant_pre_process(source, target)
        except Exception:  # noqa: BLE001  (the symbolic pass raises a bare Exception)
            quant_pre_process(source, target, skip_symbolic_shape=True)


def float_layers(model_path: Path, keep_float: tuple[str, ...]) -> list[str]:
    """Names of the first and/or last weighted node (graph order is topological) to leave out of int8."""
    layers = [node.name for node in onnx.load(str(model_path)).graph.node if node.op_type in COMPUTE_OPS]
    if not layers:
        return []
    return [layers[0] if which == "first" else layers[-1] for which in keep_float]


def quantize_onnx(float_path: Path, out_path: Path, method: str, calibration: Dataset | None = None,
                  input_names: tuple[str, ...] = ("input",), samples: int = 256,
                  recipe: StaticRecipe = StaticRecipe()) -> Path:
    """Write the int8 version of ``float_path`` to ``out_path``."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

    with tempfile.TemporaryDirectory() as folder:
        prepared = Path(folder) / "prepared.onnx"
        prepare_for_quantization(float_path, prepared)
        if method == "dynamic":
            quantize_dynamic(str(prepared), str(out_path), weight_type=QuantType.QInt8, per_channel=True)
        elif method == "static":
            if calibration is None:
                raise QuantizeError("static int8 needs calibration samples")
            calibrate = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                         "entropy": CalibrationMethod.Entropy}[recipe.calibration]
            quantize_static(str(prepared), str(out_path), _Calibration(calibration, input_names, samples),
                            quant_format=QuantFormat.QDQ, per_channel=True, weight_type=QuantType.QInt8,
                            activation_type=QuantType.QInt8, calibrate_method=calibrate,
                            nodes_to_exclude=float_layers(prepared, recipe.keep_float))
        else:
            raise QuantizeError(f"unknown ONNX Runtime int8 method {method!r}: dynamic | static")
    return out_path
