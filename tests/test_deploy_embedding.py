"""Sentence-encoder students export too: ONNX fp32 with dynamic batch and sequence axes, and dynamic int8.

A tiny randomly initialised BERT on the byte tokenizer (no download), wrapped as the embedding task sees it.
"""

from __future__ import annotations

import json

import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from kdistill.config import DataConfig, DeployConfig, ModelConfig
from kdistill.data.base import load_data
from kdistill.deploy.bench import bench_model, make_artefacts, ptq_artefact
from kdistill.deploy.errors import QuantizeError
from kdistill.deploy.export import ExportJob, export_job
from kdistill.deploy.quantize import check_int8_supported
from kdistill.deploy.source import TaskModule
from kdistill.models import build_model
from kdistill.tasks.embedding import EmbeddingTask

NAMES = ("input_ids", "attention_mask")
OPTIONS = DeployConfig(parity_samples=32, latency_runs=3, warmup_runs=1, throughput_batch=4)


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> ExportJob:
    folder = tmp_path_factory.mktemp("text")
    lines = [{"text": f"sentence {i}: " + "lorem ipsum dolor " * (i % 4)} for i in range(80)]
    (folder / "s.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    splits = load_data(DataConfig(name=f"jsonl:{folder / 's.jsonl'}", tokenizer="byte", max_length=24,
                                  val_fraction=0.3, test_fraction=0.2))
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="tiny-bert", kwargs={"hidden": 32, "n_layer": 2, "heads": 2,
                                                              "embed_dim": 24}), splits.input_shape,
                        splits.num_classes)
    return ExportJob(TaskModule(model, EmbeddingTask(), NAMES).eval(), splits, NAMES, EmbeddingTask())


@pytest.fixture(scope="module")
def float_onnx(job, tmp_path_factory):
    return export_job(job, "onnx", tmp_path_factory.mktemp("onnx") / "student.onnx", OPTIONS)


def test_embedding_onnx_matches_pytorch_at_other_batch_and_sequence_lengths(job, float_onnx):
    assert float_onnx.parity.max_abs_diff < 1e-4 and float_onnx.parity.mean_cosine > 0.9999
    session = ort.InferenceSession(str(float_onnx.path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(NAMES)
    ids = torch.randint(1, 200, (5, 11))  # neither the example's batch (2) nor its length (24)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0  # a padded sentence: mean pooling must ignore its padding in both runtimes
    got = torch.from_numpy(session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0])
    with torch.no_grad():
        expected = job.module(ids, mask)
    assert got.shape == (5, 24)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_dynamic_int8_embedding_stays_close_to_the_float_student(job, float_onnx, tmp_path, monkeypatch):
    working = tmp_path / "cwd"
    working.mkdir()
    monkeypatch.chdir(working)
    artefact = ptq_artefact(job, float_onnx.path, tmp_path / "student.int8.onnx", "dynamic", OPTIONS)
    assert not list(working.iterdir())  # ORT's failed symbolic shape pass leaves no model in the working folder
    assert artefact.int8 and artefact.int8_method == "dynamic"
    assert artefact.parity.mean_cosine >= OPTIONS.int8_min_agreement  # the embedding parity measure
    assert artefact.parity.mean_cosine < 1.0 and artefact.parity.max_abs_diff > 1e-5  # really int8 numbers
    model = onnx.load(str(artefact.path))
    assert {"DynamicQuantizeLinear", "MatMulInteger"} & {node.op_type for node in model.graph.node}
    assert artefact.path.stat().st_size < 0.6 * float_onnx.path.stat().st_size  # int8 weights


def test_bench_measures_an_embedding_model_in_fp32_and_dynamic_int8(job, tmp_path):
    artefacts = make_artefacts(job, ["pytorch", "onnx", "onnx-int8-dynamic"], tmp_path, "student", OPTIONS)
    rows = bench_model("student", job, artefacts, OPTIONS)
    assert [r["format"] for r in rows] == ["pytorch", "onnx", "onnx-int8-dynamic"]
    for row in rows:
        assert row["latency_ms"] > 0 and row["throughput"] > 0 and row["test_accuracy"] is None
    # float and int8 ONNX agree with the PyTorch embeddings on held-out sentences, closely and loosely
    batch = next(iter(torch.utils.data.DataLoader(job.splits.test, batch_size=16)))
    tensors = tuple(batch[name] for name in NAMES)
    with torch.no_grad():
        expected = job.module(*tensors)
    for artefact, floor in zip(artefacts, (0.9999, 0.9), strict=True):
        session = ort.InferenceSession(str(artefact.path), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(session.run(None, {n: t.numpy() for n, t in zip(NAMES, tensors, strict=True)})[0])
        assert F.cosine_similarity(got, expected, dim=-1).mean() > floor


def test_static_int8_of_an_embedding_model_names_the_method_that_works():
    with pytest.raises(QuantizeError, match=r"int8 \(static\) is not supported for task 'embedding'.*--method dynamic"):
        check_int8_supported(EmbeddingTask(), "onnx", "static")
