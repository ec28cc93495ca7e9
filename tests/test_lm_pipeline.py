"""Sequence-level KD, on-policy GKD and the cross-tokenizer (uld) data path, run from configs end to end."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from kdistill import api, cli  # noqa: E402
from kdistill.config import ModelConfig, load_config  # noqa: E402
from kdistill.errors import ConfigError, ModelError  # noqa: E402
from kdistill.lm import pipeline  # noqa: E402
from kdistill.lm.task import STEP_TOKENS_KEY, count_tokens  # noqa: E402
from kdistill.lm.tokenizer import ByteTokenizer, HFTokenizer  # noqa: E402
from kdistill.models import build_model, save_weights  # noqa: E402
from kdistill.teacher import LiveTeacher  # noqa: E402

MAX_LENGTH = 40
PROMPTS = [f"Q{i}: add {i} and {i + 1}? " for i in range(12)]
COMPLETIONS = [f"the answer is {2 * i + 1}." for i in range(12)]
TEACHER_KWARGS = {"hidden": 32, "n_layer": 2, "heads": 2}
STUDENT_KWARGS = {"hidden": 16, "n_layer": 1, "heads": 2}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("lm")
    pairs = folder / "pairs.jsonl"
    rows = [{"prompt": p, "completion": c} for p, c in zip(PROMPTS, COMPLETIONS, strict=True)]
    pairs.write_text("".join(json.dumps(row) + "\n" for row in rows))
    torch.manual_seed(0)
    teacher = build_model(ModelConfig(name="tiny-gpt2", kwargs=TEACHER_KWARGS), (MAX_LENGTH,), 259, role="teacher")
    return {"pairs": pairs, "teacher": save_weights(teacher, folder / "teacher.safetensors"), "folder": folder}


def _config(tmp_path: Path, files: dict[str, Path], name: str, distill: dict, **extra):
    tree = {
        "name": name, "task": "causal-lm", "output_dir": str(tmp_path / "runs"), "seed": 3,
        "data": {"name": f"jsonl:{files['pairs']}", "max_length": MAX_LENGTH, "val_fraction": 0.2,
                 "test_fraction": 0.2},
        "student": {"name": "tiny-gpt2", "kwargs": STUDENT_KWARGS},
        "teacher": {"name": "tiny-gpt2", "kwargs": TEACHER_KWARGS, "weights": str(files["teacher"])},
        "distill": {"temperature": 1.0, "alpha": 0.5, **distill},
        "optim": {"name": "adamw", "lr": 0.003},
        "trainer": {"epochs": 1, "batch_size": 2, "eval_batch_size": 8, "accelerator": "cpu", "progress": False,
                    "accumulate_grad_batches": 2},
    }
    for key, value in extra.items():
        tree[key] = {**tree.get(key, {}), **value} if isinstance(value, dict) else value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def _spy_teacher(monkeypatch) -> list[tuple[dict, torch.Tensor]]:
    """Record every batch the live teacher is asked about, and the logits it returned."""
    seen, original = [], LiveTeacher.outputs

    def outputs(self, batch):
        result = original(self, batch)
        if "teacher_input_ids" in batch:  # what the teacher gives on its own tokens
            with torch.no_grad():
                own = self.module(input_ids=batch["teacher_input_ids"], attention_mask=batch["teacher_attention_mask"])
            torch.testing.assert_close(result.logits, own.logits.float())
        seen.append(({k: v.clone() for k, v in batch.items()}, result.logits))
        return result

    monkeypatch.setattr(LiveTeacher, "outputs", outputs)
    return seen


def _rows(batch: dict, prefix: str = "") -> list[tuple[list[int], list[int]]]:
    """(prompt ids, target ids) of each row: targets are the non-masked labels."""
    rows = []
    for ids, labels in zip(batch[prefix + "input_ids"], batch[prefix + "labels"], strict=True):
        targets = torch.nonzero(labels != -100).flatten().tolist()
        start = targets[0] if targets else len(ids)
        rows.append((ids[:start].tolist(), labels[targets].tolist()))
    return rows


def _byte_prompt(text: str) -> list[int]:
    return [257, *text.encode()]


# ----- on-policy GKD -----


def test_on_policy_lam_1_teacher_scores_the_students_samples(tmp_path, files, monkeypatch):
    seen = _spy_teacher(monkeypatch)
    path = _config(tmp_path, files, "gkd", {"methods": {"token_jsd": 1.0},
                                             "on_policy": {"lam": 1.0, "max_new_tokens": 12}})
    result = api.distill(load_config(path))
    assert seen and result.metrics["test_perplexity"] > 0
    data_prompts = {tuple(_byte_prompt(p)) for p in PROMPTS}
    data_targets = {tuple([*c.encode(), 258]) for c in COMPLETIONS}
    for batch, _ in seen:
        for prompt, target in _rows(batch):
            assert tuple(prompt) in data_prompts  # prompts kept
            assert 1 <= len(target) <= 12 and tuple(target) not in data_targets  # completions are the student's
        # Per-token normalisation counts the mixed batch's targets (mixing happens before prepare_step).
        assert 0 < count_tokens(batch) <= float(batch[STEP_TOKENS_KEY])
    assert len(seen) == 4  # 8 training records, batches of 2, two micro-batches per step
    for first, second in (seen[0:2], seen[2:4]):
        total = count_tokens(first[0]) + count_tokens(second[0])
        assert float(first[0][STEP_TOKENS_KEY]) == float(second[0][STEP_TOKENS_KEY]) == total
    # Reproducible: the same config (seed) gives the same student.
    again = api.distill(load_config(path, [f"output_dir={tmp_path / 'again'}"]))
    for key, value in result.student.state_dict().items():
        torch.testing.assert_close(again.student.state_dict()[key], value)


def test_on_policy_lam_0_leaves_the_batches_unchanged(tmp_path, files, monkeypatch):
    seen = _spy_teacher(monkeypatch)
    path = _config(tmp_path, files, "gkd0", {"methods": {"token_jsd": 1.0}, "on_policy": {"lam": 0.0}})
    api.distill(load_config(path))
    data_rows = {(tuple(_byte_prompt(p)), tuple([*c.encode(), 258]))
                 for p, c in zip(PROMPTS, COMPLETIONS, strict=True)}
    assert seen
    for batch, _ in seen:
        for prompt, target in _rows(batch):
            assert (tuple(prompt), tuple(target)) in data_rows


def test_on_policy_runs_from_the_cli(tmp_path, files, monkeypatch, capsys):
    path = _config(tmp_path, files, "gkd-cli", {"methods": {"token_rkl": 1.0},
                                                 "on_policy": {"lam": 0.5, "max_new_tokens": 4}})
    monkeypatch.setattr(sys, "argv", ["kdistill", "distill", str(path)])
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "runs/gkd-cli/summary.json").is_file()


def test_on_policy_and_sequence_kd_config_errors(tmp_path, files):
    with pytest.raises(ConfigError, match=r"distill.on_policy.lam"):
        load_config(_config(tmp_path, files, "bad", {"on_policy": {"lam": 1.5}}))
    with pytest.raises(ConfigError, match="need task causal-lm"):
        api.distill(load_config(_config(tmp_path, files, "cls", {"on_policy": {"lam": 0.5}}), ["task=classification"]))
    cached = load_config(_config(tmp_path, files, "cache", {"sequence_kd": {}, "methods": {}}),
                         ["teacher.name=cache:nowhere"])
    with pytest.raises(ConfigError, match="distill.sequence_kd needs the teacher's text generation.*kind 'cache'"):
        api.distill(cached)
    with pytest.raises(ConfigError, match="distill.methods is empty"):
        api.distill(load_config(_config(tmp_path, files, "empty", {"methods": {}})))
    assert not (tmp_path / "runs").exists()  # every check happens before the run folder is made


# ----- sequence-level KD -----


def _greedy(model, prompt: list[int], steps: int, eos: int = 258) -> list[int]:
    """Plain argmax decoding, one token at a time (independent of ``generate``)."""
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(steps):
            token = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
            ids.append(token)
            if token == eos:
                break
    return ids[len(prompt) :]


def test_sequence_kd_trains_on_the_teachers_greedy_completions_and_resume_reuses_them(tmp_path, files, monkeypatch):
    steps: list[list[dict]] = []

    class RecordBatches:  # the loop's event, not a patch of its internals
        def on_train_batch_start(self, raw_batches):
            steps.append([{k: v.clone() for k, v in b.items()} for b in raw_batches])

    path = _config(tmp_path, files, "seqkd", {"methods": {}, "sequence_kd": {"max_new_tokens": 10, "batch_size": 3}})
    result = api.distill(load_config(path), callbacks=[RecordBatches()])
    stored = result.run_dir / pipeline.SEQUENCE_KD_FILE
    rows = [json.loads(line) for line in stored.read_text().splitlines()]
    assert len(rows) == 8 and {r["prompt"] for r in rows} <= set(PROMPTS)
    teacher = build_model(ModelConfig(name="tiny-gpt2", kwargs=TEACHER_KWARGS, weights=str(files["teacher"])),
                          (MAX_LENGTH,), 259).eval()
    tok = ByteTokenizer()
    for row in rows:
        expected = tok.decode(_greedy(teacher, _byte_prompt(row["prompt"]), 10))
        assert row["completion"] == expected
    assert not any(r["completion"] in COMPLETIONS for r in rows)
    # The student's training batches hold the teacher's completions (+ eos), never the data's.
    teacher_rows = {(tuple(_byte_prompt(r["prompt"])), tuple([*r["completion"].encode(), 258])) for r in rows}
    trained = [row for step in steps for batch in step for row in _rows(batch)]
    assert len(trained) == 8 and {(tuple(p), tuple(t)) for p, t in trained} == teacher_rows
    # Resume: the stored completions are read back, not generated again.
    before = stored.read_text()

    def no_generation(*args, **kwargs):
        raise AssertionError("sequence-KD data generated again")

    monkeypatch.setattr(pipeline, "write_sequence_kd_data", no_generation)
    resumed = api.distill(load_config(path, ["trainer.epochs=2"]), resume=True)
    assert len(resumed.history) == 2 and stored.read_text() == before
    with pytest.raises(AssertionError, match="generated again"):  # a fresh run does generate
        api.distill(load_config(path), overwrite=True)


def test_sequence_kd_prompts_of_plain_text_are_document_prefixes(tmp_path):
    docs = tmp_path / "docs.txt"
    docs.write_text("héllo wörld and more text\n" + "\n".join(f"plain document {i} body" for i in range(7)))
    from kdistill.config import DataConfig
    from kdistill.data.base import load_data

    splits = load_data(DataConfig(name=f"text:{docs}", max_length=32, val_fraction=0.1, test_fraction=0.1))
    prompts = pipeline.sequence_kd_prompts(splits.train, ByteTokenizer(), prompt_tokens=6)
    texts = [r.completion for r in splits.train.records]
    assert all(t.startswith(p) and 0 < len(p.encode()) <= 6 for p, t in zip(prompts, texts, strict=True))
    assert pipeline.document_prefix("héllo", ByteTokenizer(), 2) == "h"  # never half a character
    assert pipeline.document_prefix("plain document", ByteTokenizer(), 6) == "plain "


# ----- ULD across tokenizers -----


@pytest.fixture(scope="module")
def bpe(files) -> Path:
    """A small byte-level BPE tokenizer (another vocabulary than the student's byte tokenizer), saved locally."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<pad>", "<bos>", "<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(PROMPTS + COMPLETIONS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<bos>",
                                   eos_token="<eos>")
    folder = files["folder"] / "bpe"
    fast.save_pretrained(folder)
    return folder


def test_uld_distils_from_a_teacher_with_another_tokenizer(tmp_path, files, bpe, monkeypatch):
    teacher_tok = HFTokenizer(str(bpe))
    assert teacher_tok.vocab_size != 259
    torch.manual_seed(1)
    teacher = build_model(ModelConfig(name="tiny-llama", kwargs={"hidden": 32}), (MAX_LENGTH,),
                          teacher_tok.vocab_size)
    weights = save_weights(teacher, tmp_path / "bpe-teacher.safetensors")
    seen = _spy_teacher(monkeypatch)
    teacher_block = {"name": "tiny-llama", "kwargs": {"hidden": 32}, "weights": str(weights), "tokenizer": str(bpe)}
    path = _config(tmp_path, files, "uld", {"methods": {"uld": 1.0}}, teacher=teacher_block)
    result = api.distill(load_config(path))
    assert seen and result.metrics["teacher_test_perplexity"] > 0 and "test_agreement" not in result.metrics
    history = result.history[0]
    assert history["train_uld"] > 0
    byte = ByteTokenizer()
    for batch, logits in seen:
        assert logits.shape[-1] == teacher_tok.vocab_size  # the teacher read its own tokens
        assert batch["teacher_input_ids"].max() < teacher_tok.vocab_size
        for row in range(len(batch["input_ids"])):
            ids = batch["input_ids"][row][batch["attention_mask"][row] == 1].tolist()
            teacher_ids = batch["teacher_input_ids"][row][batch["teacher_attention_mask"][row] == 1].tolist()
            assert teacher_tok.decode(teacher_ids) == byte.decode(ids)
            assert len(teacher_ids) < len(ids)  # BPE merges: really other tokens
        for (prompt, target), (t_prompt, t_target) in zip(_rows(batch), _rows(batch, "teacher_"), strict=True):
            assert byte.decode(prompt) == teacher_tok.decode(t_prompt)  # same prompt masking
            assert byte.decode(target) == teacher_tok.decode(t_target)
    # Without uld the vocabularies must match: a clear error before anything runs.
    with pytest.raises(ModelError, match="tokenizer .* differ.*'uld'"):
        api.distill(load_config(path, ["distill.methods={token_fkl: 1.0}", "name=fkl"]))
    with pytest.raises(ConfigError, match=r"methods \['token_fkl'\] compare"):
        api.distill(load_config(path, ["distill.methods={uld: 1.0, token_fkl: 1.0}", "name=both"]))
    assert not (tmp_path / "runs/fkl").exists()


def test_teacher_tokenizer_defaults_to_an_hf_folder_with_tokenizer_files(tmp_path, files, bpe):
    config = load_config(_config(tmp_path, files, "hf", {}), [f"teacher.name=hf:{bpe}"])
    assert pipeline.teacher_tokenizer_name(config) == str(bpe)
    assert pipeline.teacher_tokenizer_name(load_config(_config(tmp_path, files, "tiny", {}))) is None
    explicit = load_config(_config(tmp_path, files, "x", {}), ["teacher.tokenizer=byte"])
    assert pipeline.teacher_tokenizer_name(explicit) == "byte"
