"""Sequence-level KD data and GKD on-policy mixing with a tiny GPT-2."""

from __future__ import annotations

import json
import os

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from kdistill.config import DataConfig  # noqa: E402
from kdistill.data import text  # noqa: E402, F401  (registration)
from kdistill.data.base import load_data  # noqa: E402
from kdistill.lm.generation import OnPolicyMixer, prompt_lengths, write_sequence_kd_data  # noqa: E402
from kdistill.lm.tokenizer import ByteTokenizer  # noqa: E402
from kdistill.models import hf  # noqa: E402
from kdistill.models.base import ModelRequest  # noqa: E402


def _tiny():
    torch.manual_seed(0)
    return hf.build_tiny_gpt2(ModelRequest(None, {}, (24,), 259, False))


def test_sequence_kd_file_holds_teacher_completions_and_loads(tmp_path):
    teacher, tok = _tiny(), ByteTokenizer()
    prompts = [f"def f{i}(x):" for i in range(8)]
    path = write_sequence_kd_data(teacher, tok, prompts, tmp_path / "seqkd.jsonl", max_new_tokens=6, batch_size=3)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["prompt"] for r in rows] == prompts
    # Greedy: the same teacher gives the same completions; a different prompt order does not matter.
    again = write_sequence_kd_data(teacher, tok, prompts[::-1], tmp_path / "again.jsonl", max_new_tokens=6)
    reversed_rows = [json.loads(line) for line in again.read_text().splitlines()][::-1]
    assert [r["completion"] for r in reversed_rows] == [r["completion"] for r in rows]
    splits = load_data(DataConfig(name=f"jsonl:{path}", max_length=24, val_fraction=0.25, test_fraction=0.25))
    assert len(splits.train) == 4


def _batch():
    ids = torch.full((3, 24), 256)
    labels = torch.full((3, 24), -100)
    mask = torch.zeros(3, 24, dtype=torch.long)
    for row, (prompt, total) in enumerate([(3, 10), (5, 12), (1, 20)]):
        ids[row, :total] = torch.arange(total) + 40
        mask[row, :total] = 1
        labels[row, prompt:total] = ids[row, prompt:total]
    return {"input_ids": ids, "input": ids, "attention_mask": mask, "labels": labels}


def test_on_policy_mixer_keeps_prompts_and_relabels_student_samples():
    student, batch = _tiny(), _batch()
    assert prompt_lengths(batch["labels"], batch["attention_mask"]) == [3, 5, 1]
    assert OnPolicyMixer(lam=0.0)(student, batch) is batch
    mixed = OnPolicyMixer(lam=1.0, max_new_tokens=8, seed=1)(student, batch)
    assert mixed["input_ids"].shape == batch["input_ids"].shape and mixed["input"] is mixed["input_ids"]
    for row, prompt in enumerate([3, 5, 1]):
        assert torch.equal(mixed["input_ids"][row, :prompt], batch["input_ids"][row, :prompt])
        assert torch.all(mixed["labels"][row, :prompt] == -100)
        length = int(mixed["attention_mask"][row].sum())
        assert prompt < length <= prompt + 8
        assert torch.equal(mixed["labels"][row, prompt:length], mixed["input_ids"][row, prompt:length])
        assert torch.all(mixed["labels"][row, length:] == -100)
    assert not torch.equal(mixed["input_ids"], batch["input_ids"])
    assert student.training  # mode restored
