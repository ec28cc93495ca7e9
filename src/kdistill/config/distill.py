"""The ``distill`` section: loss weights, temperature, stages, on-policy and sequence-level KD."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, field_validator

from kdistill.config.base import FINITE, MethodWeights, Section


class StageConfig(Section):
    """One stage of a multi-stage schedule (e.g. FitNets: hint pre-training, then KD)."""

    epochs: int = Field(..., gt=0, description="epochs of this stage")
    alpha: float | None = Field(
        None, ge=0.0, le=1.0, description="hard-label weight in this stage (default: distill.alpha)"
    )
    methods: MethodWeights = Field(..., description="method name -> weight in this stage")


class OnPolicyConfig(Section):
    """On-policy GKD (Agarwal et al., ICLR 2024, arXiv:2306.13649), task causal-lm: per micro-batch, with probability
    ``lam`` the student samples the completions of the batch's prompts and the teacher scores those samples."""

    lam: float = Field(
        0.5, ge=0.0, le=1.0, description="share of micro-batches whose completions are the student's own samples"
    )
    max_new_tokens: int = Field(32, gt=0, description="tokens the student samples per prompt (cut at data.max_length)")
    temperature: float = Field(1.0, gt=0.0, description="sampling temperature of the student")


class SequenceKDConfig(Section):
    """Sequence-level KD (Kim & Rush, EMNLP 2016, arXiv:1606.07947), task causal-lm: before training the teacher
    completes the training split's prompts once (stored in <run>/sequence_kd/train.jsonl, reused on --resume) and the
    student trains on those completions. Validation and test keep the original data."""

    max_new_tokens: int = Field(64, gt=0, description="tokens the teacher generates per prompt")
    greedy: bool = Field(True, description="greedy decoding (beam-1 approximation); false: sample at temperature 1")
    prompt_tokens: int = Field(
        16, gt=0, description="data without prompts (text:, jsonl text field): the first N tokens of each document"
    )
    batch_size: int = Field(16, gt=0, description="prompts per teacher generate call")


class DistillConfig(Section):
    """loss = alpha * CE(student, labels) + (1 - alpha) * sum_m weight_m * L_m (L_kd = T^2 * KL)."""

    temperature: float = Field(4.0, description="softmax temperature T of the soft targets (> 0)")
    alpha: float = Field(0.5, description="weight of the hard-label cross-entropy, in [0, 1]")
    methods: MethodWeights = Field(default_factory=lambda: {"kd": 1.0}, description="method name -> weight")
    method_options: Annotated[dict[str, dict[str, Any]], FINITE] = Field(
        default_factory=dict, description="method name -> constructor options (layer pairs, paper hyper-parameters)"
    )
    stages: list[StageConfig] = Field(
        default_factory=list,
        description="optional schedule; the stages' epochs are run first, the remaining epochs use alpha/methods above",
    )
    on_policy: OnPolicyConfig | None = Field(
        None, description="causal-lm: on-policy GKD data mix, e.g. {lam: 0.5, max_new_tokens: 32} (None: off)"
    )
    sequence_kd: SequenceKDConfig | None = Field(
        None, description="causal-lm: train on the teacher's completions, e.g. {max_new_tokens: 64} (None: off)"
    )
    allow_data_mismatch: bool = Field(
        False, description="accept data that differs from the teacher run's (source, root, classes, input shape)"
    )

    @field_validator("temperature")
    @classmethod
    def _positive_temperature(cls, value: float) -> float:
        if not value > 0:
            raise ValueError(f"temperature must be > 0, got {value}; typical values are 1-8")
        return value

    @field_validator("alpha")
    @classmethod
    def _alpha_in_unit_interval(cls, value: float) -> float:
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {value} (alpha weighs the hard-label loss)")
        return value
