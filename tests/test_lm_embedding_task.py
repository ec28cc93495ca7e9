"""Sentence-encoder distillation through the ordinary ``api.distill`` / ``kdistill distill`` (task embedding).

Real packaged MiniLM teacher (offline), a few dozen stdlib docstring sentences, max_length 32, one epoch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from cli_helpers import run_main  # noqa: E402
from kdistill import api  # noqa: E402
from kdistill.config import RunConfig, load_config  # noqa: E402
from kdistill.data.base import load_data  # noqa: E402
from kdistill.errors import ConfigError, ModelError  # noqa: E402
from kdistill.lm.corpus import docstring_sentences, write_jsonl  # noqa: E402
from kdistill.lm.embedding import compare_embeddings  # noqa: E402
from kdistill.methods import build_method  # noqa: E402
from kdistill.models import build_model  # noqa: E402
from kdistill.outputs import ModelOutputs  # noqa: E402
from kdistill.tasks.embedding import TEACHER_KEY, EmbeddingTask, embed_dataset  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "embedding_minilm.yaml"


@pytest.fixture(scope="module")
def sentences_file(tmp_path_factory) -> Path:
    return write_jsonl([{"text": s} for s in docstring_sentences(64)], tmp_path_factory.mktemp("text") / "s.jsonl")


def embedding_config(sentences_file: Path, output_dir: Path, *overrides: str) -> RunConfig:
    """The shipped example config, shrunk: 64 sentences, one epoch, CPU."""
    return load_config(CONFIG, [f"data.name=jsonl:{sentences_file}", f"output_dir={output_dir}", "trainer.epochs=1",
                                "trainer.batch_size=8", "trainer.progress=false", "trainer.accelerator=cpu",
                                "data.val_fraction=0.1", "data.test_fraction=0.25", *overrides])


def untrained_cosine(config: RunConfig) -> float:
    """Test cosine to the teacher of the student as built (seeded like the run), on the run's test sentences."""
    import lightning_fabric as L

    config = config.model_copy(update={"data": config.data.model_copy(update={"tokenizer": "minilm"})})
    splits = load_data(config.data)
    teacher = build_model(config.teacher, splits.input_shape, splits.num_classes)
    L.seed_everything(config.seed, verbose=False)
    student = build_model(config.student, splits.input_shape, splits.num_classes)
    return compare_embeddings(embed_dataset(student, splits.test), embed_dataset(teacher, splits.test)
                              )["cosine_to_teacher"]


@pytest.fixture(scope="module")
def layer_run(sentences_file, tmp_path_factory):
    config = embedding_config(sentences_file, tmp_path_factory.mktemp("runs"), "student.kwargs={keep_layers: [0, 5]}",
                              "optim.lr=0.0005")
    return config, api.distill(config)


def test_api_distill_with_a_layer_subset_student(layer_run):
    config, result = layer_run
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary == pytest.approx(result.metrics)
    assert 0.0 < summary["test_cosine_to_teacher"] <= 1.0 and 0.0 < summary["test_top10_overlap"] <= 1.0
    assert summary["test_sentences"] == 16
    assert summary["parameters"] < summary["teacher_parameters"]  # 2 of the teacher's 6 layers
    assert summary["size_mb"] == pytest.approx(summary["parameters"] * 4 / 2**20)
    (record,) = result.history
    assert record["train_embed_mse"] > 0 and record["train_embed_cosine"] > 0 and record["train_task"] == 0.0
    assert 0.0 < record["val_accuracy"] <= 1.0  # the mean cosine to the teacher on the validation sentences
    assert summary["best_val_accuracy"] == pytest.approx(record["val_accuracy"])
    assert len(result.student.encoder.encoder.layer) == 2
    assert not result.student.encoder.embeddings.word_embeddings.weight.requires_grad  # frozen by default
    assert (result.run_dir / "student.safetensors").is_file()
    assert api.entry_from_run(result.run_dir)[1].data.tokenizer == "minilm"  # the config was resolved and saved


def test_distilled_layer_subset_is_closer_to_the_teacher_than_before(layer_run):
    config, result = layer_run
    before = untrained_cosine(config)
    assert result.metrics["test_cosine_to_teacher"] > before + 0.1, (before, result.metrics)  # measured 0.35 -> 0.67


def test_fresh_tiny_bert_student_learns_the_teacher_space(sentences_file, tmp_path):
    config = embedding_config(sentences_file, tmp_path, "student.name=tiny-bert",
                              "student.kwargs={hidden: 32, n_layer: 1, heads: 2}", "optim.lr=0.003",
                              "trainer.epochs=2")
    result = api.distill(config)
    before = untrained_cosine(config)
    assert result.metrics["test_cosine_to_teacher"] > before + 0.15, (before, result.metrics)  # measured 0.00 -> 0.28
    assert result.history[1]["train_loss"] < result.history[0]["train_loss"]
    assert result.student.projection.out_features == 384  # projected to the teacher's width
    assert result.metrics["parameters"] < result.metrics["teacher_parameters"] / 10


def _naive_mse(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    total = torch.zeros(())
    for i in range(len(s)):
        total = total + sum((s[i, d] - t[i, d]) ** 2 for d in range(s.shape[1]))
    return total / len(s)


def _naive_cosine(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    total = torch.zeros(())
    for i in range(len(s)):
        dot = sum(s[i, d] * t[i, d] for d in range(s.shape[1]))
        total = total + 1 - dot / (s[i].pow(2).sum().sqrt() * t[i].pow(2).sum().sqrt())
    return total / len(s)


@pytest.mark.parametrize(("name", "naive"), [("embed_mse", _naive_mse), ("embed_cosine", _naive_cosine)])
def test_embedding_methods_match_naive_references(name, naive):
    g = torch.Generator().manual_seed(0)
    student = torch.randn(5, 7, generator=g, dtype=torch.float64).float().requires_grad_(True)
    teacher = torch.randn(5, 7, generator=g).requires_grad_(True)  # gradients must not reach it
    method = build_method(name, temperature=4.0, num_classes=7)
    (value,) = method(ModelOutputs(student), ModelOutputs(teacher), {}).values()
    reference = naive(student, teacher.detach())
    torch.testing.assert_close(value, reference)
    (grad,) = torch.autograd.grad(value, student)
    (reference_grad,) = torch.autograd.grad(reference, student)
    torch.testing.assert_close(grad, reference_grad)
    assert torch.autograd.grad(value, teacher, allow_unused=True)[0] is None
    with pytest.raises(ValueError, match="one width"):
        method(ModelOutputs(student), ModelOutputs(teacher[:, :6]), {})


def test_methods_combine_with_weights_in_the_step_loss():
    """{embed_mse: w1, embed_cosine: w2}: the trainer's terms are the weighted distances; the task loss is 0."""
    from kdistill.trainer import DistillationModule

    g = torch.Generator().manual_seed(1)
    teacher = F.normalize(torch.randn(4, 6, generator=g), dim=-1)
    student_model = torch.nn.Linear(6, 6)
    methods = {name: build_method(name, 4.0, 6) for name in ("embed_mse", "embed_cosine")}

    class Encoder(torch.nn.Module):  # ids are ignored: a fixed input through a linear map
        def forward(self, input_ids, attention_mask):
            return student_model(torch.eye(6)[:4])

    task = EmbeddingTask()
    batch = {"input_ids": torch.zeros(4, 3, dtype=torch.long), "attention_mask": torch.ones(4, 3, dtype=torch.long),
             TEACHER_KEY: teacher}
    logits, terms = DistillationModule(Encoder(), methods, task)(batch, ModelOutputs(teacher),
                                                                   {"embed_mse": 2.0, "embed_cosine": 0.5})
    torch.testing.assert_close(logits.norm(dim=-1), torch.ones(4))
    torch.testing.assert_close(terms["embed_mse"], 2.0 * (logits - teacher).pow(2).sum(-1).mean())
    torch.testing.assert_close(terms["embed_cosine"], 0.5 * (1 - (logits * teacher).sum(-1)).mean())
    assert task.loss(logits, batch).item() == 0.0 and task.loss(logits, batch).requires_grad
    hits, count = task.correct(logits, batch)
    torch.testing.assert_close(hits, (logits * teacher).sum())
    assert count == 4


def test_cli_distill_with_the_example_config(monkeypatch, capsys, tmp_path):
    sentences = tmp_path / "sentences.jsonl"
    code, out, err = run_main(monkeypatch, capsys, "corpus", str(sentences), "--sentences", "48")
    assert code == 0, err
    lines = sentences.read_text().splitlines()
    assert len(lines) == 48 and all(json.loads(line)["text"] for line in lines)
    code, out, err = run_main(monkeypatch, capsys, "distill", str(CONFIG), "--set", f"data.name=jsonl:{sentences}",
                              "--output-dir", str(tmp_path / "runs"), "--epochs", "1", "--batch-size", "8",
                              "--no-progress", "--accelerator", "cpu", "--set", "data.test_fraction=0.25")
    assert code == 0, err
    assert "test cosine to teacher" in out and "top-10 neighbour overlap" in out
    summary = json.loads((tmp_path / "runs" / "embedding-minilm-l024" / "summary.json").read_text())
    assert summary["test_sentences"] == 12 and summary["test_cosine_to_teacher"] > 0


@pytest.mark.parametrize(("overrides", "error", "message"), [
    (["distill.methods={kd: 1.0}"], ConfigError, r"\['kd'\] do not apply to task embedding.*embed_mse"),
    (["distill.methods={embed_mse: 1.0, fitnet: 1.0}"], ConfigError, r"\['fitnet'\] do not apply"),
    (["distill.alpha=0.5"], ConfigError, "set distill.alpha: 0"),
    (["student.kwargs={keep_layers: [0, 6]}"], ModelError, r"keep_layers \[0, 6\].*0\.\.5"),
    (["student.kwargs={keep_layers: []}"], ModelError, r"non-empty list.*0\.\.5"),
    (["student.name=tiny-bert", "student.kwargs={hidden: 16, heads: 2, embed_dim: 16}"], ConfigError,
     "width 16 but the teacher's 384"),
    (["teacher.name=cache:/nowhere"], ConfigError, "task embedding.*needs the teacher's outputs on new.*'cache'"),
])
def test_bad_embedding_configs_are_clear_errors_before_the_run_folder(sentences_file, tmp_path, overrides, error,
                                                                      message):
    config = embedding_config(sentences_file, tmp_path, *overrides)
    with pytest.raises(error, match=message):
        api.distill(config)
    assert not (tmp_path / config.name).exists()


def test_embedding_task_needs_a_teacher_and_embedding_methods_need_the_task(sentences_file, tmp_path):
    with pytest.raises(ConfigError, match="use `kdistill distill`"):
        api.train(embedding_config(sentences_file, tmp_path))
    from kdistill.config import ModelConfig
    from kdistill.models import save_weights

    weights = save_weights(build_model(ModelConfig(name="mlp"), (1, 8, 8), 10), tmp_path / "teacher.safetensors")
    classification = load_config(overrides=[f"output_dir={tmp_path}", "trainer.epochs=1", "teacher.name=mlp",
                                            f"teacher.weights={weights}", "distill.methods={embed_mse: 1}"])
    with pytest.raises(ConfigError, match=r"\['embed_mse'\] do not apply to task classification \(they are for embed"):
        api.distill(classification)
