"""Hinton KD loss (T^2 * KL(teacher || student)) against hand-computed values, and a teacher that never learns."""

from __future__ import annotations

import hashlib
import math

import pytest
import torch
from torch import nn

from kdistill.losses.divergence import kd_kl_loss
from kdistill.methods import build_method
from kdistill.outputs import ModelOutputs
from kdistill.teacher import FrozenModule, LiveTeacher

# Hand case: 2 classes, T = 2, student logits (1, 0), teacher logits (0, 2).
# softmax(student / T) = softmax(0.5, 0) = (e^0.5 / (e^0.5 + 1), 1 / (e^0.5 + 1)) = (0.622459331, 0.377540669)
# softmax(teacher / T) = softmax(0, 1)   = (1 / (1 + e), e / (1 + e))             = (0.268941421, 0.731058579)
P_S = (0.6224593312018546, 0.3775406687981454)
P_T = (0.2689414213699951, 0.7310585786300049)
# KL(p_t || p_s) = 0.268941421 * ln(0.268941421 / 0.622459331) + 0.731058579 * ln(0.731058579 / 0.377540669)
#               = 0.268941421 * (-0.839189) + 0.731058579 * 0.660814 = 0.2574032; times T^2 = 4: 1.0296127
KL_T_S = 0.2574031646068913
# The reversed direction KL(p_s || p_t) is another number: 0.2728737 (times 4: 1.0914948).
KL_S_T = 0.27287370014089807


def test_hand_numbers_are_right() -> None:
    e = math.exp(1.0)
    assert P_S == pytest.approx((math.exp(0.5) / (math.exp(0.5) + 1), 1 / (math.exp(0.5) + 1)), abs=1e-15)
    assert P_T == pytest.approx((1 / (1 + e), e / (1 + e)), abs=1e-15)
    assert KL_T_S == pytest.approx(sum(t * math.log(t / s) for t, s in zip(P_T, P_S, strict=True)), abs=1e-15)
    assert KL_S_T == pytest.approx(sum(s * math.log(s / t) for t, s in zip(P_T, P_S, strict=True)), abs=1e-15)


def test_value_against_hand_computed_case() -> None:
    student = torch.tensor([[1.0, 0.0]])
    teacher = torch.tensor([[0.0, 2.0]])
    loss = kd_kl_loss(student, teacher, temperature=2.0)
    assert loss.item() == pytest.approx(4 * KL_T_S, rel=1e-6)
    assert loss.item() == pytest.approx(1.0296127, rel=1e-6)


def test_batch_mean() -> None:
    # The second row has identical (zero) logits, so it adds KL = 0 and halves the batch mean.
    student = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    teacher = torch.tensor([[0.0, 2.0], [0.0, 0.0]])
    assert kd_kl_loss(student, teacher, 2.0).item() == pytest.approx(4 * KL_T_S / 2, rel=1e-6)


def test_direction_is_teacher_to_student() -> None:
    student = torch.tensor([[1.0, 0.0]])
    teacher = torch.tensor([[0.0, 2.0]])
    forward = kd_kl_loss(student, teacher, 2.0).item()
    reversed_ = kd_kl_loss(teacher, student, 2.0).item()  # swapping the roles gives KL(student || teacher)
    assert reversed_ == pytest.approx(4 * KL_S_T, rel=1e-6)
    assert abs(forward - reversed_) > 0.05
    assert forward == pytest.approx(4 * KL_T_S, rel=1e-6)


def test_temperature_one_matches_plain_kl() -> None:
    student = torch.tensor([[2.0, -1.0, 0.5]])
    teacher = torch.tensor([[0.0, 1.0, 3.0]])
    p_s = [math.exp(v) for v in (2.0, -1.0, 0.5)]
    p_s = [v / sum(p_s) for v in p_s]
    p_t = [math.exp(v) for v in (0.0, 1.0, 3.0)]
    p_t = [v / sum(p_t) for v in p_t]
    expected = sum(t * math.log(t / s) for t, s in zip(p_t, p_s, strict=True))
    assert kd_kl_loss(student, teacher, 1.0).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0, 7.5])
def test_gradient_has_t_squared_scaling(temperature: float) -> None:
    g = torch.Generator().manual_seed(3)
    batch = 5
    student = (torch.randn(batch, 6, generator=g) * 3).requires_grad_(True)
    teacher = torch.randn(batch, 6, generator=g) * 3
    kd_kl_loss(student, teacher, temperature).backward()
    # d/ds [T^2 / B * sum KL(softmax(t/T) || softmax(s/T))] = T^2 / B * (softmax(s/T) - softmax(t/T)) / T
    expected = torch.softmax(student.detach() / temperature, -1) - torch.softmax(teacher / temperature, -1)
    expected = expected * temperature / batch
    torch.testing.assert_close(student.grad, expected, rtol=1e-5, atol=1e-7)


def test_identical_logits_give_exactly_zero() -> None:
    logits = torch.randn(4, 10, generator=torch.Generator().manual_seed(0)) * 5
    assert kd_kl_loss(logits, logits.clone(), 4.0).item() == 0.0


def test_kd_method_sends_no_gradient_to_teacher_logits() -> None:
    method = build_method("kd", temperature=3.0, num_classes=4)
    student = torch.randn(3, 4, requires_grad=True)
    teacher = torch.randn(3, 4, requires_grad=True)
    terms = method(ModelOutputs(student, {}), ModelOutputs(teacher, {}), {})
    terms["kd"].backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None
    assert terms["kd"].item() == pytest.approx(kd_kl_loss(student, teacher, 3.0).item(), rel=1e-6)


def _small_model() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 3))


def test_live_teacher_stays_frozen_in_eval_mode() -> None:
    model = _small_model()
    teacher = LiveTeacher(model)
    parent = nn.ModuleDict({"teacher": teacher.module, "other": nn.Linear(2, 2)})
    teacher.module.train()
    parent.train()
    assert not teacher.module.training
    assert not any(m.training for m in model.modules())
    assert parent["other"].training
    assert all(not p.requires_grad for p in model.parameters())
    batch = {"input": torch.randn(6, 4), "target": torch.zeros(6, dtype=torch.long)}
    first, second = teacher.outputs(batch).logits, teacher.outputs(batch).logits
    assert first.grad_fn is None and not first.requires_grad
    torch.testing.assert_close(first, second)  # dropout is off: eval mode really holds


def test_frozen_module_train_returns_itself() -> None:
    frozen = FrozenModule(_small_model())
    assert frozen.train(True) is frozen
    assert not frozen.training


def test_distillation_leaves_teacher_weights_untouched(tmp_path, monkeypatch) -> None:
    from kdistill import api, load_config
    from kdistill.models import build_model, save_weights
    from kdistill.models.weights import read_state_dict

    teacher_model = build_model(load_config().student.model_copy(update={"kwargs": {"width": 16}}), (1, 8, 8), 10)
    weights = save_weights(teacher_model, tmp_path / "teacher.safetensors")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    built = []

    def capture(*args, **kwargs):
        built.append(real_build_teacher(*args, **kwargs))
        return built[-1]

    real_build_teacher = api.build_teacher
    monkeypatch.setattr(api, "build_teacher", capture)
    config = load_config(
        overrides=[
            f"output_dir={tmp_path / 'runs'}",
            "name=kd",
            "student.kwargs={width: 8}",
            "teacher={name: mlp, kwargs: {width: 16}, weights: " + str(weights) + "}",
            "distill.alpha=0.0",
            "trainer.epochs=1",
            "trainer.progress=false",
            "trainer.accelerator=cpu",
        ]
    )
    result = api.distill(config)
    assert result.history[0]["train_kd"] > 0
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == digest
    # The teacher module that took part in the run (not a copy) still holds the file's weights.
    assert len(built) == 1
    saved = read_state_dict(weights)
    for key, value in built[0].model.state_dict().items():
        torch.testing.assert_close(value, saved[key], rtol=0, atol=0)
    assert all(not p.requires_grad and p.grad is None for p in built[0].model.parameters())
