"""Gradient accumulation through the real trainer step: one batch of 8 == four accumulated micro-batches of 2.

The records have different lengths and prompt sizes, so the micro-batches hold different token counts; only a
per-token normalisation over the whole optimiser step (``CausalLMTask.prepare_step``) makes the two agree.
"""

from __future__ import annotations

import copy
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from kdistill.config import ModelConfig, RunConfig, TrainerConfig  # noqa: E402
from kdistill.data.text import TextRecord, tokenize_records  # noqa: E402
from kdistill.lm.tokenizer import ByteTokenizer  # noqa: E402
from kdistill.methods import token_kd  # noqa: E402, F401  (registration)
from kdistill.methods.base import build_method  # noqa: E402
from kdistill.models import build_model  # noqa: E402
from kdistill.tasks import CausalLMTask  # noqa: E402
from kdistill.teacher import LiveTeacher  # noqa: E402
from kdistill.trainer import DistillationModule, Phase, Trainer, make_fabric  # noqa: E402

MAX_LENGTH = 24
RECORDS = [
    TextRecord("", "a"),
    TextRecord("def f(x):", " return x + 1"),
    TextRecord("", "the quick brown fox jumps"),
    TextRecord("q: ", "yes"),
    TextRecord("", "import os, sys, re"),
    TextRecord("prompt that is long ", "ok"),
    TextRecord("", "x = [i * i for i in range(10)]"),  # overlong: truncated
    TextRecord("", "ab"),
]


def _batch(dataset, rows: range) -> dict[str, torch.Tensor]:
    items = [dataset[i] for i in rows]
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


def _step(tmp_path, student, micro_batches, teacher, phase, name: str) -> dict[str, torch.Tensor]:
    config = RunConfig(name=name, task="causal-lm", output_dir=str(tmp_path),
                       trainer=TrainerConfig(accelerator="cpu", devices=1, precision="32-true",
                                             accumulate_grad_batches=len(micro_batches), progress=False))
    task = CausalLMTask()
    fabric = make_fabric(config, tmp_path / name)
    trainer = Trainer(config, tmp_path / name, task, fabric)
    methods = {m: build_method(m, 1.0, student.config.vocab_size) for m in phase.weights}
    module = DistillationModule(student, methods, task)
    optimizer = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=1.0)
    wrapped, optimizer = fabric.setup(module, optimizer)
    trainer._optimizer_step(micro_batches, wrapped, optimizer, teacher, phase, epoch=0)
    return {k: v.detach().clone() for k, v in student.state_dict().items()}


@pytest.mark.parametrize("weights", [{}, {"token_fkl": 1.0}], ids=["task-only", "token_fkl"])
def test_one_batch_of_8_equals_four_micro_batches_of_2(tmp_path, weights):
    torch.set_num_threads(1)
    tokenizer = ByteTokenizer()
    with pytest.warns(UserWarning, match="truncated"):
        data = tokenize_records(RECORDS, tokenizer, MAX_LENGTH, "truncate", "test")
    counts = [int((data.labels[i, 1:] != -100).sum()) for i in range(len(data))]
    assert len({sum(counts[i : i + 2]) for i in range(0, 8, 2)}) > 1  # micro-batches differ in token count
    shape = (MAX_LENGTH,)
    torch.manual_seed(0)
    student = build_model(ModelConfig(name="tiny-gpt2", kwargs={"hidden": 32, "n_layer": 2, "heads": 2}), shape,
                          tokenizer.vocab_size)
    torch.manual_seed(1)
    teacher_model = build_model(ModelConfig(name="tiny-gpt2", kwargs={"hidden": 32, "n_layer": 1, "heads": 2}),
                                shape, tokenizer.vocab_size)
    teacher = LiveTeacher(teacher_model, task=CausalLMTask()) if weights else None
    phase = Phase(alpha=0.3 if weights else 1.0, weights=weights)
    initial = {k: v.clone() for k, v in student.state_dict().items()}

    whole = _step(tmp_path, copy.deepcopy(student), [_batch(data, range(8))], teacher, phase, "whole")
    parts = [_batch(data, range(i, i + 2)) for i in range(0, 8, 2)]
    accumulated = _step(tmp_path, copy.deepcopy(student), parts, teacher, phase, "accumulated")

    moved = max(float((whole[k] - initial[k]).abs().max()) for k in initial)
    assert moved > 1e-3  # the step did something
    for key in whole:
        assert torch.allclose(whole[key], accumulated[key], atol=1e-5, rtol=1e-4), key


def test_per_micro_batch_means_would_differ(tmp_path, monkeypatch):
    """Control: with the default (mean per micro-batch, divided by their number) the two disagree on this data."""
    torch.set_num_threads(1)
    tokenizer = ByteTokenizer()
    with pytest.warns(UserWarning, match="truncated"):
        data = tokenize_records(RECORDS, tokenizer, MAX_LENGTH, "truncate", "test")
    torch.manual_seed(0)
    student = build_model(ModelConfig(name="tiny-gpt2", kwargs={"hidden": 32, "n_layer": 2, "heads": 2}),
                          (MAX_LENGTH,), tokenizer.vocab_size)
    monkeypatch.setattr(CausalLMTask, "prepare_step", lambda self, micro_batches: float(len(micro_batches)))
    phase = Phase(alpha=1.0, weights={})
    whole = _step(tmp_path, copy.deepcopy(student), [_batch(data, range(8))], None, phase, "whole")
    parts = [_batch(data, range(i, i + 2)) for i in range(0, 8, 2)]
    accumulated = _step(tmp_path, copy.deepcopy(student), parts, None, phase, "accumulated")
    assert max(float((whole[k] - accumulated[k]).abs().max()) for k in whole) > 1e-3
