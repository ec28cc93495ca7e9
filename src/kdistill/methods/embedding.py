"""Sentence-embedding distillation (``task: embedding``): the student's pooled embedding regresses the teacher's.

Reimers & Gurevych, "Making Monolingual Sentence Embeddings Multilingual using Knowledge Distillation", EMNLP 2020
(arXiv:2004.09813): MSE between the student's and the teacher's sentence embeddings. Logits here are (B, D)
L2-normalised mean-pooled embeddings (see ``kdistill.tasks.embedding``); both methods only read tensors.

* ``embed_mse``: squared L2 distance per sentence, batch mean (= D x the element-wise MSE of the paper).
* ``embed_cosine``: 1 - cosine similarity per sentence, batch mean.

Combine them with weights, e.g. ``distill.methods: {embed_mse: 1.0, embed_cosine: 1.0}`` (what
``kdistill distill-embeddings`` uses). They need ``task: embedding`` and the same width on both sides (a
``tiny-bert`` student projects to ``embed_dim``).
"""

from __future__ import annotations

import torch

from kdistill.lm.embedding import embedding_cosine, embedding_mse
from kdistill.methods.base import METHODS, Method
from kdistill.outputs import ModelOutputs


class EmbeddingMethod(Method):
    """Shared part: shape check; subclasses set ``term`` and ``distance``."""

    tasks = frozenset({"embedding"})
    term = ""

    @staticmethod
    def distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, student: ModelOutputs, teacher: ModelOutputs, batch: dict[str, torch.Tensor]
                ) -> dict[str, torch.Tensor]:
        if student.logits.dim() != 2 or student.logits.shape != teacher.logits.shape:
            raise ValueError(f"{self.name} needs (batch, dim) sentence embeddings of one width on both sides, got "
                             f"student {tuple(student.logits.shape)} and teacher {tuple(teacher.logits.shape)}")
        return {self.term: self.distance(student.logits, teacher.logits.detach())}


@METHODS.register("embed_mse")
class EmbedMSE(EmbeddingMethod):
    name = "embed_mse"
    term = "embed_mse"
    distance = staticmethod(embedding_mse)


@METHODS.register("embed_cosine")
class EmbedCosine(EmbeddingMethod):
    name = "embed_cosine"
    term = "embed_cosine"
    distance = staticmethod(embedding_cosine)
