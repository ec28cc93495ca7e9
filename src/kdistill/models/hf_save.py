"""Hugging Face students saved in their own format: ``runs/<name>/hf/`` holds ``save_pretrained``'s config and
weights (tied weights as transformers stores them) plus the tokenizer files where the run used an HF tokenizer, so
``AutoModelForCausalLM.from_pretrained("runs/<name>/hf")`` (and ``AutoTokenizer``) load the distilled student.

The byte tokenizer has no HF files; its runs get the model only (``kdistill.lm.tokenizer`` encodes their text).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from kdistill.config import RunConfig

HF_FOLDER = "hf"


def save_hf_format(student: nn.Module, config: RunConfig, run_dir: Path) -> Path | None:
    """Write ``run_dir/hf/`` for a transformers model (anything with ``save_pretrained``); None for other models."""
    save_pretrained = getattr(student, "save_pretrained", None)
    if save_pretrained is None:
        return None
    folder = run_dir / HF_FOLDER
    save_pretrained(str(folder), safe_serialization=True)
    tokenizer_dir = _tokenizer_folder(config)
    if tokenizer_dir is not None:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(str(tokenizer_dir)).save_pretrained(str(folder))
    return folder


def _tokenizer_folder(config: RunConfig) -> Path | None:
    """The local folder of the run's HF tokenizer: data.tokenizer, else an ``hf:<folder>`` student's own files."""
    candidates = [config.data.tokenizer]
    name = config.student.name
    if name.startswith("hf:"):
        candidates.append(name.removeprefix("hf:"))
    for candidate in candidates:
        if candidate and Path(candidate).is_dir() and any(Path(candidate).glob("tokenizer*")):
            return Path(candidate)
    return None
