"""Feature and relational losses against naive references (explicit loops), value and gradient."""

from __future__ import annotations

import itertools

import pytest
import torch

from kdistill.losses.feature import attention_loss, hint_loss, nst_loss
from kdistill.losses.relational import pkt_loss, rkd_angle_loss, rkd_distance_loss, sp_loss


def _features(shape_s: tuple[int, ...], shape_t: tuple[int, ...], seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(*shape_s, generator=g, dtype=torch.float64).requires_grad_(True)
    teacher = torch.randn(*shape_t, generator=g, dtype=torch.float64)
    return student, teacher


def _check(loss_fn, naive_fn, student: torch.Tensor, teacher: torch.Tensor, rtol: float = 1e-5) -> None:
    """Value and gradient w.r.t. the student against the naive reference (differentiated by autograd in float64)."""
    value = loss_fn(student, teacher)
    assert value.dtype == torch.float32
    (grad,) = torch.autograd.grad(value, student)
    ref_student = student.detach().clone().requires_grad_(True)
    ref_value = naive_fn(ref_student, teacher)
    (ref_grad,) = torch.autograd.grad(ref_value, ref_student)
    assert value.item() == pytest.approx(ref_value.item(), rel=rtol, abs=1e-7)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-3, atol=1e-6)
    assert ref_grad.abs().sum() > 0  # the check is not vacuous


def naive_hint(s, t):
    total = sum((s[idx] - t[idx]) ** 2 for idx in itertools.product(*map(range, s.shape)))
    return total / s.numel()


def naive_attention(s, t):
    def att(f, b):
        c, h, w = f.shape[1:]
        q = torch.stack([sum(f[b, k, i, j] ** 2 for k in range(c)) / c for i in range(h) for j in range(w)])
        return q / torch.sqrt((q**2).sum())

    batch, hw = s.shape[0], s.shape[2] * s.shape[3]
    return sum(((att(s, b) - att(t, b)) ** 2).sum() for b in range(batch)) / (batch * hw)


def naive_nst(s, t):
    def channels(f, b):
        rows = [f[b, k].reshape(-1) for k in range(f.shape[1])]
        return [r / torch.sqrt((r**2).sum()) for r in rows]

    def kernel_mean(xs, ys):
        return sum(torch.dot(x, y) ** 2 for x in xs for y in ys) / (len(xs) * len(ys))

    total = 0
    for b in range(s.shape[0]):
        cs, ct = channels(s, b), channels(t, b)
        total = total + kernel_mean(ct, ct) + kernel_mean(cs, cs) - 2 * kernel_mean(cs, ct)
    return total / s.shape[0]


def naive_sp(s, t):
    def gram(f):
        flat = f.reshape(f.shape[0], -1)
        rows = [torch.stack([torch.dot(flat[i], flat[j]) for j in range(len(flat))]) for i in range(len(flat))]
        return torch.stack([r / torch.sqrt((r**2).sum()) for r in rows])

    batch = s.shape[0]
    return ((gram(t) - gram(s)) ** 2).sum() / batch**2


def _huber(x):
    return torch.where(x.abs() < 1, 0.5 * x**2, x.abs() - 0.5)


def naive_rkd_distance(s, t):
    def distances(f):
        flat = f.reshape(f.shape[0], -1)
        n = len(flat)
        d = [[torch.sqrt(((flat[i] - flat[j]) ** 2).sum()) if i != j else flat.sum() * 0 for j in range(n)]
             for i in range(n)]
        mean = sum(d[i][j] for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
        return [[d[i][j] / mean for j in range(n)] for i in range(n)]

    d_s, d_t = distances(s), distances(t)
    n = s.shape[0]
    return sum(_huber(d_s[i][j] - d_t[i][j]) for i in range(n) for j in range(n)) / n**2


def naive_rkd_angle(s, t):
    def unit(v):
        norm = torch.sqrt((v**2).sum())
        return v / norm if norm > 0 else v * 0

    def cosines(f):
        flat = f.reshape(f.shape[0], -1)
        n = len(flat)
        return [torch.dot(unit(flat[i] - flat[j]), unit(flat[k] - flat[j]))
                for j in range(n) for i in range(n) for k in range(n)]

    a_s, a_t = cosines(s), cosines(t)
    return sum(_huber(x - y) for x, y in zip(a_s, a_t, strict=True)) / len(a_s)


def naive_pkt(s, t, eps=1e-7):
    def conditional(f):
        flat = f.reshape(f.shape[0], -1)
        flat = torch.stack([r / (torch.sqrt((r**2).sum()) + eps) for r in flat])
        n = len(flat)
        k = [[(torch.dot(flat[i], flat[j]) + 1) / 2 for j in range(n)] for i in range(n)]
        return [[k[i][j] / sum(k[i]) for j in range(n)] for i in range(n)]

    p_s, p_t = conditional(s), conditional(t)
    n = s.shape[0]
    return sum(p_t[i][j] * torch.log((p_t[i][j] + eps) / (p_s[i][j] + eps)) for i in range(n) for j in range(n)) / n**2


def test_hint_loss():
    _check(hint_loss, naive_hint, *_features((3, 2, 3, 3), (3, 2, 3, 3)))


def test_attention_loss_with_different_channels():
    _check(attention_loss, naive_attention, *_features((3, 2, 3, 3), (3, 5, 3, 3)))


def test_nst_loss_with_different_channels():
    _check(nst_loss, naive_nst, *_features((2, 3, 2, 3), (2, 4, 2, 3)))


@pytest.mark.parametrize(("loss_fn", "naive_fn"), [(sp_loss, naive_sp), (rkd_distance_loss, naive_rkd_distance),
                                                   (rkd_angle_loss, naive_rkd_angle), (pkt_loss, naive_pkt)])
def test_relational_losses_with_different_widths(loss_fn, naive_fn):
    _check(loss_fn, naive_fn, *_features((4, 2, 2, 2), (4, 7)))


@pytest.mark.parametrize("loss_fn", [hint_loss, attention_loss, nst_loss, sp_loss, rkd_distance_loss, rkd_angle_loss,
                                     pkt_loss])
def test_feature_losses_are_exactly_zero_on_empty_batch(loss_fn):
    student = torch.zeros(0, 2, 3, 3, requires_grad=True)
    value = loss_fn(student, torch.zeros(0, 2, 3, 3))
    assert value.item() == 0.0 and not torch.isnan(value)
    value.backward()  # still part of the graph: the trainer can sum and backpropagate it


def test_rkd_distance_is_scale_invariant_and_zero_for_matching_structure():
    student, _ = _features((5, 3), (5, 3))
    assert rkd_distance_loss(student, student.detach() * 10).item() == pytest.approx(0.0, abs=1e-6)
    assert rkd_angle_loss(student, student.detach() * 10 + 1).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("loss_fn", [sp_loss, rkd_distance_loss, rkd_angle_loss, pkt_loss, nst_loss])
def test_losses_stay_float32_inside_bf16_autocast(loss_fn):
    student, teacher = _features((6, 3, 4, 4), (6, 3, 4, 4), seed=3)
    student, teacher = student.detach().float(), teacher.float() + student.detach().float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = loss_fn(student, teacher)
        assert (student.flatten(1) @ teacher.flatten(1).t()).dtype == torch.bfloat16  # autocast is really on here
    assert inside.dtype == torch.float32
    assert inside.item() == pytest.approx(loss_fn(student, teacher).item(), rel=1e-6)
