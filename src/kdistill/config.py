"""Typed run configuration: one YAML format for train, distill and eval.

Unknown keys and bad values are errors naming the key. Dotted overrides (``trainer.epochs=5``) come from the
CLI; the resolved config is written into the run folder so any run can be repeated exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kdistill.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Strict):
    """Where the samples come from and how they are split and transformed."""

    name: str = Field("digits", description="digits | fashion-mnist | imagefolder:<path> | csv:<path>")
    root: str | None = Field(None, description="folder with the data files (fashion-mnist IDX files)")
    label_column: str = Field("label", description="csv: name of the label column")
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="share of the training split held out for validation")
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="share held out for test when the source has none")
    train_fraction: float = Field(1.0, gt=0.0, le=1.0, description="use only this share of the training split")
    normalize: bool = Field(True, description="standardise inputs with mean/std of the training split")
    augment_crop_padding: int = Field(0, ge=0, description="random crop after padding by this many pixels (0: off)")
    augment_hflip: bool = Field(False, description="random horizontal flip")
    image_size: int | None = Field(None, gt=0, description="imagefolder: resize images to this square size")
    split_seed: int = Field(0, description="seed of the train/val/test split (kept apart from the training seed)")
    # Text data (language models)
    max_length: int = Field(128, gt=0, description="text: tokens per sequence")
    on_overlong: Literal["truncate", "error"] = Field(
        "truncate", description="text: longer sequences are cut (with a warning) or refused"
    )
    text_field: str = Field("text", description="jsonl: field with the text (or use prompt/completion fields)")
    tokenizer: str | None = Field(None, description="text: tokenizer (default: the student's)")


class ModelConfig(_Strict):
    """A model from one of the sources: built-in, timm, torchvision, or a factory in a Python file."""

    name: str = Field(..., description="mlp | cnn | resnet | timm:<name> | torchvision:<name> | file:<path.py>:<fn>")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the model factory")
    weights: str | None = Field(None, description="weights file: .safetensors (default) or a torch checkpoint")
    pretrained: bool = Field(False, description="timm/torchvision: download pretrained weights (needs internet)")
    tokenizer: str | None = Field(
        None,
        description="language-model teacher only: its tokenizer ('byte' or a local folder) when it differs from the "
        "student's (data.tokenizer); default: the tokenizer files of an hf:<folder> teacher, else data.tokenizer. "
        "A different tokenizer needs the cross-tokenizer method 'uld'",
    )


class StageConfig(_Strict):
    """One stage of a multi-stage schedule (e.g. FitNets: hint pre-training, then KD)."""

    epochs: int = Field(..., gt=0)
    alpha: float | None = Field(
        None, ge=0.0, le=1.0, description="hard-label weight in this stage (default: distill.alpha)"
    )
    methods: dict[str, float] = Field(..., description="method name -> weight in this stage")


class OnPolicyConfig(_Strict):
    """On-policy GKD (Agarwal et al., ICLR 2024, arXiv:2306.13649), task causal-lm: per micro-batch, with probability
    ``lam`` the student samples the completions of the batch's prompts and the teacher scores those samples."""

    lam: float = Field(
        0.5, ge=0.0, le=1.0, description="share of micro-batches whose completions are the student's own samples"
    )
    max_new_tokens: int = Field(32, gt=0, description="tokens the student samples per prompt (cut at data.max_length)")
    temperature: float = Field(1.0, gt=0.0, description="sampling temperature of the student")


class SequenceKDConfig(_Strict):
    """Sequence-level KD (Kim & Rush, EMNLP 2016, arXiv:1606.07947), task causal-lm: before training the teacher
    completes the training split's prompts once (stored in <run>/sequence_kd/train.jsonl, reused on --resume) and the
    student trains on those completions. Validation and test keep the original data."""

    max_new_tokens: int = Field(64, gt=0, description="tokens the teacher generates per prompt")
    greedy: bool = Field(True, description="greedy decoding (beam-1 approximation); false: sample at temperature 1")
    prompt_tokens: int = Field(
        16, gt=0, description="data without prompts (text:, jsonl text field): the first N tokens of each document"
    )
    batch_size: int = Field(16, gt=0, description="prompts per teacher generate call")


class DistillConfig(_Strict):
    """loss = alpha * CE(student, labels) + (1 - alpha) * sum_m weight_m * L_m (L_kd = T^2 * KL)."""

    temperature: float = Field(4.0, description="softmax temperature T of the soft targets (> 0)")
    alpha: float = Field(0.5, description="weight of the hard-label cross-entropy, in [0, 1]")
    methods: dict[str, float] = Field(default_factory=lambda: {"kd": 1.0}, description="method name -> weight")
    method_options: dict[str, dict[str, Any]] = Field(
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

    @field_validator("methods")
    @classmethod
    def _non_negative_weights(cls, value: dict[str, float]) -> dict[str, float]:
        for name, weight in value.items():
            if weight < 0:
                raise ValueError(f"weight of method {name!r} must be >= 0, got {weight}")
        return value


class OptimConfig(_Strict):
    name: Literal["sgd", "adamw", "adam"] = "adamw"
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd only")
    schedule: Literal["cosine", "step", "constant"] = "cosine"
    warmup_epochs: int = Field(0, ge=0)
    step_size: int = Field(30, gt=0, description="step schedule: epochs between decays")
    gamma: float = Field(0.1, gt=0, description="step schedule: decay factor")


class TrainerConfig(_Strict):
    epochs: int = Field(10, gt=0)
    batch_size: int = Field(128, gt=0)
    eval_batch_size: int = Field(512, gt=0)
    accelerator: str = Field("auto", description="cpu | cuda | mps | auto (Lightning Fabric)")
    devices: int | str = Field(1, description="number of devices or 'auto'")
    strategy: str = Field("auto", description="Lightning Fabric strategy: auto | ddp | fsdp ...")
    precision: str = Field("32-true", description="32-true | bf16-mixed | 16-mixed (Lightning Fabric)")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes")
    grad_clip: float | None = Field(None, gt=0, description="clip gradient norm to this value")
    accumulate_grad_batches: int = Field(1, gt=0, description="micro-batches per optimiser step")
    progress: bool = Field(True, description="show rich progress bars")


class EvalConfig(_Strict):
    latency_runs: int = Field(100, gt=0, description="timed batch-1 forward passes (median reported)")
    warmup_runs: int = Field(10, ge=0)
    throughput_batch: int = Field(256, gt=0)
    threads: int | None = Field(None, gt=0, description="torch threads during latency runs (None: keep current)")
    ece_bins: int = Field(15, gt=0)


class RunConfig(_Strict):
    """Everything a run needs. ``teacher`` is None for plain supervised training."""

    name: str = Field("run", description="run folder name under output_dir")
    task: str = Field("classification", description="classification | causal-lm | embedding")
    output_dir: str = "runs"
    seed: int = 0
    data: DataConfig = Field(default_factory=DataConfig)
    student: ModelConfig = Field(default_factory=lambda: ModelConfig(name="mlp"))
    teacher: ModelConfig | None = None
    distill: DistillConfig = Field(default_factory=DistillConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    deploy: DeployConfig = Field(default_factory=lambda: DeployConfig())

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name


def _format_validation_error(err: ValidationError, source: str) -> str:
    problems = []
    for item in err.errors():
        key = ".".join(str(part) for part in item["loc"]) or "<root>"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; `kdistill config` prints every key)"
        problems.append(f"{key}: {message}")
    return f"invalid config ({source}): " + "; ".join(problems)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``trainer.epochs=5`` -> (["trainer", "epochs"], 5). Values are parsed as YAML scalars/lists."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.path=value, e.g. trainer.epochs=5")
    key, raw = text.split("=", 1)
    if not key.strip():
        raise ConfigError(f"override {text!r} has an empty key")
    return key.strip().split("."), yaml.safe_load(raw) if raw.strip() else None


def _set_dotted(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, **base: Any) -> RunConfig:
    """Read YAML (optional), apply dotted overrides, validate. Raises ConfigError naming the bad key."""
    tree: dict[str, Any] = dict(base)
    source = "defaults"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} not found")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {str(path)!r} is not valid YAML: {exc}".replace("\n", " ")) from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {str(path)!r} must hold a mapping of keys, got {type(loaded).__name__}")
        tree = {**loaded, **tree}
        source = str(path)
    for text in overrides or []:
        keys, value = parse_override(text)
        _set_dotted(tree, keys, value)
    student = tree.get("student")
    if isinstance(student, dict) and "name" not in student:  # `student.kwargs=...` keeps the default student
        tree["student"] = {"name": RunConfig().student.name, **student}
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from None


def dump_config(config: RunConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))


# ----- deployment: prune, quantize, export (kdistill deploy / export / bench) -----


class PruneConfig(_Strict):
    """Structured pruning (Torch-Pruning: whole channels removed), then distillation from the teacher to recover."""

    amount: float = Field(0.5, gt=0.0, lt=1.0, description="share of the student's parameters (or FLOPs) to remove")
    measure: Literal["params", "flops"] = Field("params", description="what `amount` is a share of")
    steps: int = Field(1, gt=0, description="iterative schedule: prune amount/steps more, then distil, this many times")
    epochs: int = Field(2, gt=0, description="distillation epochs after each pruning step")


class DeployConfig(_Strict):
    """``kdistill deploy``: prune + KD -> int8 (PTQ or QAT + KD) -> export -> parity -> bench, into <run>/deploy/."""

    format: str = Field("onnx", description="export format: onnx | pt2 | pte (ExecuTorch, XNNPACK)")
    prune: PruneConfig | None = Field(None, description="structured pruning, e.g. {amount: 0.5} (None: off)")
    quantize: Literal["none", "int8"] = Field("none", description="int8: weights and activations in 8 bits")
    quantize_method: Literal["static", "dynamic", "qat"] = Field(
        "static", description="static: ONNX Runtime QDQ per-channel, calibrated; dynamic: ONNX Runtime, no "
        "calibration; qat: quantization-aware distillation (torchao pt2e), then int8 export"
    )
    calibration_samples: int = Field(256, gt=0, description="static int8: training samples for calibration")
    qat_epochs: int = Field(1, gt=0, description="qat: distillation epochs of the fake-quantized student")
    qat_lr: float = Field(1e-4, gt=0, description="qat: learning rate (AdamW)")
    parity_samples: int = Field(512, gt=0, description="validation samples compared with the PyTorch student")
    parity_atol: float = Field(1e-3, gt=0, description="float artefacts: largest allowed |logit difference|")
    int8_min_agreement: float = Field(
        0.9, gt=0.0, le=1.0, description="int8 artefacts: least share of samples with the float student's top-1"
    )
    threads: int = Field(1, gt=0, description="bench: CPU threads of every runtime (pinned and reported)")
    latency_runs: int = Field(100, gt=0, description="bench: timed batch-1 runs (median and p95)")
    warmup_runs: int = Field(10, ge=0, description="bench: untimed runs first")
    throughput_batch: int = Field(256, gt=0, description="bench: batch size of the throughput figure")


RunConfig.model_rebuild()  # its `deploy` field names DeployConfig, defined after it
