"""Logit losses (DKD, DIST, logit standardisation) against naive references written with loops."""

from __future__ import annotations

import math

import pytest
import torch

from kdistill.losses.logit import dist_loss, dkd_loss, standardize_logits
from kdistill.methods import build_method
from kdistill.outputs import ModelOutputs

B, C = 5, 6


def _logits(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    student = (torch.randn(B, C, generator=g, dtype=torch.float64) * 2).requires_grad_(True)
    teacher = torch.randn(B, C, generator=g, dtype=torch.float64) * 3
    target = torch.randint(0, C, (B,), generator=g)
    return student, teacher, target


def _softmax(row: list[float]) -> list[float]:
    top = max(row)
    exps = [math.exp(v - top) for v in row]
    return [e / sum(exps) for e in exps]


def _kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True) if pi > 0)


def naive_dkd(student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor, t: float) -> tuple[float, float]:
    tckd = nckd = 0.0
    for i in range(student.shape[0]):
        y = int(target[i])
        p_s = _softmax([v / t for v in student[i].tolist()])
        p_t = _softmax([v / t for v in teacher[i].tolist()])
        tckd += _kl([p_t[y], 1 - p_t[y]], [p_s[y], 1 - p_s[y]])
        others = [c for c in range(student.shape[1]) if c != y]
        q_s = _softmax([student[i, c].item() / t for c in others])
        q_t = _softmax([teacher[i, c].item() / t for c in others])
        nckd += _kl(q_t, q_s)
    n = student.shape[0]
    return tckd / n * t * t, nckd / n * t * t


def _grad(fn, student: torch.Tensor) -> torch.Tensor:
    student.grad = None
    fn().backward()
    return student.grad.clone()


def _numeric_grad(fn, student: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Central differences of a naive (python-float) loss: the reference gradient."""
    grad = torch.zeros_like(student)
    base = student.detach().clone()
    for index in range(base.numel()):
        plus, minus = base.clone(), base.clone()
        plus.view(-1)[index] += eps
        minus.view(-1)[index] -= eps
        grad.view(-1)[index] = (fn(plus) - fn(minus)) / (2 * eps)
    return grad


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_dkd_matches_naive_value_and_gradient(temperature):
    student, teacher, target = _logits(0)
    tckd, nckd = dkd_loss(student, teacher, target, temperature)
    ref_tckd, ref_nckd = naive_dkd(student.detach(), teacher, target, temperature)
    assert tckd.item() == pytest.approx(ref_tckd, rel=1e-5)
    assert nckd.item() == pytest.approx(ref_nckd, rel=1e-5)
    grad = _grad(lambda: sum(dkd_loss(student, teacher, target, temperature)), student)
    ref = _numeric_grad(lambda s: sum(naive_dkd(s, teacher, target, temperature)), student)
    torch.testing.assert_close(grad, ref, rtol=1e-3, atol=1e-5)


def test_dkd_masks_ignored_targets_and_is_zero_when_empty():
    student, teacher, target = _logits(1)
    masked = target.clone()
    masked[2:] = -100
    tckd, nckd = dkd_loss(student, teacher, masked, 4.0)
    ref = naive_dkd(student[:2].detach(), teacher[:2], target[:2], 4.0)
    assert (tckd.item(), nckd.item()) == pytest.approx(ref, rel=1e-5)
    empty = dkd_loss(student, teacher, torch.full_like(target, -100), 4.0)
    assert all(t.item() == 0.0 and t.dtype == torch.float32 for t in empty)


def test_dkd_method_warmup_scales_terms():
    student, teacher, target = _logits(2)
    method = build_method("dkd", 4.0, C, {"warmup_epochs": 4})
    outputs = ModelOutputs(student.float()), ModelOutputs(teacher.float())
    method.set_epoch(0)
    early = method(*outputs, {"target": target})
    method.set_epoch(10)
    late = method(*outputs, {"target": target})
    tckd, nckd = dkd_loss(student, teacher, target, 4.0)
    assert late["dkd_tckd"].item() == pytest.approx(tckd.item(), rel=1e-5)  # alpha = 1
    assert late["dkd_nckd"].item() == pytest.approx(8 * nckd.item(), rel=1e-5)  # beta = 8
    assert early["dkd_nckd"].item() == pytest.approx(late["dkd_nckd"].item() / 4, rel=1e-5)


def _pearson(a: list[float], b: list[float]) -> float:
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    cov = sum((x - mean_a) * (y - mean_b) for x, y in zip(a, b, strict=True))
    var_a = sum((x - mean_a) ** 2 for x in a)
    var_b = sum((y - mean_b) ** 2 for y in b)
    return cov / math.sqrt(var_a * var_b)


def naive_dist(student: torch.Tensor, teacher: torch.Tensor, tau: float) -> tuple[float, float]:
    p_s = [_softmax([v / tau for v in row]) for row in student.tolist()]
    p_t = [_softmax([v / tau for v in row]) for row in teacher.tolist()]
    inter = 1 - sum(_pearson(s, t) for s, t in zip(p_s, p_t, strict=True)) / len(p_s)
    columns = range(len(p_s[0]))
    intra = 1 - sum(_pearson([r[c] for r in p_s], [r[c] for r in p_t]) for c in columns) / len(columns)
    return inter * tau**2, intra * tau**2


@pytest.mark.parametrize("tau", [1.0, 4.0])
def test_dist_matches_naive_value_and_gradient(tau):
    student, teacher, _ = _logits(3)
    inter, intra = dist_loss(student, teacher, tau)
    assert (inter.item(), intra.item()) == pytest.approx(naive_dist(student.detach(), teacher, tau), rel=1e-5)
    grad = _grad(lambda: sum(dist_loss(student, teacher, tau)), student)
    ref = _numeric_grad(lambda s: sum(naive_dist(s, teacher, tau)), student)
    torch.testing.assert_close(grad, ref, rtol=1e-3, atol=1e-6)


def naive_lskd(student: torch.Tensor, teacher: torch.Tensor, t: float) -> float:
    def zscore(row: list[float]) -> list[float]:
        mean = sum(row) / len(row)
        std = math.sqrt(sum((v - mean) ** 2 for v in row) / (len(row) - 1))
        return [(v - mean) / (std + 1e-7) for v in row]

    total = 0.0
    for s_row, t_row in zip(student.tolist(), teacher.tolist(), strict=True):
        total += _kl(_softmax([v / t for v in zscore(t_row)]), _softmax([v / t for v in zscore(s_row)]))
    return total / student.shape[0] * t * t


def test_lskd_matches_naive_value_and_gradient():
    student, teacher, _ = _logits(4)
    method = build_method("lskd", 2.0, C)

    def loss(s: torch.Tensor) -> torch.Tensor:
        return method(ModelOutputs(s), ModelOutputs(teacher), {})["lskd"]

    assert loss(student).item() == pytest.approx(naive_lskd(student.detach(), teacher, 2.0), rel=1e-5)
    ref = _numeric_grad(lambda s: naive_lskd(s, teacher, 2.0), student)
    torch.testing.assert_close(_grad(lambda: loss(student), student), ref, rtol=1e-3, atol=1e-6)


def test_lskd_ignores_logit_scale_and_shift():
    student, teacher, _ = _logits(5)
    method = build_method("lskd", 2.0, C)
    base = method(ModelOutputs(student), ModelOutputs(teacher), {})["lskd"]
    rescaled = method(ModelOutputs(student * 7 + 3), ModelOutputs(teacher / 5 - 2), {})["lskd"]
    assert rescaled.item() == pytest.approx(base.item(), rel=1e-4)
    assert standardize_logits(student).std(dim=-1).detach() == pytest.approx([1.0] * B, rel=1e-5)


@pytest.mark.parametrize("name", ["dkd", "dist", "lskd"])
def test_logit_methods_return_zero_on_empty_batch(name):
    method = build_method(name, 4.0, C)
    empty = torch.zeros(0, C, requires_grad=True)
    terms = method(ModelOutputs(empty), ModelOutputs(torch.zeros(0, C)), {"target": torch.zeros(0, dtype=torch.long)})
    for value in terms.values():
        assert value.item() == 0.0 and value.dtype == torch.float32
