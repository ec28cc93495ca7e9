"""Generated training data: sequence-level KD and GKD's on-policy mixing.

* Sequence-level KD (Kim & Rush, EMNLP 2016, arXiv:1606.07947): the teacher completes every prompt once
  (``write_sequence_kd_data``), the completions are stored as prompt/completion jsonl, and the student trains on
  them with the ordinary ``jsonl:<path>`` source (hard-label CE on the teacher's outputs, no teacher at train time).
  From a config: ``distill.sequence_kd`` (see ``kdistill.lm.pipeline``).
* On-policy GKD (Agarwal et al., ICLR 2024, arXiv:2306.13649): with probability ``lam`` per step the student
  samples the completions of the batch's prompts, and the teacher then scores the student's own sequences
  (``OnPolicyMixer``, a batch transform the trainer applies before the teacher and student forward passes;
  pair it with ``token_jsd`` or ``token_rkl``). From a config: ``distill.on_policy``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from kdistill.lm.corpus import write_jsonl
from kdistill.lm.tokenizer import TextTokenizer

IGNORE_INDEX = -100


def _left_padded(prompts: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts of different lengths -> (B, P) ids and mask, padded on the left (what decoders generate from)."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, prompt in enumerate(prompts):
        if prompt:
            ids[row, width - len(prompt) :] = torch.tensor(prompt)
            mask[row, width - len(prompt) :] = 1
    return ids, mask


@torch.no_grad()
def sample_continuations(model: nn.Module, prompts: Sequence[list[int]], max_new_tokens: int, pad_id: int,
                         eos_id: int | None, temperature: float = 1.0, do_sample: bool = True) -> list[list[int]]:
    """New tokens after each prompt, cut after the first eos (kept). The model's train/eval mode is restored."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ids, mask = _left_padded(prompts, pad_id)
    try:
        output = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=do_sample,
                                temperature=temperature if do_sample else None, max_new_tokens=max_new_tokens,
                                pad_token_id=pad_id, eos_token_id=eos_id, top_k=None, top_p=None)
    finally:
        model.train(was_training)
    continuations = []
    for row in output[:, ids.shape[1] :].tolist():
        if eos_id is not None and eos_id in row:
            row = row[: row.index(eos_id) + 1]
        continuations.append([t for t in row if t != pad_id])
    return continuations


def write_sequence_kd_data(teacher: nn.Module, tokenizer: TextTokenizer, prompts: Sequence[str], path: str | Path,
                           max_new_tokens: int = 64, batch_size: int = 16, greedy: bool = True) -> Path:
    """Teacher completions of ``prompts`` (greedy: Kim & Rush's beam-1 approximation) as prompt/completion jsonl."""
    records = []
    for start in range(0, len(prompts), batch_size):
        chunk = list(prompts[start : start + batch_size])
        token_prompts = [([tokenizer.bos_id] if tokenizer.bos_id is not None else []) + tokenizer.encode(p)
                         for p in chunk]
        outputs = sample_continuations(teacher, token_prompts, max_new_tokens, tokenizer.pad_id, tokenizer.eos_id,
                                       do_sample=not greedy)
        records += [{"prompt": p, "completion": tokenizer.decode(o)} for p, o in zip(chunk, outputs, strict=True)]
    return write_jsonl(records, path)


def prompt_lengths(labels: torch.Tensor, attention_mask: torch.Tensor) -> list[int]:
    """Tokens before the first target in each row (the prompt, bos included). (B, T) -> B ints."""
    lengths = []
    for row_labels, row_mask in zip(labels, attention_mask, strict=True):
        targets = torch.nonzero(row_labels != IGNORE_INDEX).flatten()
        lengths.append(int(targets[0]) if len(targets) else int(row_mask.sum()))
    return lengths


class OnPolicyMixer:
    """GKD's data mix: with probability ``lam`` replace the batch's completions by the student's samples.

    A batch transform (``Trainer.fit(batch_transform=...)``): called as ``mixer(student, batch)`` on each micro-batch
    before the teacher and student forward passes and before the step's tokens are counted. The prompt of a row is
    everything before its first target (for plain text: just the bos token). The coin flips are reseeded per epoch
    (``set_epoch``) and the samples use torch's RNG (restored from checkpoints), so a resumed run mixes the same way.
    """

    def __init__(self, lam: float = 0.5, max_new_tokens: int = 32, temperature: float = 1.0, pad_id: int = 256,
                 eos_id: int | None = 258, seed: int = 0) -> None:
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"GKD lambda (student-generated share) must be in [0, 1], got {lam}")
        self.lam, self.max_new_tokens, self.temperature = lam, max_new_tokens, temperature
        self.pad_id, self.eos_id = pad_id, eos_id
        self.seed = seed
        self.random = random.Random(seed)

    def set_epoch(self, epoch: int) -> None:
        self.random.seed(self.seed * 100_003 + epoch)

    def state_dict(self) -> dict:  # the coin flips so far, for checkpoints taken inside an epoch
        return {"random": self.random.getstate()}

    def load_state_dict(self, state: dict) -> None:
        version, internal, gauss = state["random"]
        self.random.setstate((version, tuple(internal), gauss))

    def __call__(self, student: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.random.random() >= self.lam:
            return batch
        labels, mask, ids = batch["labels"], batch["attention_mask"], batch["input_ids"]
        starts = prompt_lengths(labels, mask)
        prompts = [ids[row, :start].tolist() for row, start in enumerate(starts)]
        width = ids.shape[1]
        budget = min(self.max_new_tokens, width - min(starts))
        samples = sample_continuations(student, prompts, max(budget, 1), self.pad_id, self.eos_id, self.temperature)
        new_ids = torch.full_like(ids, self.pad_id)  # (B, T)
        new_mask = torch.zeros_like(mask)
        new_labels = torch.full_like(labels, IGNORE_INDEX)
        for row, (prompt, sample) in enumerate(zip(prompts, samples, strict=True)):
            sequence = (prompt + sample)[:width]
            new_ids[row, : len(sequence)] = torch.tensor(sequence)
            new_mask[row, : len(sequence)] = 1
            new_labels[row, len(prompt) : len(sequence)] = new_ids[row, len(prompt) : len(sequence)]
        out = {**batch, "input_ids": new_ids, "attention_mask": new_mask, "labels": new_labels}
        if "input" in batch:
            out["input"] = new_ids
        return out
