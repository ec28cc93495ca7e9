"""Quantization-aware distillation: the fake-quantized student trains on the teacher's soft targets, then int8."""

from __future__ import annotations

import json

import onnx
import pytest
import torch

from cli_helpers import run_main
from deploy_helpers import make_tiny_runs
from kdistill.config import DeployConfig
from kdistill.deploy.export import ExportJob
from kdistill.deploy.measure import runner_accuracy
from kdistill.deploy.qat import fold_batch_norms, qat_distill
from kdistill.deploy.source import build_teacher_of, load_run


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    return make_tiny_runs(tmp_path_factory.mktemp("runs"))


def test_fold_batch_norms_keeps_the_outputs():
    from kdistill.config import ModelConfig
    from kdistill.models import build_model

    model = build_model(ModelConfig(name="resnet", kwargs={"width": 4, "blocks": [1, 1, 1]}), (1, 8, 8), 10).eval()
    for module in model.modules():  # non-trivial statistics, so folding has something to fold
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    folded = fold_batch_norms(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(folded(x), model(x), atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_qat_distill_gives_an_int8_graph_close_to_the_float_student(tiny_runs):
    run = load_run(tiny_runs.student)
    job = ExportJob.of_run(run)
    teacher = build_teacher_of(run.config, run.splits)
    quantized = qat_distill(job.module, teacher, run.splits, run.config.distill, DeployConfig(qat_epochs=1), 32)
    targets = {str(node.target) for node in quantized.graph.nodes}
    assert any("quantize_per_tensor" in t for t in targets) and any("dequantize_per_channel" in t for t in targets)
    float_accuracy = runner_accuracy(lambda t: job.module(*t), run.splits.test, job.input_names)
    int8_accuracy = runner_accuracy(lambda t: quantized(*t), run.splits.test, job.input_names)
    assert int8_accuracy > float_accuracy - 0.1  # one epoch of QAT + KD from a 1-epoch student


@pytest.mark.slow
def test_deploy_with_qat_publishes_a_qdq_onnx(tiny_runs, monkeypatch, capsys):
    code, out, err = run_main(monkeypatch, capsys, "deploy", str(tiny_runs.student), "--quantize", "int8",
                              "--method", "qat", "--set", "qat_epochs=1")
    assert code == 0, err
    folder = tiny_runs.student / "deploy"
    model = onnx.load(str(folder / "student.int8.onnx"))
    assert {"QuantizeLinear", "DequantizeLinear"} <= {node.op_type for node in model.graph.node}
    record = json.loads((folder / "deploy.json").read_text())
    int8 = [a for a in record["artefacts"] if a["int8"]]
    assert len(int8) == 1 and int8[0]["parity"]["top1_agreement"] >= 0.9
    assert record["options"]["quantize_method"] == "qat" and int8[0]["int8_method"] == "qat"


@pytest.mark.slow
def test_qat_onnx_computes_what_the_converted_int8_graph_computes(tiny_runs):
    """ONNX Runtime's fused int8 kernels vs the converted graph's float emulation of the same quantize/dequantize
    steps: they round intermediate results differently, so the logits differ by a few output steps, no more.
    (The 2.75 once published was not reproduced; see docs/deploy.md, "int8 parity".)"""
    from kdistill.deploy.formats import FORMATS
    from kdistill.deploy.parity import compare_outputs
    from kdistill.deploy.source import eval_split

    run = load_run(tiny_runs.student)
    job = ExportJob.of_run(run)
    quantized = qat_distill(job.module, build_teacher_of(run.config, run.splits), run.splits, run.config.distill,
                            DeployConfig(qat_epochs=1), 32)
    path = tiny_runs.student / "qat-parity.onnx"
    FORMATS.get("onnx")().export(quantized, job.example(), job.input_names, path)
    report = compare_outputs(quantized, FORMATS.get("onnx")().load(path, 1), eval_split(run.splits),
                             job.input_names, 512, path.name, int8=True)
    assert report.max_abs_diff < 0.1 and report.top1_agreement >= 0.99
    assert report.max_abs_diff > 0  # two different int8 implementations: not bit-identical
