"""Token-level divergences and methods against naive per-position loops (value and gradient w.r.t. the student)."""

from __future__ import annotations

import math
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from kdistill.errors import ConfigError, ModelError  # noqa: E402
from kdistill.lm.task import STEP_TOKENS_KEY  # noqa: E402
from kdistill.lm.tokenizer import ByteTokenizer  # noqa: E402
from kdistill.lm.vocab import check_model_vocab_sizes, check_tokenizers  # noqa: E402
from kdistill.losses import token as T  # noqa: E402
from kdistill.methods import token_kd  # noqa: E402, F401  (registration)
from kdistill.methods.base import build_method  # noqa: E402
from kdistill.outputs import ModelOutputs  # noqa: E402

B, L, V = 2, 6, 7


def _softmax(row: list[float], temperature: float) -> list[float]:
    exps = [math.exp(x / temperature) for x in row]
    return [e / sum(exps) for e in exps]


def _kl(a: list[float], b: list[float]) -> float:
    return sum(x * math.log(x / y) for x, y in zip(a, b, strict=True) if x > 0)


def _naive_per_token(kind: str, p: list[float], q: list[float], beta: float, alpha: float) -> float:
    if kind == "fkl":
        return _kl(p, q)
    if kind == "rkl":
        return _kl(q, p)
    if kind == "jsd":
        m = [beta * x + (1 - beta) * y for x, y in zip(p, q, strict=True)]
        return beta * _kl(p, m) + (1 - beta) * _kl(q, m)
    if kind == "tvd":
        return 0.5 * sum(abs(x - y) for x, y in zip(p, q, strict=True))
    if kind == "skl":
        return _kl(p, [alpha * x + (1 - alpha) * y for x, y in zip(p, q, strict=True)])
    if kind == "srkl":
        return _kl(q, [(1 - alpha) * x + alpha * y for x, y in zip(p, q, strict=True)])
    raise AssertionError(kind)


def naive_loss(kind, student, teacher, labels, temperature=1.0, beta=0.5, alpha=0.1) -> float:
    """Loop over every sample and position; position t compared when labels[b, t+1] != -100."""
    total, count = 0.0, 0
    for b in range(student.shape[0]):
        for t in range(student.shape[1] - 1):
            if labels[b, t + 1] == -100:
                continue
            p = _softmax(teacher[b, t].tolist(), temperature)
            q = _softmax(student[b, t].tolist(), temperature)
            total += _naive_per_token(kind, p, q, beta, alpha)
            count += 1
    return total / max(count, 1)


FUNCTIONS = {
    "fkl": lambda s, t, y, temp: T.forward_kl(s, t, y, temp),
    "rkl": lambda s, t, y, temp: T.reverse_kl(s, t, y, temp),
    "jsd": lambda s, t, y, temp: T.generalized_jsd(s, t, y, 0.3, temp),
    "tvd": lambda s, t, y, temp: T.total_variation(s, t, y, temp),
    "skl": lambda s, t, y, temp: T.skew_kl(s, t, y, 0.1, False, temp),
    "srkl": lambda s, t, y, temp: T.skew_kl(s, t, y, 0.1, True, temp),
}


def _inputs(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    student = torch.randn(B, L, V, generator=generator, dtype=torch.float64) * 2
    teacher = torch.randn(B, L, V, generator=generator, dtype=torch.float64) * 2
    labels = torch.randint(0, V, (B, L), generator=generator)
    labels[0, :3] = -100  # a prompt
    labels[1, -2:] = -100  # padding
    return student, teacher, labels


@pytest.mark.parametrize("kind", sorted(FUNCTIONS))
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_token_loss_matches_naive_value_and_gradient(kind, temperature):
    student, teacher, labels = _inputs()
    student.requires_grad_(True)
    value = FUNCTIONS[kind](student, teacher, labels, temperature)
    assert value.dtype == torch.float32
    expected = naive_loss(kind, student.detach(), teacher, labels, temperature, beta=0.3)
    assert value.item() == pytest.approx(expected, rel=1e-5, abs=1e-7)
    (grad,) = torch.autograd.grad(value, student)
    # Gradient reference: finite differences of the naive loop on a few student coordinates.
    for b, t, v in [(0, 3, 1), (1, 0, 4), (1, 2, 6), (0, 4, 0)]:
        plus, minus = student.detach().clone(), student.detach().clone()
        plus[b, t, v] += 1e-5
        minus[b, t, v] -= 1e-5
        numeric = (naive_loss(kind, plus, teacher, labels, temperature, 0.3)
                   - naive_loss(kind, minus, teacher, labels, temperature, 0.3)) / 2e-5
        assert grad[b, t, v].item() == pytest.approx(numeric, rel=1e-3, abs=1e-6)
    # Masked positions get no gradient: labels[0, 1..3] are -100, so positions 0..1 of sample 0 are unused.
    assert torch.all(grad[0, :2] == 0) and torch.all(grad[:, -1] == 0)


@pytest.mark.parametrize("kind", sorted(FUNCTIONS))
def test_all_masked_is_exactly_zero_not_nan(kind):
    student, teacher, labels = _inputs()
    student.requires_grad_(True)
    value = FUNCTIONS[kind](student, teacher, torch.full_like(labels, -100), 1.0)
    assert value.item() == 0.0
    value.backward()
    assert torch.all(student.grad == 0)


@pytest.mark.parametrize("kind", ["fkl", "rkl", "jsd", "tvd", "skl"])
def test_identical_distributions_give_zero(kind):
    student, _, labels = _inputs()
    assert FUNCTIONS[kind](student, student.clone(), labels, 1.0).item() == pytest.approx(0.0, abs=1e-6)


def test_jsd_and_skew_parameters_are_checked():
    student, teacher, labels = _inputs()
    with pytest.raises(ValueError, match="beta"):
        T.generalized_jsd(student, teacher, labels, beta=1.0)
    with pytest.raises(ValueError, match="alpha"):
        T.skew_kl(student, teacher, labels, alpha=1.0)
    with pytest.raises(ConfigError, match=r"method_options\.token_jsd: token_jsd beta must be in \(0, 1\)"):
        build_method("token_jsd", 1.0, V, {"beta": 0.0})


METHOD_KINDS = {"token_fkl": "fkl", "token_rkl": "rkl", "token_jsd": "jsd", "token_tvd": "tvd", "token_skl": "skl"}


@pytest.mark.parametrize("name", sorted(METHOD_KINDS))
def test_methods_return_named_per_token_terms(name):
    student, teacher, labels = _inputs()
    method = build_method(name, temperature=1.0, num_classes=V)
    terms = method(ModelOutputs(student.float()), ModelOutputs(teacher.float()), {"labels": labels})
    assert len(terms) == 1
    expected = naive_loss(METHOD_KINDS[name], student, teacher, labels, beta=0.5)
    assert next(iter(terms.values())).item() == pytest.approx(expected, rel=1e-5)
    # With the step's token count set by the trainer (here twice this batch's), the sum is divided by it.
    count = int((labels[:, 1:] != -100).sum())
    halved = method(ModelOutputs(student.float()), ModelOutputs(teacher.float()),
                    {"labels": labels, STEP_TOKENS_KEY: torch.tensor(2.0 * count)})
    assert next(iter(halved.values())).item() == pytest.approx(expected / 2, rel=1e-5)


def test_token_method_refuses_different_vocabularies():
    student, teacher, labels = _inputs()
    method = build_method("token_fkl", 1.0, V)
    with pytest.raises(ModelError, match="uld"):
        method(ModelOutputs(student), ModelOutputs(teacher[..., :5]), {"labels": labels})


def naive_uld(student, teacher, student_labels, teacher_labels) -> float:
    """Sort each position's probabilities, zero-pad, L1; k-th student target position vs k-th teacher one."""
    total, count = 0.0, 0
    for b in range(student.shape[0]):
        s_pos = [t for t in range(student.shape[1] - 1) if student_labels[b, t + 1] != -100]
        t_pos = [t for t in range(teacher.shape[1] - 1) if teacher_labels[b, t + 1] != -100]
        for i, j in zip(s_pos, t_pos, strict=False):
            q = sorted(_softmax(student[b, i].tolist(), 1.0), reverse=True)
            p = sorted(_softmax(teacher[b, j].tolist(), 1.0), reverse=True)
            size = max(len(p), len(q))
            q, p = q + [0.0] * (size - len(q)), p + [0.0] * (size - len(p))
            total += sum(abs(x - y) for x, y in zip(q, p, strict=True))
            count += 1
    return total / max(count, 1)


def test_uld_matches_naive_across_vocabularies_and_lengths():
    generator = torch.Generator().manual_seed(1)
    student = torch.randn(2, 6, 7, generator=generator, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(2, 8, 11, generator=generator, dtype=torch.float64) * 3
    student_labels = torch.tensor([[-100, -100, 1, 2, 3, -100], [-100, 4, 4, 4, 4, 4]])
    teacher_labels = torch.tensor([[-100, -100, -100, 1, 2, -100, -100, -100], [-100] * 2 + [3] * 6])
    value = T.uld_loss(student, teacher, student_labels, teacher_labels)
    expected = naive_uld(student.detach(), teacher, student_labels, teacher_labels)
    # Normalised by the compared count here (default normaliser counts the aligned pairs).
    assert value.item() == pytest.approx(expected, rel=1e-5)
    value.backward()
    assert torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0
    method = build_method("uld", 1.0, 7)
    terms = method(ModelOutputs(student.detach()), ModelOutputs(teacher),
                   {"labels": student_labels, "teacher_labels": teacher_labels})
    assert set(terms) == {"uld"} and terms["uld"].item() > 0


def test_vocabulary_mismatch_is_explained_unless_uld():
    class Shifted(ByteTokenizer):
        name = "shifted"

        def get_vocab(self):
            vocab = super().get_vocab()
            vocab["<extra>"] = 259
            vocab["<0x41>"], vocab["<0x42>"] = 0x42, 0x41
            return vocab

    check_tokenizers(ByteTokenizer(), ByteTokenizer())
    with pytest.raises(ModelError) as info:
        check_tokenizers(ByteTokenizer(), Shifted(), methods=["token_fkl"])
    message = str(info.value)
    assert "259 tokens, student 260" in message and "id 65: teacher '<0x41>' vs student '<0x42>'" in message
    check_tokenizers(ByteTokenizer(), Shifted(), methods=["uld"])
    with pytest.raises(ModelError, match="259 tokens but the student's has 300"):
        check_model_vocab_sizes(259, 300)
