"""Token-level KD for causal language models: one divergence per method, summed over target tokens.

Each term is normalised per predicted token: by the optimiser step's token count when the trainer set it
(``kdistill.lm.task.set_step_tokens``), else by this micro-batch's. Logits are (B, T, V); labels (B, T) with -100
where there is no target. Set ``distill.temperature: 1.0`` for language models (the papers' setting).

* ``token_fkl``: forward KL(p_teacher || q_student) per token (word-level KD, Kim & Rush, EMNLP 2016).
* ``token_rkl``: reverse KL; MiniLLM, Gu et al., ICLR 2024.
* ``token_jsd``: generalised JSD(beta), default beta 0.5; GKD, Agarwal et al., ICLR 2024.
* ``token_tvd``: total variation; Wen et al., ACL 2023 (f-divergence minimisation for sequence-level KD).
* ``token_skl``: skew KL with alpha 0.1 (``reverse: true`` for skew reverse KL); DistiLLM, Ko et al., ICML 2024.
* ``uld``: Universal Logit Distillation across tokenizers; Boizard et al. 2024 (arXiv:2402.12030). The teacher's
  target positions come from ``batch["teacher_labels"]`` when its tokens differ from the student's.
"""

from __future__ import annotations

import torch

from kdistill.lm.task import token_normaliser
from kdistill.lm.vocab import check_same_vocab_logits
from kdistill.losses import token as token_losses
from kdistill.methods.base import METHODS, Method
from kdistill.outputs import ModelOutputs


class TokenKD(Method):
    """Shared part: temperature, vocabulary check, per-token normalisation."""

    tasks = frozenset({"causal-lm"})
    term = "kd"

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = temperature

    def divergence(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                   normaliser: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, student: ModelOutputs, teacher: ModelOutputs, batch: dict[str, torch.Tensor]
                ) -> dict[str, torch.Tensor]:
        check_same_vocab_logits(student.logits, teacher.logits, method=self.name)
        labels = batch["labels"]
        normaliser = token_normaliser(batch, labels[:, 1:] != token_losses.IGNORE_INDEX)
        return {self.term: self.divergence(student.logits, teacher.logits.detach(), labels, normaliser)}


@METHODS.register("token_fkl")
class TokenForwardKL(TokenKD):
    name = "token_fkl"
    term = "fkl"

    def divergence(self, student_logits, teacher_logits, labels, normaliser):
        return token_losses.forward_kl(student_logits, teacher_logits, labels, self.temperature, normaliser)


@METHODS.register("token_rkl")
class TokenReverseKL(TokenKD):
    name = "token_rkl"
    term = "rkl"

    def divergence(self, student_logits, teacher_logits, labels, normaliser):
        return token_losses.reverse_kl(student_logits, teacher_logits, labels, self.temperature, normaliser)


@METHODS.register("token_jsd")
class TokenJSD(TokenKD):
    name = "token_jsd"
    term = "jsd"

    def __init__(self, temperature: float = 1.0, beta: float = 0.5) -> None:
        super().__init__(temperature)
        if not 0.0 < beta < 1.0:
            raise ValueError(f"token_jsd beta must be in (0, 1), got {beta}")
        self.beta = beta

    def divergence(self, student_logits, teacher_logits, labels, normaliser):
        return token_losses.generalized_jsd(student_logits, teacher_logits, labels, self.beta, self.temperature,
                                            normaliser)


@METHODS.register("token_tvd")
class TokenTVD(TokenKD):
    name = "token_tvd"
    term = "tvd"

    def divergence(self, student_logits, teacher_logits, labels, normaliser):
        return token_losses.total_variation(student_logits, teacher_logits, labels, self.temperature, normaliser)


@METHODS.register("token_skl")
class TokenSkewKL(TokenKD):
    name = "token_skl"
    term = "skl"

    def __init__(self, temperature: float = 1.0, alpha: float = 0.1, reverse: bool = False) -> None:
        super().__init__(temperature)
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"token_skl alpha must be in [0, 1), got {alpha}")
        self.alpha, self.reverse = alpha, reverse
        self.term = "srkl" if reverse else "skl"

    def divergence(self, student_logits, teacher_logits, labels, normaliser):
        return token_losses.skew_kl(student_logits, teacher_logits, labels, self.alpha, self.reverse,
                                    self.temperature, normaliser)


@METHODS.register("uld")
class UniversalLogitDistillation(Method):
    """ULD (Boizard et al. 2024): sorted-probability L1, so teacher and student may use different tokenizers."""

    name = "uld"
    tasks = frozenset({"causal-lm"})
    cross_tokenizer = True

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(self, student: ModelOutputs, teacher: ModelOutputs, batch: dict[str, torch.Tensor]
                ) -> dict[str, torch.Tensor]:
        labels = batch["labels"]
        teacher_labels = batch.get("teacher_labels", labels)
        normaliser = token_normaliser(batch, labels[:, 1:] != token_losses.IGNORE_INDEX)
        return {"uld": token_losses.uld_loss(student.logits, teacher.logits.detach(), labels, teacher_labels,
                                             self.temperature, normaliser)}
