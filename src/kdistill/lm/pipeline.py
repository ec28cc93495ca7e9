"""Language-model options of ``kdistill distill`` (task causal-lm), wired into ``kdistill.api``:

* **A teacher with its own tokenizer** (``teacher.tokenizer``; default: the tokenizer files of an ``hf:<folder>``
  teacher, else ``data.tokenizer``). When it differs from the student's (``data.tokenizer``), the vocabulary check
  (``kdistill.lm.vocab``) refuses the run unless every method is a cross-tokenizer one (``uld``); with ``uld`` each
  text item is also tokenised by the teacher's tokenizer (keys ``teacher_input_ids``, ``teacher_attention_mask``,
  ``teacher_labels``, same prompt masking), the live teacher reads those keys (``kdistill.teachers.teacher_view``)
  and ``uld`` aligns the k-th student target token with the k-th teacher target token. Long texts are truncated to
  ``data.max_length`` tokens on each side separately.
* **Sequence-level KD** (``distill.sequence_kd``; Kim & Rush, EMNLP 2016): before training the teacher completes
  the training split's prompts once; the completions are stored as ``<run>/sequence_kd/train.jsonl`` (reused, not
  regenerated, on ``--resume``) and replace the training split, so the task loss is hard-label CE on the teacher's
  text (token-level methods may be added on top; ``distill.methods`` may be empty). Prompts: the ``prompt`` field
  of jsonl prompt/completion data; for plain text (``text:`` sources, a jsonl text field) the first
  ``sequence_kd.prompt_tokens`` tokens (student tokenizer) of each document, cut back to a whole-character prefix.
  Validation and test keep the original data.
* **On-policy GKD** (``distill.on_policy``; Agarwal et al., ICLR 2024): an ``OnPolicyMixer`` given to the trainer as
  its ``batch_transform``, seeded from ``config.seed``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import lightning_fabric as L
import torch
from torch import nn
from torch.utils.data import Dataset

from kdistill.config import RunConfig
from kdistill.data.base import DataSplits
from kdistill.data.text import TextRecord, TokenizedDataset, tokenize_records
from kdistill.errors import ConfigError, DataError
from kdistill.lm.generation import OnPolicyMixer, write_sequence_kd_data
from kdistill.lm.tokenizer import TextTokenizer, load_tokenizer
from kdistill.lm.vocab import check_tokenizers, vocabulary_differences
from kdistill.methods.base import METHODS

SEQUENCE_KD_FILE = "sequence_kd/train.jsonl"  # inside the run folder
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


@dataclass
class LMSetup:
    """The tokenizers of a causal-lm distillation run; ``cross_tokenizer``: items carry ``teacher_*`` keys."""

    student_tokenizer: TextTokenizer
    teacher_tokenizer: TextTokenizer
    cross_tokenizer: bool

    @property
    def teacher_num_classes(self) -> int | None:
        """Vocabulary size to build the teacher with (None: the data's, i.e. the student's)."""
        return self.teacher_tokenizer.vocab_size if self.cross_tokenizer else None


def method_names(config: RunConfig) -> list[str]:
    return list(dict.fromkeys([*config.distill.methods, *(m for s in config.distill.stages for m in s.methods)]))


def teacher_tokenizer_name(config: RunConfig) -> str | None:
    """``teacher.tokenizer``, else the folder of an ``hf:<folder>`` teacher holding tokenizer files, else the data's."""
    teacher = config.teacher
    assert teacher is not None
    if teacher.tokenizer is not None:
        return teacher.tokenizer
    source, _, argument = teacher.name.partition(":")
    if source == "hf" and argument and any((Path(argument) / f).is_file() for f in TOKENIZER_FILES):
        return argument
    return config.data.tokenizer


def same_tokenizer(a: TextTokenizer, b: TextTokenizer) -> bool:
    return a.name == b.name or not vocabulary_differences(a.get_vocab(), b.get_vocab())


def setup_lm(config: RunConfig, splits: DataSplits) -> LMSetup:
    """Check the tokenizers of a causal-lm distillation from a teacher model; add teacher tokens to the splits when
    the tokenizers differ (``uld``)."""
    if config.student.tokenizer is not None and config.student.tokenizer != config.data.tokenizer:
        raise ConfigError("student.tokenizer is not used: the student reads data.tokenizer "
                          f"({config.data.tokenizer!r}); set data.tokenizer instead")
    student_tokenizer = load_tokenizer(config.data.tokenizer)
    name = teacher_tokenizer_name(config)
    teacher_tokenizer = student_tokenizer if name == config.data.tokenizer else load_tokenizer(name)
    cross = not same_tokenizer(teacher_tokenizer, student_tokenizer)
    if cross:
        methods = method_names(config)
        cross_methods = sorted(name for name in METHODS.names() if METHODS.get(name).cross_tokenizer)
        check_tokenizers(teacher_tokenizer, student_tokenizer, methods)  # ModelError unless uld is used
        same_vocab_methods = sorted(m for m in methods if not METHODS.get(m).cross_tokenizer)
        if same_vocab_methods:
            raise ConfigError(f"teacher tokenizer {teacher_tokenizer.name!r} differs from the student's "
                              f"{student_tokenizer.name!r}: methods {same_vocab_methods} compare the two models token "
                              f"by token and need one vocabulary; use only {cross_methods}")
        if config.distill.on_policy is not None:
            raise ConfigError("distill.on_policy needs teacher and student to share a tokenizer (the teacher scores "
                              "the student's sampled tokens); it is not supported with a different teacher.tokenizer")
        data = config.data
        for split in ("train", "val", "test"):
            dataset = getattr(splits, split)
            if not isinstance(dataset, TokenizedDataset):
                raise DataError(f"data {data.name!r}: a teacher with another tokenizer needs a text source "
                                "(text: or jsonl:) whose items can be tokenised again")
            setattr(splits, split, dataset.with_teacher_tokens(teacher_tokenizer, data.max_length, data.on_overlong,
                                                               f"{data.name} {split}"))
    return LMSetup(student_tokenizer, teacher_tokenizer, cross)


def document_prefix(text: str, tokenizer: TextTokenizer, tokens: int) -> str:
    """The text of the first ``tokens`` tokens of ``text``, shortened until it is an exact prefix of ``text`` (a
    byte tokenizer may cut a character in half)."""
    ids = tokenizer.encode(text)[:tokens]
    for count in range(len(ids), 0, -1):
        prefix = tokenizer.decode(ids[:count])
        if prefix and text.startswith(prefix):
            return prefix
    return tokenizer.decode(ids)


def sequence_kd_prompts(dataset: Dataset, tokenizer: TextTokenizer, prompt_tokens: int) -> list[str]:
    """One prompt per training record: its ``prompt`` field, or (plain text) the document's first tokens."""
    if getattr(dataset, "records", None) is None:
        raise DataError("distill.sequence_kd needs a text source (text: or jsonl:) whose texts are kept")
    return [record.prompt if record.prompt else document_prefix(record.completion, tokenizer, prompt_tokens)
            for record in dataset.records]


def read_sequence_kd_records(path: Path) -> list[TextRecord]:
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            records.append(TextRecord(row["prompt"], row["completion"]))
    if not records:
        raise DataError(f"{path}: no sequence-KD records; start the run again with --overwrite")
    return records


def sequence_kd_train_set(config: RunConfig, setup: LMSetup, teacher_model: nn.Module, train_set: Dataset,
                          run_dir: Path, fabric: L.Fabric | None = None) -> TokenizedDataset:
    """The teacher's completions of the training prompts as the new training split (generated once per run)."""
    options = config.distill.sequence_kd
    assert options is not None
    path = run_dir / SEQUENCE_KD_FILE
    if not path.is_file() and (fabric is None or fabric.is_global_zero):
        prompts = sequence_kd_prompts(train_set, setup.student_tokenizer, options.prompt_tokens)
        if fabric is not None:
            teacher_model.to(fabric.device)
        partial = path.with_name(path.name + ".tmp")  # renamed when complete: a kill never leaves half a file
        write_sequence_kd_data(teacher_model, setup.teacher_tokenizer, prompts, partial,
                               max_new_tokens=options.max_new_tokens, batch_size=options.batch_size,
                               greedy=options.greedy)
        partial.replace(path)
    if fabric is not None and fabric.world_size > 1:
        fabric.barrier()
    data = config.data
    dataset = tokenize_records(read_sequence_kd_records(path), setup.student_tokenizer, data.max_length,
                               data.on_overlong, f"sequence-kd {path}")
    if setup.cross_tokenizer:
        dataset = dataset.with_teacher_tokens(setup.teacher_tokenizer, data.max_length, data.on_overlong,
                                              f"sequence-kd {path}")
    return dataset


def on_policy_transform(config: RunConfig, setup: LMSetup) -> OnPolicyMixer | None:
    """GKD's mixer for ``Trainer.fit(batch_transform=...)``, or None when ``distill.on_policy`` is off."""
    options = config.distill.on_policy
    if options is None:
        return None
    tokenizer = setup.student_tokenizer
    return OnPolicyMixer(lam=options.lam, max_new_tokens=options.max_new_tokens, temperature=options.temperature,
                         pad_id=tokenizer.pad_id, eos_id=tokenizer.eos_id, seed=config.seed)


@torch.no_grad()
def cross_tokenizer_teacher_metrics(teacher: nn.Module, test_set: TokenizedDataset, task, batch_size: int
                                    ) -> dict[str, float]:
    """The teacher's test perplexity on the test split in its own tokens (agreement needs one vocabulary)."""
    from kdistill.evaluate import task_metrics

    assert test_set.teacher is not None
    metrics = task_metrics(teacher, test_set.teacher, task, None, batch_size, label="test: teacher")
    return {"teacher_test_perplexity": math.exp(min(metrics["test_loss"], 50.0))}
