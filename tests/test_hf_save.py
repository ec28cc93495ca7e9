"""Issue 18, point 5: a locally saved hf:<folder> teacher loads its own weights (tied ones included) with no
teacher.weights or pretrained flag, and a distilled transformers student is also saved with save_pretrained (plus its
tokenizer) in runs/<name>/hf/, loadable with AutoModelForCausalLM / AutoTokenizer. Through the CLI, in-process."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from cli_helpers import run_main  # noqa: E402
from kdistill import load_model  # noqa: E402
from kdistill.config import ModelConfig  # noqa: E402
from kdistill.models import build_model  # noqa: E402

MAX_LENGTH = 24
TEXTS = [f"Q{i}: add {i} and {i + 1}? the answer is {2 * i + 1}." for i in range(16)]


@pytest.fixture(scope="module")
def hf_teacher(tmp_path_factory) -> dict[str, Path]:
    """A BPE tokenizer and a tiny GPT-2 (lm_head tied to the embeddings) saved together as a local HF folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("hf")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(TEXTS, trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<bos>", "<eos>"],
                                                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>")
    teacher_dir = folder / "teacher"
    fast.save_pretrained(teacher_dir)
    torch.manual_seed(0)
    teacher = build_model(ModelConfig(name="tiny-gpt2", kwargs={"hidden": 32, "pad_token_id": 0, "bos_token_id": 1,
                                                                "eos_token_id": 2}), (MAX_LENGTH,), len(fast))
    assert teacher.lm_head.weight.data_ptr() == teacher.transformer.wte.weight.data_ptr()  # tied
    teacher.save_pretrained(teacher_dir)
    corpus = folder / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"text": text}) + "\n" for text in TEXTS))
    return {"teacher": teacher_dir, "corpus": corpus, "root": folder}


def test_local_hf_teacher_needs_no_weights_flag_and_loads_its_own_tied_weights(hf_teacher):
    from transformers import AutoModelForCausalLM

    saved = AutoModelForCausalLM.from_pretrained(hf_teacher["teacher"])
    built = build_model(ModelConfig(name=f"hf:{hf_teacher['teacher']}"), (MAX_LENGTH,), saved.config.vocab_size)
    ids = torch.arange(10).unsqueeze(0)
    torch.testing.assert_close(built(input_ids=ids).logits, saved(input_ids=ids).logits)
    torch.testing.assert_close(built.lm_head.weight, built.transformer.wte.weight)


def test_distilled_hf_student_loads_with_from_pretrained_and_its_tokenizer(hf_teacher, tmp_path, monkeypatch,
                                                                          capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = {
        "name": "lm-kd", "task": "causal-lm", "output_dir": str(tmp_path),
        "data": {"name": f"jsonl:{hf_teacher['corpus']}", "max_length": MAX_LENGTH, "val_fraction": 0.2,
                 "test_fraction": 0.2, "tokenizer": str(hf_teacher["teacher"])},
        "student": {"name": "tiny-gpt2", "kwargs": {"hidden": 16, "n_layer": 1, "pad_token_id": 0,
                                                    "bos_token_id": 1, "eos_token_id": 2}},
        "teacher": {"name": f"hf:{hf_teacher['teacher']}"},  # no weights, no pretrained: the folder's own
        "distill": {"temperature": 1.0, "alpha": 0.5, "methods": {"token_fkl": 1.0}},
        "trainer": {"epochs": 1, "batch_size": 4, "eval_batch_size": 8, "accelerator": "cpu", "progress": False},
    }
    path = tmp_path / "lm.yaml"
    path.write_text(yaml.safe_dump(config))
    code, out, err = run_main(monkeypatch, capsys, "distill", str(path))
    assert code == 0, err
    run = tmp_path / "lm-kd"
    assert f"Hugging Face format: {run / 'hf'}" in out
    assert "teacher_test_perplexity" in json.loads((run / "summary.json").read_text())
    student = AutoModelForCausalLM.from_pretrained(run / "hf")
    tokenizer = AutoTokenizer.from_pretrained(run / "hf")
    ids = torch.tensor([tokenizer("Q3: add 3 and 4?")["input_ids"]])
    ours = load_model(run)  # the same weights, read from student.safetensors
    torch.testing.assert_close(student(input_ids=ids).logits, ours(input_ids=ids).logits)
