"""Tiny causal LMs, the hf source, the causal-LM task and batch-size-independent token normalisation."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from kdistill.errors import ModelError  # noqa: E402
from kdistill.lm.task import count_tokens, set_step_tokens  # noqa: E402
from kdistill.methods import token_kd  # noqa: E402, F401  (registration)
from kdistill.methods.base import build_method  # noqa: E402
from kdistill.models import hf  # noqa: E402, F401  (registration)
from kdistill.models.base import MODEL_SOURCES, ModelRequest  # noqa: E402
from kdistill.outputs import ModelOutputs  # noqa: E402
from kdistill.tasks import TASKS, CausalLMTask  # noqa: E402

VOCAB, LENGTH = 259, 16


def _build(name: str, num_classes: int = VOCAB, **kwargs):
    torch.manual_seed(0)
    request = ModelRequest(None if ":" not in name else name.split(":", 1)[1], kwargs, (LENGTH,), num_classes, False)
    return MODEL_SOURCES.get(name.split(":", 1)[0])(request)


def _batch(size: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    """Right-padded sequences of different lengths; the first tokens of some are a prompt (-100)."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, 256, (size, LENGTH), generator=generator)
    attention_mask = torch.zeros(size, LENGTH, dtype=torch.long)
    labels = torch.full((size, LENGTH), -100)
    for row in range(size):
        length = 4 + (row * 5) % (LENGTH - 3)
        prompt = row % 3
        attention_mask[row, :length] = 1
        labels[row, prompt + 1 : length] = input_ids[row, prompt + 1 : length]
        input_ids[row, length:] = 256
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])
def test_tiny_models_map_token_ids_to_vocab_logits(name):
    model = _build(name, n_layer=2, hidden=32, heads=2)
    hf.check_token_model_io(model, (LENGTH,), VOCAB, role=name)
    logits = CausalLMTask().logits(model, _batch(2))
    assert logits.shape == (2, LENGTH, VOCAB)
    assert model.config.pad_token_id == 256 and model.config.eos_token_id == 258
    assert sum(p.numel() for p in model.parameters()) < 100_000
    with pytest.raises(ModelError, match="tokenizer has 300 tokens"):
        hf.check_token_model_io(model, (LENGTH,), 300, role=name)


def test_unknown_tiny_model_option_is_refused():
    with pytest.raises(ModelError, match=r"unknown option\(s\) \['n_layers'\].*knobs: vocab_size, n_layer"):
        _build("tiny-gpt2", n_layers=3)
    assert _build("tiny-llama", rms_norm_eps=1e-5).config.rms_norm_eps == 1e-5


def test_base_check_model_io_routes_token_models_to_the_token_check():
    """models/base.check_model_io feeds token ids to text models: right vocab passes, a wrong one is a ModelError."""
    from kdistill.models.base import check_model_io

    model = _build("tiny-gpt2")
    assert hf.is_token_model(model)
    check_model_io(model, (LENGTH,), VOCAB, role="tiny-gpt2")
    with pytest.raises(ModelError):
        check_model_io(model, (LENGTH,), VOCAB + 7, role="tiny-gpt2")


def test_hf_source_loads_a_local_folder(tmp_path):
    model = _build("tiny-llama")
    model.save_pretrained(tmp_path)
    loaded = _build(f"hf:{tmp_path}")
    batch = _batch(2)
    torch.testing.assert_close(CausalLMTask().logits(loaded, batch), CausalLMTask().logits(model, batch))
    with pytest.raises(ModelError, match="predicts 259 tokens but the data's tokenizer has 300"):
        _build(f"hf:{tmp_path}", num_classes=300)
    with pytest.raises(ModelError, match="could not be loaded"):
        _build(f"hf:{tmp_path / 'missing'}")


def test_causal_lm_task_loss_and_correct_match_a_naive_loop():
    task = TASKS.get("causal-lm")()
    batch = _batch(4)
    logits = torch.randn(4, LENGTH, VOCAB)
    total, count = 0.0, 0
    hits = 0
    for b in range(4):
        for t in range(LENGTH - 1):
            target = int(batch["labels"][b, t + 1])
            if target == -100:
                continue
            total += float(-F.log_softmax(logits[b, t], -1)[target])
            hits += int(logits[b, t].argmax() == target)
            count += 1
    assert task.loss(logits, batch).item() == pytest.approx(total / count, rel=1e-5)
    assert count_tokens(batch) == count
    correct, predicted = task.correct(logits, batch)
    assert (int(correct), predicted) == (hits, count)
    assert task.loss(logits, {**batch, "labels": torch.full_like(batch["labels"], -100)}).item() == 0.0


def _grads(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


@pytest.mark.parametrize("method_name", [None, "token_fkl", "token_jsd"])
def test_one_batch_of_8_equals_4_accumulated_batches_of_2(method_name):
    student, teacher = _build("tiny-gpt2"), _build("tiny-gpt2", hidden=48)
    task = CausalLMTask()
    method = build_method(method_name, 1.0, VOCAB) if method_name else None
    full = _batch(8)

    def step_loss(batch):
        logits = task.logits(student, batch)
        loss = task.loss(logits, batch)
        if method is not None:
            with torch.no_grad():
                teacher_logits = task.logits(teacher, batch)
            loss = loss + sum(method(ModelOutputs(logits), ModelOutputs(teacher_logits), batch).values())
        return loss

    set_step_tokens([full])
    one = step_loss(full)
    one.backward()
    grad_one = _grads(student).clone()
    student.zero_grad()
    micro = [{k: v[i : i + 2] for k, v in full.items() if k != "step_tokens"} for i in range(0, 8, 2)]
    assert len({count_tokens(b) for b in micro}) > 1  # unequal token counts: a per-micro-batch mean would differ
    set_step_tokens(micro)
    accumulated = 0.0
    for batch in micro:
        loss = step_loss(batch)
        loss.backward()
        accumulated += loss.item()
    assert accumulated == pytest.approx(one.item(), rel=1e-5)
    torch.testing.assert_close(_grads(student), grad_one, rtol=1e-4, atol=1e-6)
    # The naive alternative (mean per micro-batch, averaged) is measurably different: the test can fail.
    naive = sum(task.loss(task.logits(student, b), {k: v for k, v in b.items() if k != "step_tokens"}).item()
                for b in micro) / 4
    if method is None:
        assert abs(naive - one.item()) > 1e-4


def test_token_kd_trains_a_tiny_student_towards_its_teacher():
    teacher, student = _build("tiny-gpt2", hidden=48), _build("tiny-llama")
    task = CausalLMTask()
    method = build_method("token_fkl", 1.0, VOCAB)
    optimizer = torch.optim.AdamW(student.parameters(), lr=3e-3)
    batch = _batch(8)
    with torch.no_grad():
        teacher_logits = task.logits(teacher, batch)
    losses = []
    for _ in range(30):
        terms = method(ModelOutputs(task.logits(student, batch)), ModelOutputs(teacher_logits), batch)
        optimizer.zero_grad()
        terms["fkl"].backward()
        optimizer.step()
        losses.append(terms["fkl"].item())
    assert losses[-1] < 0.5 * losses[0]
