"""Language models from ``transformers``: ``hf:<local path or id>`` and tiny random ``tiny-gpt2`` / ``tiny-llama``.

For language models the data's "class count" is the vocabulary size and its input shape is ``(max_length,)``.
``hf`` loads ``AutoModelForCausalLM`` (or ``AutoModel`` for the embedding task: ``kwargs: {task: embedding}``);
weights come from a local folder (hub ids are resolved by ``transformers`` itself and need internet, which tests
never use). Models are returned unwrapped, so feature taps use the HF module paths (``transformer.h.0``,
``model.layers.0``) and ``save_pretrained`` works on the result.

Tiny models default to the byte tokenizer's specials (pad 256, bos 257, eos 258) when the vocabulary holds them.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from kdistill.errors import ModelError
from kdistill.models.base import MODEL_SOURCES, ModelRequest

LM_TASKS = ("causal-lm", "embedding")
LLAMA_KNOBS = "vocab_size, n_layer, hidden, heads, kv_heads, intermediate, max_positions"


def quiet_transformers() -> None:
    """No per-tensor "Loading weights" bars from transformers: they would fill logs and the CLI's output."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _task_of(request: ModelRequest) -> str:
    """The task the model is for: ``request.task`` if the request carries one, else ``kwargs['task']``."""
    task = getattr(request, "task", None) or request.kwargs.get("task", "causal-lm")
    if task not in LM_TASKS:
        raise ModelError(f"hf models serve tasks {LM_TASKS}, got task {task!r}")
    return task


@MODEL_SOURCES.register("hf")
def build_hf(request: ModelRequest) -> nn.Module:
    from transformers import AutoModel, AutoModelForCausalLM

    name = request.argument or ""
    if not name:
        raise ModelError("hf model needs a local folder (or hub id): hf:/path/to/model")
    kwargs = {k: v for k, v in request.kwargs.items() if k != "task"}
    auto = AutoModel if _task_of(request) == "embedding" else AutoModelForCausalLM
    try:
        quiet_transformers()
        model = auto.from_pretrained(name, **kwargs)
    except OSError as exc:
        where = "folder" if Path(name).exists() else "hub id (offline runs need a local folder)"
        raise ModelError(f"hf model {name!r} ({where}) could not be loaded: {str(exc).splitlines()[0]}") from None
    if auto is AutoModelForCausalLM:
        vocab = model.get_output_embeddings().weight.shape[0]
        if vocab != request.num_classes:
            raise ModelError(f"hf model {name!r} predicts {vocab} tokens but the data's tokenizer has "
                             f"{request.num_classes}; set data.tokenizer to this model's folder")
    return model


# from_pretrained loads the folder's own weights (tied ones included): no teacher.weights or pretrained flag needed
build_hf.ships_weights = True


def _special_ids(vocab_size: int, kwargs: dict) -> dict[str, int | None]:
    """Byte-tokenizer specials when they fit in the vocabulary, unless given."""
    defaults = {"pad_token_id": 256, "bos_token_id": 257, "eos_token_id": 258} if vocab_size >= 259 else {}
    return {k: kwargs.pop(k, defaults.get(k)) for k in ("pad_token_id", "bos_token_id", "eos_token_id")}


def _checked_extra(config_cls: type, kwargs: dict, knobs: str) -> dict:
    """HF configs accept any keyword silently; refuse names that are neither knobs nor config fields."""
    unknown = sorted(k for k in kwargs if not hasattr(config_cls(), k))
    if unknown:
        raise ModelError(f"unknown option(s) {unknown} for {config_cls.__name__}; knobs: {knobs} "
                         "(or any field of the transformers config)")
    return kwargs


def _max_positions(request: ModelRequest, kwargs: dict) -> int:
    length = request.input_shape[0] if len(request.input_shape) == 1 else 128
    return int(kwargs.pop("max_positions", max(length, 128)))


@MODEL_SOURCES.register("tiny-gpt2")
def build_tiny_gpt2(request: ModelRequest) -> nn.Module:
    """GPT-2 (Radford et al. 2019) shape with random weights. Knobs: vocab_size, n_layer, hidden, heads,
    max_positions, dropout."""
    from transformers import GPT2Config, GPT2LMHeadModel

    kwargs = dict(request.kwargs)
    vocab_size = int(kwargs.pop("vocab_size", request.num_classes))
    dropout = float(kwargs.pop("dropout", 0.0))
    config = GPT2Config(
        vocab_size=vocab_size, n_positions=_max_positions(request, kwargs), n_embd=int(kwargs.pop("hidden", 32)),
        n_layer=int(kwargs.pop("n_layer", 2)), n_head=int(kwargs.pop("heads", 2)), resid_pdrop=dropout,
        embd_pdrop=dropout, attn_pdrop=dropout, **_special_ids(vocab_size, kwargs),
        **_checked_extra(GPT2Config, kwargs, "vocab_size, n_layer, hidden, heads, max_positions, dropout"),
    )
    return GPT2LMHeadModel(config)


@MODEL_SOURCES.register("tiny-llama")
def build_tiny_llama(request: ModelRequest) -> nn.Module:
    """Llama (Touvron et al. 2023) shape with random weights: RMSNorm, RoPE, SwiGLU. Knobs: vocab_size, n_layer,
    hidden, heads, kv_heads, intermediate, max_positions."""
    from transformers import LlamaConfig, LlamaForCausalLM

    kwargs = dict(request.kwargs)
    vocab_size = int(kwargs.pop("vocab_size", request.num_classes))
    hidden = int(kwargs.pop("hidden", 32))
    heads = int(kwargs.pop("heads", 2))
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=int(kwargs.pop("intermediate", 4 * hidden)),
        num_hidden_layers=int(kwargs.pop("n_layer", 2)), num_attention_heads=heads,
        num_key_value_heads=int(kwargs.pop("kv_heads", heads)), max_position_embeddings=_max_positions(request, kwargs),
        **_special_ids(vocab_size, kwargs),
        **_checked_extra(LlamaConfig, kwargs, LLAMA_KNOBS),
    )
    return LlamaForCausalLM(config)


def example_input(model: nn.Module, input_shape: tuple[int, ...], batch_size: int = 2) -> dict[str, torch.Tensor]:
    """A dummy batch for a token model: ids 0 (long, not float) and a full attention mask."""
    device = next(model.parameters(), torch.empty(0)).device
    input_ids = torch.zeros(batch_size, *input_shape, dtype=torch.long, device=device)  # (B, L)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}


def is_token_model(model: nn.Module) -> bool:
    """HF text models declare ``main_input_name == "input_ids"``."""
    return getattr(model, "main_input_name", None) == "input_ids"


def check_token_model_io(model: nn.Module, input_shape: tuple[int, ...], num_classes: int, role: str) -> None:
    """``check_model_io`` for token models: long ids in, (B, L, V) logits (or hidden states for encoders) out."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = model(**example_input(model, input_shape))
    except (RuntimeError, ValueError, IndexError) as exc:
        message = str(exc).splitlines()[0]
        raise ModelError(f"{role} does not accept token ids of shape {tuple(input_shape)}: {message}") from None
    finally:
        model.train(was_training)
    logits = getattr(output, "logits", None)
    if logits is None:  # an encoder (embedding task): hidden states, no vocabulary to check
        return
    if logits.dim() != 3 or logits.shape[-1] != num_classes:
        raise ModelError(f"{role} outputs logits of shape {tuple(logits.shape[1:])} per sequence but the tokenizer "
                         f"has {num_classes} tokens; build it with the tokenizer's vocabulary size")
