"""Token models export too: a causal LM to ONNX with its input names, checked against PyTorch."""

from __future__ import annotations

import json

import onnxruntime as ort
import pytest

from kdistill import api
from kdistill.config import DataConfig, ModelConfig, RunConfig, TrainerConfig
from kdistill.deploy.export import export_run


def write_corpus(folder, records: int = 40) -> DataConfig:
    lines = [{"text": f"line {i}: " + "abcdef"[: 1 + i % 6] * (1 + i % 3)} for i in range(records)]
    corpus = folder / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return DataConfig(name=f"jsonl:{corpus}", max_length=16, val_fraction=0.1, test_fraction=0.2)


@pytest.mark.slow
def test_causal_lm_exports_to_onnx_with_named_token_inputs(tmp_path):
    config = RunConfig(name="lm", task="causal-lm", output_dir=str(tmp_path / "runs"), data=write_corpus(tmp_path),
                       student=ModelConfig(name="tiny-gpt2", kwargs={"hidden": 16, "n_layer": 1, "heads": 2}),
                       trainer=TrainerConfig(epochs=1, batch_size=8, accelerator="cpu", progress=False))
    run = api.train(config)
    artefact = export_run(run.run_dir, "onnx", tmp_path / "out")
    assert artefact.parity.max_abs_diff < 1e-3 and artefact.parity.top1_agreement == 1.0
    session = ort.InferenceSession(str(artefact.path))
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]
    assert session.get_outputs()[0].shape[-1] == run.student.config.vocab_size  # (B, L, V) logits

