"""Text sources for language models: ``text:<path>`` and ``jsonl:<path>``.

* ``text:<file>``: one document per non-empty line; ``text:<folder>``: every ``*.txt`` file is one document.
* ``jsonl:<file>``: one JSON object per line with the field ``data.text_field``, or ``prompt`` and ``completion``
  fields (the loss then covers the completion tokens only).

Each item is ``{"input_ids", "attention_mask", "labels", "index"}`` padded to ``data.max_length`` (``labels`` is
-100 on prompt and padding; the shift for next-token prediction happens in the loss), plus ``"input"`` (the same
tensor as ``input_ids``) so code written for classifiers (``DataSplits.sample_input``) still finds an input.
Datasets keep their records; ``TokenizedDataset.with_teacher_tokens`` adds ``teacher_input_ids``,
``teacher_attention_mask`` and ``teacher_labels`` in a teacher's own tokenizer (``uld`` across tokenizers).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from kdistill.config import DataConfig
from kdistill.data.base import DATA_SOURCES, DataSplits, split_indices
from kdistill.errors import DataError
from kdistill.lm.tokenizer import TextTokenizer, load_tokenizer

IGNORE_INDEX = -100


@dataclass(frozen=True)
class TextRecord:
    prompt: str  # "" for plain text: every token is a target
    completion: str


class TokenizedDataset(Dataset):
    """Fixed-length token tensors (N, L) for input ids, attention mask and labels.

    ``records`` keeps the source texts row by row (sequence-level KD takes its prompts from them). ``teacher`` is
    an optional copy of the same records in a teacher's own tokens (``with_teacher_tokens``, for the cross-tokenizer
    method ``uld``): items then also carry ``teacher_input_ids``, ``teacher_attention_mask`` and ``teacher_labels``.
    """

    def __init__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor,
                 records: list[TextRecord] | None = None, teacher: TokenizedDataset | None = None) -> None:
        self.input_ids, self.attention_mask, self.labels = input_ids, attention_mask, labels
        self.records, self.teacher = records, teacher

    def __len__(self) -> int:
        return len(self.input_ids)

    def subset(self, rows: torch.Tensor) -> TokenizedDataset:
        records = [self.records[i] for i in rows.tolist()] if self.records is not None else None
        teacher = self.teacher.subset(rows) if self.teacher is not None else None
        return TokenizedDataset(self.input_ids[rows], self.attention_mask[rows], self.labels[rows], records, teacher)

    def with_teacher_tokens(self, tokenizer: TextTokenizer, max_length: int, on_overlong: str,
                            source: str) -> TokenizedDataset:
        """The same rows, plus each record tokenised by the teacher's ``tokenizer`` (same prompt masking)."""
        if self.records is None:
            raise DataError(f"{source}: the texts are not kept, so they cannot be tokenised for the teacher")
        teacher = tokenize_records(self.records, tokenizer, max_length, on_overlong, f"{source} (teacher tokens)")
        return TokenizedDataset(self.input_ids, self.attention_mask, self.labels, self.records, teacher)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        ids = self.input_ids[index]
        item = {"input_ids": ids, "input": ids, "attention_mask": self.attention_mask[index],
                "labels": self.labels[index], "index": torch.tensor(index)}
        if self.teacher is not None:
            item.update(teacher_input_ids=self.teacher.input_ids[index],
                        teacher_attention_mask=self.teacher.attention_mask[index],
                        teacher_labels=self.teacher.labels[index])
        return item


def read_text_file(path: Path) -> str:
    """The file as UTF-8 text; empty or binary files are a DataError."""
    raw = path.read_bytes()
    if b"\x00" in raw[:8192]:
        raise DataError(f"{path}: looks binary (contains NUL bytes); text sources need UTF-8 text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not text.strip():
        raise DataError(f"{path}: empty file")
    return text


def read_text_records(path: Path) -> list[TextRecord]:
    if path.is_dir():
        files = sorted(path.glob("*.txt"))
        if not files:
            raise DataError(f"{path}: folder has no .txt files")
        return [TextRecord("", read_text_file(f)) for f in files]
    return [TextRecord("", line) for line in read_text_file(path).splitlines() if line.strip()]


def read_jsonl_records(path: Path, text_field: str) -> list[TextRecord]:
    records = []
    for number, line in enumerate(read_text_file(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
        if text_field in row:
            records.append(TextRecord("", _string(row[text_field], path, number, text_field)))
        elif "prompt" in row and "completion" in row:
            prompt = _string(row["prompt"], path, number, "prompt")
            records.append(TextRecord(prompt, _string(row["completion"], path, number, "completion")))
        else:
            raise DataError(f"{path}:{number}: no field {text_field!r} (data.text_field) and no prompt/completion "
                            f"pair; fields are {sorted(row)}")
    if not records:
        raise DataError(f"{path}: no records")
    return records


def _string(value: object, path: Path, number: int, field: str) -> str:
    if not isinstance(value, str):
        raise DataError(f"{path}:{number}: field {field!r} must be a string, got {type(value).__name__}")
    return value


def tokenize_records(records: list[TextRecord], tokenizer: TextTokenizer, max_length: int, on_overlong: str,
                     source: str) -> TokenizedDataset:
    """``[bos] prompt completion [eos]``, labels only on completion (+ eos), right-padded to ``max_length``."""
    count = len(records)
    input_ids = torch.full((count, max_length), tokenizer.pad_id, dtype=torch.long)  # (N, L)
    labels = torch.full((count, max_length), IGNORE_INDEX, dtype=torch.long)  # (N, L)
    attention_mask = torch.zeros((count, max_length), dtype=torch.long)  # (N, L)
    overlong = 0
    for row, record in enumerate(records):
        prefix = ([tokenizer.bos_id] if tokenizer.bos_id is not None else []) + tokenizer.encode(record.prompt)
        target = tokenizer.encode(record.completion) + ([tokenizer.eos_id] if tokenizer.eos_id is not None else [])
        ids = (prefix + target)[:max_length]
        if len(prefix) + len(target) > max_length:
            overlong += 1
            if on_overlong == "error":
                raise DataError(f"{source}: record {row} has {len(prefix) + len(target)} tokens > data.max_length="
                                f"{max_length}; raise max_length or set data.on_overlong=truncate")
        input_ids[row, : len(ids)] = torch.tensor(ids)
        attention_mask[row, : len(ids)] = 1
        labels[row, len(prefix) : len(ids)] = input_ids[row, len(prefix) : len(ids)]
    if overlong:
        warnings.warn(f"{source}: {overlong} of {count} records longer than data.max_length={max_length} were "
                      "truncated", stacklevel=4)
    return TokenizedDataset(input_ids, attention_mask, labels, list(records))


def build_text_splits(config: DataConfig, records: list[TextRecord], source: str) -> DataSplits:
    """Split records into train/val/test (``split_seed``), tokenize with ``data.tokenizer`` (default: bytes)."""
    tokenizer = load_tokenizer(config.tokenizer)
    test_part, rest = split_indices(len(records), [config.test_fraction], config.split_seed)
    val_part, train_part = split_indices(len(rest), [config.val_fraction], config.split_seed + 1)
    val_part, train_part = rest[val_part], rest[train_part]
    if config.train_fraction < 1.0:
        train_part = train_part[split_indices(len(train_part), [config.train_fraction], config.split_seed + 2)[0]]
    if len(train_part) == 0:
        raise DataError(f"data {config.name!r}: the training split is empty ({len(records)} records); add data or "
                        "lower val_fraction/test_fraction")
    tokens = tokenize_records(records, tokenizer, config.max_length, config.on_overlong, source)
    splits = [tokens.subset(part) for part in (train_part, val_part, test_part)]
    return DataSplits(train=splits[0], val=splits[1], test=splits[2], num_classes=tokenizer.vocab_size,
                      input_shape=(config.max_length,), description=f"{source} ({tokenizer.name} tokens): "
                      f"{len(splits[0])} train / {len(splits[1])} val / {len(splits[2])} test")


def _existing(argument: str | None, kind: str, config: DataConfig) -> Path:
    path = Path(argument or "")
    if not argument or not path.exists():
        raise DataError(f"{kind} path {argument!r} not found (data.name is {config.name!r})")
    return path


@DATA_SOURCES.register("text")
def load_text(config: DataConfig, argument: str | None) -> DataSplits:
    path = _existing(argument, "text", config)
    return build_text_splits(config, read_text_records(path), f"text {path.name}")


@DATA_SOURCES.register("jsonl")
def load_jsonl(config: DataConfig, argument: str | None) -> DataSplits:
    path = _existing(argument, "jsonl", config)
    if path.is_dir():
        raise DataError(f"jsonl path {argument!r} is a folder; give a .jsonl file")
    return build_text_splits(config, read_jsonl_records(path, config.text_field), f"jsonl {path.name}")
