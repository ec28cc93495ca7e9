"""kdistill bench and the whole chain: every figure of the table is there, labelled with what measured it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_helpers import run_main
from deploy_helpers import make_tiny_runs
from kdistill.deploy.bench import INT8_CPU_FLAGS
from kdistill.deploy.measure import peak_memory_during

FIELDS = {"model", "format", "artefact", "parameters", "flops", "size_bytes", "peak_memory_bytes", "latency_ms",
          "latency_p95_ms", "throughput", "throughput_batch", "test_accuracy", "threads"}


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    return make_tiny_runs(tmp_path_factory.mktemp("runs"))


@pytest.mark.slow
def test_bench_measures_teacher_and_student_in_each_format(tiny_runs, tmp_path, monkeypatch, capsys):
    code, out, err = run_main(monkeypatch, capsys, "bench", str(tiny_runs.student), "--formats",
                              "pytorch,onnx,onnx-int8", "--threads", "1", "--latency-runs", "5",
                              "--throughput-batch", "8", "--output", str(tmp_path))
    assert code == 0, err
    table = json.loads((tmp_path / "bench.json").read_text())
    rows = table["rows"]
    assert [(r["model"], r["format"]) for r in rows] == [
        (m, f) for m in ("teacher", "student") for f in ("pytorch", "onnx", "onnx-int8")]
    for row in rows:
        assert set(row) == FIELDS
        assert row["parameters"] > 0 and row["flops"] > 0 and row["size_bytes"] > 0
        assert 0 < row["latency_ms"] <= row["latency_p95_ms"] and row["throughput"] > 0
        assert row["throughput_batch"] == 8 and row["threads"] == 1 and 0 <= row["test_accuracy"] <= 1
    by_key = {(r["model"], r["format"]): r for r in rows}
    # One model, three runtimes: the same parameters and FLOPs, and float ONNX predicts what PyTorch does.
    assert by_key[("student", "onnx")]["flops"] == by_key[("student", "pytorch")]["flops"]
    assert by_key[("student", "onnx")]["test_accuracy"] == pytest.approx(by_key[("student", "pytorch")]
                                                                        ["test_accuracy"], abs=0.01)
    env = table["environment"]
    assert env["threads"] == 1 and env["versions"]["torch"] and env["versions"]["onnxruntime"] and env["machine"]
    assert env["int8_cpu_flags"] is None or set(env["int8_cpu_flags"]) <= set(INT8_CPU_FLAGS)  # None: no cpuinfo
    assert "samples/s" in out and "teacher" in out
    assert "1 thread(s) per runtime" in (tmp_path / "bench.md").read_text()


def kernel_resets_peak_rss() -> bool:
    """Checked here independently of the code under test: can this process reset its VmHWM?"""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return "VmHWM" in Path("/proc/self/status").read_text()


def test_peak_memory_sees_a_large_allocation_or_says_it_cannot():
    import numpy as np

    grown = peak_memory_during(lambda: np.ones(64 * 1024 * 1024 // 8).sum())  # 64 MiB, touched
    if kernel_resets_peak_rss():
        assert grown is not None and grown >= 48 * 1024 * 1024
    else:  # no counter: "unknown" (None, shown as "-"), never a made-up 0
        assert grown is None


@pytest.mark.slow
def test_deploy_chain_prunes_quantizes_exports_and_benches(tiny_runs, monkeypatch, capsys):
    code, out, err = run_main(monkeypatch, capsys, "deploy", str(tiny_runs.student), "--prune", "0.5",
                              "--prune-epochs", "1", "--quantize", "int8", "--format", "onnx")
    assert code == 0, err
    folder = tiny_runs.student / "deploy"
    assert (folder / "pruned.onnx").is_file() and (folder / "pruned.int8.onnx").is_file()
    assert (folder / "pruned" / "student.safetensors").is_file()
    rows = json.loads((folder / "bench.json").read_text())["rows"]
    formats = {(r["model"], r["format"]) for r in rows}
    assert {("teacher", "pytorch"), ("teacher", "onnx"), ("student", "pytorch"), ("student", "onnx"),
            ("student (pruned)", "pytorch"), ("student (pruned)", "onnx"), ("student (pruned)", "onnx-int8")} == formats
    params = {(r["model"], r["format"]): r["parameters"] for r in rows}
    assert params[("student (pruned)", "onnx")] <= params[("student", "onnx")] // 2
    record = json.loads((folder / "deploy.json").read_text())
    assert record["prune_steps"][0]["share_removed"] >= 0.5
    assert "pruned run folder" in out and "bench.md" in out
