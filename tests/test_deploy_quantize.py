"""int8 through ONNX Runtime: dynamic, and static QDQ per-channel calibrated on training samples."""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto

from cli_helpers import run_main
from deploy_helpers import make_tiny_runs
from kdistill.config import DeployConfig
from kdistill.deploy.bench import ptq_artefact
from kdistill.deploy.errors import QuantizeError
from kdistill.deploy.export import ExportJob, export_job
from kdistill.deploy.formats import FORMATS
from kdistill.deploy.measure import runner_accuracy
from kdistill.deploy.quantize import StaticRecipe, check_int8_supported
from kdistill.deploy.source import load_run
from kdistill.tasks import CausalLMTask

OPTIONS = DeployConfig(parity_samples=128, calibration_samples=64)


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    return make_tiny_runs(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def float_onnx(tiny_runs, tmp_path_factory):
    job = ExportJob.of_run(load_run(tiny_runs.student))
    return job, export_job(job, "onnx", tmp_path_factory.mktemp("onnx") / "student.onnx", OPTIONS)


def int8_initializers(model: onnx.ModelProto) -> list[str]:
    return [t.name for t in model.graph.initializer if t.data_type in (TensorProto.INT8, TensorProto.UINT8)]


@pytest.mark.parametrize("method", ["dynamic", "static"])
def test_int8_keeps_the_float_students_predictions(float_onnx, tmp_path, method):
    job, float_artefact = float_onnx
    artefact = ptq_artefact(job, float_artefact.path, tmp_path / f"student.{method}.onnx", method, OPTIONS)
    assert artefact.int8 and artefact.path.is_file()
    assert artefact.parity.top1_agreement >= OPTIONS.int8_min_agreement
    assert 0 < artefact.parity.max_abs_diff  # really quantized: not the float numbers
    model = onnx.load(str(artefact.path))
    ops = {node.op_type for node in model.graph.node}
    assert int8_initializers(model), "weights are stored in 8 bits"
    assert not model.graph.value_info and model.graph.node[0].name == "n0"  # compacted like float files
    if method == "static":
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ format
        per_channel = [n for n in model.graph.node if n.op_type == "DequantizeLinear"
                       and any(a.name == "axis" for a in n.attribute)]
        assert per_channel, "conv weights carry one scale per output channel"
    else:
        assert ops & {"DynamicQuantizeLinear", "ConvInteger", "MatMulInteger", "DynamicQuantizeMatMul"}
    float_accuracy = runner_accuracy(FORMATS.get("onnx")().load(float_artefact.path, 1), job.splits.test,
                                     job.input_names)
    int8_accuracy = runner_accuracy(FORMATS.get("onnx")().load(artefact.path, 1), job.splits.test, job.input_names)
    assert abs(int8_accuracy - float_accuracy) < 0.05


def test_int8_on_a_format_without_int8_is_one_error_line(tiny_runs, monkeypatch, capsys):
    code, _, err = run_main(monkeypatch, capsys, "deploy", str(tiny_runs.student), "--quantize", "int8",
                            "--format", "pt2")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: int8 (static) is not supported for format 'pt2': use --format onnx")
    assert not (tiny_runs.student / "deploy").exists()


def test_int8_on_a_task_without_int8_is_refused():
    with pytest.raises(QuantizeError, match=r"int8 \(dynamic\) is not supported for task .causal-lm."):
        check_int8_supported(CausalLMTask(), "onnx", "dynamic")


def weight_of_first_and_last_layer(model: onnx.ModelProto) -> list[int]:
    """Data types of the weights feeding the first and last Conv/Gemm (through a DequantizeLinear if int8)."""
    initializers = {t.name: t.data_type for t in model.graph.initializer}
    producers = {out: node for node in model.graph.node for out in node.output}
    layers = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    types = []
    for layer in (layers[0], layers[-1]):
        weight = layer.input[1]
        source = producers.get(weight)
        types.append(initializers[source.input[0]] if source is not None else initializers[weight])
    return types


def test_static_int8_can_keep_the_first_and_last_layer_in_float(float_onnx, tmp_path):
    job, float_artefact = float_onnx
    recipes = {"all": StaticRecipe(), "ends": StaticRecipe("percentile", ("first", "last"))}
    models = {}
    for name, recipe in recipes.items():
        artefact = ptq_artefact(job, float_artefact.path, tmp_path / f"{name}.onnx", "static", OPTIONS, recipe)
        assert artefact.parity.top1_agreement >= OPTIONS.int8_min_agreement
        models[name] = onnx.load(str(artefact.path))
    assert weight_of_first_and_last_layer(models["all"]) == [TensorProto.INT8, TensorProto.INT8]
    assert weight_of_first_and_last_layer(models["ends"]) == [TensorProto.FLOAT, TensorProto.FLOAT]
    assert len(int8_initializers(models["ends"])) < len(int8_initializers(models["all"]))


def test_an_unknown_static_recipe_is_refused():
    with pytest.raises(QuantizeError, match="unknown calibration method 'kl'"):
        StaticRecipe("kl")
    with pytest.raises(QuantizeError, match=r"keep_float takes first and/or last, not \['middle'\]"):
        StaticRecipe(keep_float=("middle",))


def test_the_deploy_section_names_the_static_recipe(float_onnx, tmp_path):
    job, float_artefact = float_onnx
    options = OPTIONS.model_copy(update={"calibration_method": "percentile", "int8_keep_float": ["first", "last"]})
    artefact = ptq_artefact(job, float_artefact.path, tmp_path / "ends.onnx", "static", options)
    assert weight_of_first_and_last_layer(onnx.load(str(artefact.path))) == [TensorProto.FLOAT, TensorProto.FLOAT]


def test_a_bad_recipe_key_in_deploy_is_one_error_line(tiny_runs, monkeypatch, capsys):
    code, _, err = run_main(monkeypatch, capsys, "deploy", str(tiny_runs.student), "--quantize", "int8",
                            "--set", "deploy.int8_keep_float=[middle]")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: ") and "int8_keep_float" in err and "'first' or 'last'" in err
