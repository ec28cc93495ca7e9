"""kdistill export: every format's file reproduces the PyTorch student (parity), bad input is one error line."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch

from cli_helpers import run_main
from deploy_helpers import make_tiny_runs
from kdistill.config import DeployConfig
from kdistill.deploy.errors import ParityError
from kdistill.deploy.export import ExportJob, export_run, partial_path, publish
from kdistill.deploy.formats import FORMATS, executorch_available
from kdistill.deploy.source import load_run


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    return make_tiny_runs(tmp_path_factory.mktemp("runs"))


def test_onnx_export_matches_pytorch_and_has_a_dynamic_batch_axis(tiny_runs, tmp_path):
    import onnxruntime as ort

    artefact = export_run(tiny_runs.student, "onnx", tmp_path)
    assert artefact.path == tmp_path / "student.onnx" and artefact.path.is_file()
    assert artefact.parity.samples > 0 and artefact.parity.max_abs_diff < 1e-4
    assert artefact.parity.top1_agreement == 1.0
    session = ort.InferenceSession(str(artefact.path))
    assert [i.name for i in session.get_inputs()] == ["input"]
    run = load_run(tiny_runs.student)
    for batch in (1, 5):  # exported with batch 2: other sizes run too
        x = torch.stack([run.splits.test[i]["input"] for i in range(batch)])
        got = session.run(None, {"input": x.numpy()})[0]
        np.testing.assert_allclose(got, run.student(x).detach().numpy(), atol=1e-4)



def test_onnx_files_carry_no_exporter_debug_metadata(tiny_runs, tmp_path):
    import onnx

    artefact = export_run(tiny_runs.student, "onnx", tmp_path)
    model = onnx.load(str(artefact.path))
    assert model.graph.node and all(not n.metadata_props and not n.doc_string for n in model.graph.node)
    assert b"stack_trace" not in artefact.path.read_bytes() and b".py" not in artefact.path.read_bytes()


def is_compact(model) -> bool:
    """No stored inner shapes and only short node / initializer names (``n3``, ``t7``)."""
    graph = model.graph
    return (not graph.value_info and all(n.name == f"n{i}" for i, n in enumerate(graph.node))
            and all(len(t.name) <= 6 for t in graph.initializer))


def test_onnx_files_are_compacted_and_keep_their_input_and_output_names(tiny_runs, tmp_path):
    import onnx

    artefact = export_run(tiny_runs.student, "onnx", tmp_path)
    model = onnx.load(str(artefact.path))
    assert is_compact(model)
    assert [i.name for i in model.graph.input] == ["input"] and [o.name for o in model.graph.output] == ["logits"]


def test_compaction_changes_the_file_size_not_the_outputs(tiny_runs, tmp_path):
    import onnx
    import onnxruntime as ort

    from kdistill.deploy.formats import compact_onnx

    student = load_run(tiny_runs.student).student.eval()
    exported = tmp_path / "exported.onnx"  # straight from the exporter, with value_info and module-derived names
    torch.onnx.export(student, (torch.randn(2, 1, 8, 8),), str(exported), dynamo=True, input_names=["input"],
                      output_names=["logits"], external_data=False)
    before = onnx.load(str(exported))
    assert before.graph.value_info and not is_compact(before)
    compacted = tmp_path / "compacted.onnx"
    compacted.write_bytes(exported.read_bytes())
    compact_onnx(compacted)
    onnx.checker.check_model(str(compacted), full_check=True)
    assert is_compact(onnx.load(str(compacted)))
    assert compacted.stat().st_size < exported.stat().st_size
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32)
    outputs = [ort.InferenceSession(str(path)).run(None, {"input": x})[0] for path in (exported, compacted)]
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_pt2_export_matches_pytorch(tiny_runs, tmp_path):
    artefact = export_run(tiny_runs.student, "pt2", tmp_path)
    assert artefact.path.suffix == ".pt2" and artefact.parity.max_abs_diff < 1e-5
    program = torch.export.load(str(artefact.path)).module()
    x = torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(program(x), load_run(tiny_runs.student).student(x), atol=1e-5, rtol=0)


@pytest.mark.slow
@pytest.mark.skipif(not executorch_available(), reason="ExecuTorch not installed (optional extra kdistill[edge])")
def test_pte_export_runs_on_executorch_and_matches_pytorch(tiny_runs, tmp_path):
    artefact = export_run(tiny_runs.student, "pte", tmp_path)
    assert artefact.path.suffix == ".pte" and artefact.parity.max_abs_diff < 1e-4
    assert artefact.parity.top1_agreement == 1.0


def test_pte_without_executorch_is_one_clean_error(tiny_runs, tmp_path, monkeypatch, capsys):
    import kdistill.deploy.formats as formats

    monkeypatch.setattr(formats, "executorch_available", lambda: False)
    code, _, err = run_main(monkeypatch, capsys, "export", str(tiny_runs.student), "--format", "pte",
                            "--output", str(tmp_path))
    assert code == 2 and err.startswith("error: format pte needs ExecuTorch") and "Traceback" not in err
    assert not list(tmp_path.iterdir())


def test_cli_export_prints_the_parity_numbers(tiny_runs, monkeypatch, capsys, tmp_path):
    code, out, err = run_main(monkeypatch, capsys, "export", str(tiny_runs.student), "--output", str(tmp_path))
    assert code == 0, err
    assert "student.onnx" in out and "max |logit diff|" in out and "top-1 agreement 100.00%" in out


def test_parity_failure_names_the_numbers_and_does_not_publish(tiny_runs, tmp_path):
    student, teacher = load_run(tiny_runs.student), load_run(tiny_runs.teacher)
    job = ExportJob.of_run(student)
    final = tmp_path / "student.onnx"
    written = partial_path(final)
    FORMATS.get("onnx")().export(job.module, job.example(), job.input_names, written)
    other = ExportJob.of_run(teacher).module  # a different model: the file cannot match it
    numbers = r"max \|logit diff\| [0-9.]+.*\(tolerance 0.001\); the file was not published"
    with pytest.raises(ParityError, match=numbers):
        publish(job, written, final, "onnx", DeployConfig(), reference=other)
    assert not final.exists() and not written.exists()


@pytest.mark.slow
def test_unsupported_operator_names_it_and_the_fallback(tmp_path, monkeypatch, capsys):
    (tmp_path / "odd.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        class KthNet(nn.Module):  # kthvalue: torch.export traces it, the ONNX exporter has no translation
            def __init__(self, num_classes):
                super().__init__()
                self.linear = nn.Linear(64, num_classes + 1)

            def forward(self, x):
                y = self.linear(x.flatten(1))
                return y[:, 1:] - torch.kthvalue(y, 2, dim=-1, keepdim=True).values

        def build(num_classes):
            return KthNet(num_classes)
    """))
    runs = tmp_path / "runs"
    code, _, err = run_main(monkeypatch, capsys, "train", "--data", "digits", "--student",
                            f"file:{tmp_path / 'odd.py'}:build", "--epochs", "1", "--no-progress",
                            "--output-dir", str(runs), "--name", "odd", "--accelerator", "cpu")
    assert code == 0, err
    code, _, err = run_main(monkeypatch, capsys, "export", str(runs / "odd"), "--format", "onnx")
    assert code == 2
    assert err.startswith("error: the ONNX exporter cannot handle operator aten.kthvalue")
    assert "--format pt2" in err and len(err.strip().splitlines()) == 1
    assert not (runs / "odd" / "deploy" / "student.onnx").exists()
    code, out, err = run_main(monkeypatch, capsys, "export", str(runs / "odd"), "--format", "pt2")
    assert code == 0, err
    assert (runs / "odd" / "deploy" / "student.pt2").is_file()


def test_unknown_format_is_one_error_line(tiny_runs, monkeypatch, capsys):
    code, _, err = run_main(monkeypatch, capsys, "export", str(tiny_runs.student), "--format", "tflite")
    assert code == 2 and err.startswith("error: unknown export format 'tflite'")
