"""CRD: NCE loss against a naive reference, memory bank updates, negatives clipping and bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdistill.errors import ConfigError, DataError
from kdistill.losses.contrastive import contrast_scores, contrast_scores_from_memory, nce_loss
from kdistill.methods import MethodContext, build_method
from kdistill.outputs import ModelOutputs


def naive_nce(scores: torch.Tensor, num_data: int) -> torch.Tensor:
    batch, columns = scores.shape
    noise = (columns - 1) / num_data
    total = 0
    for b in range(batch):
        total = total + torch.log(scores[b, 0] / (scores[b, 0] + noise + 1e-7))
        for k in range(1, columns):
            total = total + torch.log(noise / (scores[b, k] + noise + 1e-7))
    return -total / batch


def test_nce_loss_matches_naive_value_and_gradient():
    g = torch.Generator().manual_seed(0)
    scores = (torch.rand(3, 5, generator=g, dtype=torch.float64) + 0.1).requires_grad_(True)
    value = nce_loss(scores, num_data=40)
    reference = naive_nce(scores, 40)
    assert value.item() == pytest.approx(reference.item(), rel=1e-6)
    grad = torch.autograd.grad(value, scores)[0]
    torch.testing.assert_close(grad, torch.autograd.grad(reference, scores)[0])
    assert nce_loss(torch.zeros(0, 5), 40).item() == 0.0


def test_contrast_scores_are_exp_dot_over_t():
    g = torch.Generator().manual_seed(1)
    anchor = F.normalize(torch.randn(2, 4, generator=g), dim=1)
    rows = torch.randn(2, 3, 4, generator=g)
    scores = contrast_scores(anchor, rows, 0.5)
    for b in range(2):
        for k in range(3):
            expected = math.exp(torch.dot(anchor[b], rows[b, k]).item() / 0.5)
            assert scores[b, k].item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("per_anchor", [2, 9])  # 2 rows of a 10-row bank: gather path; 9 rows: full-matmul path
def test_contrast_scores_from_memory_match_gathered_rows(per_anchor):
    g = torch.Generator().manual_seed(2)
    memory = F.normalize(torch.randn(10, 4, generator=g), dim=1)
    anchor = F.normalize(torch.randn(3, 4, generator=g), dim=1).requires_grad_(True)
    rows = torch.randint(0, 10, (3, per_anchor), generator=g)
    value = contrast_scores_from_memory(anchor, memory, rows, 0.07)
    reference = torch.stack([torch.stack([torch.exp(torch.dot(anchor[b], memory[r]) / 0.07) for r in rows[b]])
                             for b in range(3)])
    torch.testing.assert_close(value, reference, rtol=1e-5, atol=0)
    weights = torch.rand(3, per_anchor, generator=g)
    grad = torch.autograd.grad((value * weights).sum(), anchor)[0]
    torch.testing.assert_close(grad, torch.autograd.grad((reference * weights).sum(), anchor)[0], rtol=1e-4, atol=0)


class _Pair(nn.Module):
    """A tiny model with a named penultimate layer."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(6, width), nn.ReLU())
        self.head = nn.Linear(width, 3)

    def forward(self, x):
        return self.head(self.body(x))


def _prepared(num_data: int = 20, **options):
    student = _Pair(4)
    method = build_method("crd", 4.0, 3, {"pairs": [["body", "body"]], "feat_dim": 8, **options})
    batch = {"input": torch.randn(6, 6), "index": torch.tensor([0, 3, 5, 7, 11, 19])}
    method.prepare(MethodContext(student, None, {"input": batch["input"][:1]}, 3, num_data,
                                 teacher_sample_outputs=ModelOutputs(torch.zeros(1, 3), {"body": torch.zeros(1, 5)})))
    return method, batch, student


def test_crd_clips_negatives_and_trains_heads_and_student_features():
    method, batch, _ = _prepared()
    assert method.num_negatives == 19  # 16384 requested, 20 samples
    student_feature = torch.randn(6, 4, requires_grad=True)
    loss = method(ModelOutputs(torch.zeros(6, 3), {"body": student_feature}),
                  ModelOutputs(torch.zeros(6, 3), {"body": torch.randn(6, 5)}), batch)["crd"]
    assert torch.isfinite(loss) and loss.dtype == torch.float32
    loss.backward()
    assert student_feature.grad.abs().sum() > 0
    assert method.embed_student.weight.grad.abs().sum() > 0
    assert method.embed_teacher.weight.grad.abs().sum() > 0  # the teacher's head is trained (on teacher features)


def test_crd_memory_is_a_momentum_average_of_this_batch():
    method, batch, _ = _prepared()
    before = method.memory_student.clone()
    student_feature, teacher_feature = torch.randn(6, 4), torch.randn(6, 5)
    method(ModelOutputs(torch.zeros(6, 3), {"body": student_feature}),
           ModelOutputs(torch.zeros(6, 3), {"body": teacher_feature}), batch)
    embedded = F.normalize(method.embed_student(student_feature), dim=1).detach()
    expected = F.normalize(before[batch["index"]] * 0.5 + embedded * 0.5, dim=1)
    torch.testing.assert_close(method.memory_student[batch["index"]], expected)
    untouched = [i for i in range(20) if i not in batch["index"].tolist()]
    torch.testing.assert_close(method.memory_student[untouched], before[untouched])
    assert method.z_student.item() > 0  # normaliser fixed on the first batch


def test_crd_rejects_missing_or_out_of_range_index_and_several_pairs():
    method, batch, _ = _prepared()
    outputs = ModelOutputs(torch.zeros(6, 3), {"body": torch.randn(6, 4)}), ModelOutputs(torch.zeros(6, 3),
                                                                                       {"body": torch.randn(6, 5)})
    with pytest.raises(DataError, match="index"):
        method(*outputs, {"input": batch["input"]})
    with pytest.raises(DataError, match="outside"):
        method(*outputs, {"index": torch.tensor([0, 1, 2, 3, 4, 20])})
    with pytest.raises(ConfigError, match="one pair"):
        build_method("crd", 4.0, 3, {"pairs": [["a", "b"], ["c", "d"]]})
