"""The ``embedding`` task: sentence-encoder distillation through the ordinary ``kdistill distill`` / ``api.distill``.

A model is called as ``model(input_ids=..., attention_mask=...)``; its "logits" are (B, D) L2-normalised
sentence embeddings (an ``EmbeddingModel`` output, or a ``transformers`` encoder's ``last_hidden_state``
mean-pooled over the attention mask, as MiniLM does). There are no hard labels: the task loss is 0, so the run
requires ``distill.alpha: 0`` (and stage alphas 0) and learns from the embedding methods alone (``embed_mse``,
``embed_cosine``); logit and feature methods are refused.

The teacher is run once over every split before training (``EmbeddingTask.prepare_run``): its embeddings travel in the
batches (``batch["teacher_embedding"]``) and serve as an offline teacher for training, as the validation target
("accuracy" of this task = mean cosine to the teacher, so the best checkpoint is the closest student; val_loss is
the task loss, 0) and for the final test metrics (cosine to the teacher, top-10 neighbour overlap:
``kdistill.lm.embedding.compare_embeddings``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from kdistill.errors import ConfigError
from kdistill.lm.embedding import compare_embeddings, mean_pool
from kdistill.methods.base import ANY_INPUT, LOGITS
from kdistill.outputs import ModelOutputs
from kdistill.tasks.base import Task

TEACHER_KEY = "teacher_embedding"  # batch key: the teacher's (D,) embedding of the sentence


class EmbeddingTask(Task):
    name = "embedding"
    parity_by = "cosine"  # embeddings have no classes
    int8_methods = ("dynamic",)  # activation ranges vary from sentence to sentence: no one calibrated scale
    input_keys = ("input_ids", "attention_mask")
    cacheable = False  # the run embeds every split itself (see prepare_run)
    result_columns = ("test_cosine_to_teacher", "test_top10_overlap", "parameters", "teacher_parameters")

    def logits(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        output = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        hidden = getattr(output, "last_hidden_state", None)
        embeddings = mean_pool(hidden, batch["attention_mask"]) if hidden is not None else output
        if not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 2:
            raise ConfigError("task embedding needs models that return (batch, dim) sentence embeddings or a "
                              "last_hidden_state (use minilm, encoder:<folder> or tiny-bert)")
        return F.normalize(embeddings, dim=-1)  # (B, D)

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """No hard labels: zero (kept on the graph, so a step with no method term still backpropagates)."""
        return logits.float().sum() * 0.0

    def correct(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """(sum of cosine similarities to the teacher's embeddings, sentences): "accuracy" is the mean cosine."""
        if TEACHER_KEY not in batch:  # no stored teacher embeddings: nothing to compare with
            return torch.tensor(float("nan")), int(logits.shape[0])
        cosine = F.cosine_similarity(logits.float(), batch[TEACHER_KEY].float(), dim=-1)
        return cosine.sum(), int(logits.shape[0])

    def agreement(self, logits: torch.Tensor, teacher_logits: torch.Tensor, batch: dict[str, torch.Tensor]
                  ) -> tuple[torch.Tensor, int]:
        cosine = F.cosine_similarity(logits.float(), teacher_logits.float(), dim=-1)
        return cosine.sum(), int(logits.shape[0])

    # ----- run assembly -----

    def check_config(self, config, distilling: bool):
        """No labels: distillation only, alpha 0; resolves ``data.tokenizer`` from the encoders."""
        config = super().check_config(config, distilling)
        if not distilling:
            raise ConfigError("task embedding has no labels to train on: use `kdistill distill` with a teacher "
                              "(e.g. teacher.name: minilm) and the methods embed_mse / embed_cosine")
        alphas = [config.distill.alpha] + [s.alpha for s in config.distill.stages if s.alpha is not None]
        if any(alpha != 0 for alpha in alphas):
            raise ConfigError("task embedding has no hard labels (its task loss is 0): set distill.alpha: 0 (and no "
                              "other alpha in distill.stages), so the loss is the sum of the embedding methods' terms")
        if config.data.tokenizer is None:
            names = [getattr(config.teacher, "name", ""), config.student.name]
            tokenizer = next((t for t in map(default_tokenizer, names) if t is not None), None)
            if tokenizer is None:
                raise ConfigError("task embedding: set data.tokenizer (the encoders' tokenizer folder, or minilm)")
            config = config.model_copy(update={"data": config.data.model_copy(update={"tokenizer": tokenizer})})
        return config

    def teacher_needs(self, config) -> dict[str, str]:
        return {ANY_INPUT: "task embedding (the teacher embeds every split once, val and test included)"}

    def check_models(self, student: nn.Module, teacher, splits) -> None:
        """Student and teacher embeddings must have one width (checked on one sample)."""
        sample = {k: v.unsqueeze(0) for k, v in splits.train[0].items()}
        was_training = student.training
        with torch.no_grad():
            student_width = self.logits(student.eval(), sample).shape[-1]
        student.train(was_training)
        teacher_width = teacher.probe(sample).logits.shape[-1]
        if student_width != teacher_width:
            raise ConfigError(f"the student's embeddings have width {student_width} but the teacher's "
                              f"{teacher_width}; set student.kwargs.embed_dim: {teacher_width} (tiny-bert projects "
                              "to it)")

    def prepare_run(self, config, splits, teacher):
        """Embed every split with the teacher once; the splits' items carry them, an offline teacher reads them."""
        from dataclasses import replace

        device, batch_size = _device(config), config.trainer.eval_batch_size
        parts = ("train", "val", "test")
        teacher.to(device)
        targets = {part: teacher_embeddings(teacher, getattr(splits, part), batch_size, device) for part in parts}
        teacher.to(torch.device("cpu"))
        splits = replace(splits, **{part: WithTeacherEmbeddings(getattr(splits, part), targets[part])
                                    for part in parts})
        return splits, StoredEmbeddingTeacher(teacher)

    def final_metrics(self, config, run_dir, student: nn.Module, teacher: nn.Module | None, splits) -> dict:
        """Test cosine to the teacher, top-10 neighbour overlap, sizes (student and teacher)."""
        return embedding_final_metrics(student, teacher, splits, config.trainer.eval_batch_size)


def default_tokenizer(model_name: str) -> str | None:
    """The tokenizer a sentence encoder came with: ``minilm`` for minilm, the folder for encoder:/hf:."""
    source, _, argument = model_name.partition(":")
    if source == "minilm":
        return "minilm"
    if source in ("encoder", "hf") and argument:
        return argument
    return None


class WithTeacherEmbeddings(Dataset):
    """A data set whose items also carry the teacher's embedding of the sentence (``TEACHER_KEY``)."""

    def __init__(self, dataset: Dataset, embeddings: torch.Tensor) -> None:
        if len(dataset) != len(embeddings):
            raise ValueError(f"{len(dataset)} items but {len(embeddings)} teacher embeddings")
        self.dataset, self.embeddings = dataset, embeddings

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {**self.dataset[index], TEACHER_KEY: self.embeddings[index]}


@torch.no_grad()
def embed_dataset(model: nn.Module, dataset: Dataset, batch_size: int = 64, device: str | torch.device = "cpu",
                  label: str = "test") -> torch.Tensor:
    """(N, D) float32 embeddings of a data set, in order (the model in eval mode; its mode is restored); ``label``
    names the pass on screen during a run's final evaluation."""
    from kdistill.evaluate import evaluation_batches

    task, was_training = EmbeddingTask(), model.training
    model.to(device).eval()
    parts = []
    for batch in evaluation_batches(dataset, batch_size, label):
        batch = {k: v.to(device) for k, v in batch.items()}
        parts.append(task.logits(model, batch).float().cpu())
    model.train(was_training)
    return torch.cat(parts) if parts else torch.empty(0)


@torch.no_grad()
def teacher_embeddings(teacher, dataset: Dataset, batch_size: int, device: str | torch.device) -> torch.Tensor:
    """(N, D) float32 embeddings of a data set by a ``Teacher`` (its ``outputs``), in order."""
    parts = []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        batch = {k: v.to(device) for k, v in batch.items()}
        parts.append(teacher.outputs(batch).logits.float().cpu())
    return torch.cat(parts) if parts else torch.empty(0)


class StoredEmbeddingTeacher:
    """The teacher's embeddings computed once and carried by the batches: an offline teacher (no taps)."""

    provides = frozenset({LOGITS})
    model = None

    def __init__(self, source=None) -> None:
        self.source = source  # the Teacher that computed the embeddings (for the final metrics' sizes)

    def outputs(self, batch: dict[str, torch.Tensor]) -> ModelOutputs:
        return ModelOutputs(logits=batch[TEACHER_KEY].float())

    def probe(self, batch: dict[str, torch.Tensor]) -> ModelOutputs:
        return self.outputs(batch)

    def tap(self, names: list[str]) -> None:
        if names:
            raise ConfigError(f"stored embeddings have no features {names}")

    def to(self, device: torch.device) -> StoredEmbeddingTeacher:
        return self

    def train_dataset(self, dataset: Dataset) -> Dataset:
        return dataset

    def metrics_model(self) -> nn.Module | None:
        return self.source.metrics_model() if self.source is not None else None

    def close(self) -> None:
        if self.source is not None:
            self.source.close()


def _device(config) -> str:
    wanted = config.trainer.accelerator
    return "cuda" if wanted in ("auto", "cuda", "gpu") and torch.cuda.is_available() else "cpu"


def embedding_final_metrics(student: nn.Module, teacher: nn.Module | None, splits, batch_size: int) -> dict:
    """Test cosine to the teacher, top-10 neighbour overlap, sizes (student and teacher)."""
    test = splits.test
    if not isinstance(test, WithTeacherEmbeddings):
        raise ValueError("embedding metrics need the test split with the teacher's embeddings")
    embeddings = embed_dataset(student, test, batch_size, label="test: student")
    metrics = {f"test_{key}": value for key, value in compare_embeddings(embeddings, test.embeddings).items()}
    metrics["test_sentences"] = len(test)
    metrics["parameters"] = sum(p.numel() for p in student.parameters())
    metrics["size_mb"] = metrics["parameters"] * 4 / 2**20  # float32
    if teacher is not None:
        metrics["teacher_parameters"] = sum(p.numel() for p in teacher.parameters())
        metrics["teacher_size_mb"] = metrics["teacher_parameters"] * 4 / 2**20
    return metrics
