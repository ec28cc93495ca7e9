"""Typed run configuration: one YAML format for train, distill and eval.

Unknown keys and bad values are errors naming the key. Dotted overrides (``trainer.epochs=5``) come from the
CLI; the resolved config is written into the run folder so any run can be repeated exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from kdistill.errors import ConfigError
from kdistill.safe_yaml import load_yaml, reject_non_finite

SEED_LIMIT = 2**32  # numpy and Lightning's seed_everything take seeds in [0, 2^32)

ACCELERATORS = ("auto", "cpu", "cuda", "gpu", "mps", "tpu")
STRATEGIES = ("auto", "ddp", "ddp_find_unused_parameters_true", "fsdp")  # launched by fabric.launch() in-script
PRECISIONS = ("32-true", "32", "64-true", "64", "bf16-mixed", "16-mixed", "bf16-true", "16-true")


class _Strict(BaseModel):
    # allow_inf_nan=False: NaN/inf in any float field is an error naming the key (NaN < 0 passes range checks).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


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
    split_seed: int = Field(
        0, ge=0, lt=SEED_LIMIT - 2, description="seed of the train/val/test split (kept apart from the training seed)"
    )
    # Text data (language models)
    max_length: int = Field(128, gt=0, description="text: tokens per sequence")
    on_overlong: Literal["truncate", "error"] = Field(
        "truncate", description="text: longer sequences are cut (with a warning) or refused"
    )
    text_field: str = Field("text", description="jsonl: field with the text (or use prompt/completion fields)")
    tokenizer: str | None = Field(None, description="text: tokenizer (default: the student's)")
    # Transfer sets (few labels + unlabelled inputs) and function matching; see docs/data.md
    mean: list[float] | None = Field(
        None, description="fixed normalisation mean per channel (default: the training split's)"
    )
    std: list[float] | None = Field(None, description="fixed normalisation std per channel (with data.mean)")
    labeled_fraction: float = Field(
        1.0, gt=0.0, le=1.0, description="keep labels for this stratified share of the training split (seeded by "
        "split_seed); the rest is unlabelled: distillation terms only, left out of plain training"
    )
    unlabeled: str | None = Field(None, description="a second data source added to the training split without labels")
    mixup_alpha: float = Field(0.0, ge=0.0, description="mixup: lambda ~ Beta(alpha, alpha) per batch (0: off)")
    cutmix_alpha: float = Field(0.0, ge=0.0, description="cutmix: lambda ~ Beta(alpha, alpha) per batch (0: off)")
    mix_prob: float = Field(1.0, ge=0.0, le=1.0, description="share of training batches that are mixed")
    random_resized_crop_scale: list[float] | None = Field(
        None, description="random-resized crop area range, e.g. [0.35, 1.0] (None: off), applied per sample"
    )

    @model_validator(mode="after")
    def _check_transfer_options(self) -> DataConfig:
        if (self.mean is None) != (self.std is None):
            raise ValueError("data.mean and data.std go together: set both or neither")
        if self.std is not None and (not self.std or min(self.std) <= 0 or len(self.std) != len(self.mean or [])):
            raise ValueError(f"data.std must be positive and as long as data.mean, got mean {self.mean} std {self.std}")
        if self.mean is not None and not self.normalize:
            raise ValueError("data.mean/data.std need data.normalize: true")
        scale = self.random_resized_crop_scale
        if scale is not None and not (len(scale) == 2 and 0.0 < scale[0] <= scale[1] <= 1.0):
            raise ValueError(f"data.random_resized_crop_scale must be [min, max] with 0 < min <= max <= 1, got {scale}")
        return self

    @property
    def function_matching(self) -> bool:
        """Batch-level augmentation (mixup, cutmix, random-resized crops) that teacher and student both see."""
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0 or self.random_resized_crop_scale is not None


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

    @field_validator("kwargs")
    @classmethod
    def _finite_kwargs(cls, value: dict[str, Any]) -> dict[str, Any]:
        return reject_non_finite(value)


class ModelTeacherConfig(ModelConfig):
    """``kind: model``: a teacher kdistill runs itself, from any model source (the default kind)."""

    kind: Literal["model"] = "model"


class CacheTeacherConfig(_Strict):
    """``kind: cache``: the stored outputs of a teacher (a store made by ``kdistill cache build``)."""

    kind: Literal["cache"]
    dir: str = Field(..., description="the store's folder (kdistill cache build --dir)")
    weights: str | None = Field(
        None, description="optional: the teacher weights the store must have been built from (checked); also used "
        "for the final agreement metrics (default: the weights the store's manifest records)"
    )


class SoftLabelsTeacherConfig(_Strict):
    """``kind: soft-labels``: a black-box teacher, a file of per-sample logits or probabilities on the training split.

    ``.npy`` (one (N, C) array), ``.npz`` (array ``key``, ids in array ``id_column``) or ``.parquet`` (column ``key``
    holding one list of C floats per row, ids in column ``id_column``). Without ``id_column`` row i belongs to
    training sample i; with it the ids must be exactly the training samples' indices 0..N-1, in any order.
    """

    kind: Literal["soft-labels"]
    path: str = Field(..., description="the file: .npy, .npz or .parquet")
    values: Literal["logits", "probabilities"] = Field("logits", description="what the file holds per class")
    key: str | None = Field(None, description="npz array / parquet column of the values (default: `values`)")
    id_column: str | None = Field(None, description="npz array / parquet column of sample ids (None: by row)")


TeacherConfig = Annotated[
    Union[ModelTeacherConfig, CacheTeacherConfig, SoftLabelsTeacherConfig], Field(discriminator="kind")  # noqa: UP007
]
_TEACHER_ADAPTER: TypeAdapter = TypeAdapter(TeacherConfig)
LEGACY_CACHE_PREFIX = "cache:"  # old form: teacher.name: cache:<dir>


def legacy_teacher_tree(value: Any) -> Any:
    """Old teacher mappings -> the typed form: ``{name: cache:DIR, weights?}`` becomes ``kind: cache`` (kwargs and
    other model keys are dropped: a store needs none; also over a saved ``kind: model``, as ``--set
    teacher.name=cache:DIR`` on a resolved config gives), any other mapping without ``kind`` is ``kind: model``."""
    if isinstance(value, BaseModel) and not hasattr(value, "kind"):
        value = value.model_dump()
    if not isinstance(value, dict) or value.get("kind", "model") != "model":
        return value
    name = value.get("name")
    if isinstance(name, str) and name.startswith(LEGACY_CACHE_PREFIX):  # no model source is called "cache"
        return {"kind": "cache", "dir": name.removeprefix(LEGACY_CACHE_PREFIX), "weights": value.get("weights")}
    return {**value, "kind": "model"}


def typed_teacher(value: Any):
    """Any teacher config (a typed one, an old ``ModelConfig``, a mapping) -> a TeacherConfig, or None."""
    if value is None or (isinstance(value, BaseModel) and hasattr(value, "kind")):  # already typed
        return value
    try:
        return _TEACHER_ADAPTER.validate_python(legacy_teacher_tree(value))
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, "teacher")) from None


class StageConfig(_Strict):
    """One stage of a multi-stage schedule (e.g. FitNets: hint pre-training, then KD)."""

    epochs: int = Field(..., gt=0, description="epochs of this stage")
    alpha: float | None = Field(
        None, ge=0.0, le=1.0, description="hard-label weight in this stage (default: distill.alpha)"
    )
    methods: dict[str, float] = Field(..., description="method name -> weight in this stage")

    @field_validator("methods")
    @classmethod
    def _non_negative_weights(cls, value: dict[str, float]) -> dict[str, float]:
        return _check_weights(value)


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

    @field_validator("methods")
    @classmethod
    def _non_negative_weights(cls, value: dict[str, float]) -> dict[str, float]:
        return _check_weights(value)

    @field_validator("method_options")
    @classmethod
    def _finite_options(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return reject_non_finite(value)


def _check_weights(weights: dict[str, float]) -> dict[str, float]:
    """Method weights are finite (the model config) and >= 0: a negative weight would reward the divergence."""
    for name, weight in weights.items():
        if weight < 0:
            raise ValueError(f"weight of method {name!r} must be >= 0, got {weight}")
    return weights


class OptimConfig(_Strict):
    """The optimiser and its learning-rate schedule."""

    name: Literal["sgd", "adamw", "adam"] = Field("adamw", description="sgd | adamw | adam")
    lr: float = Field(3e-3, gt=0, description="peak learning rate")
    weight_decay: float = Field(1e-4, ge=0, description="weight decay (decoupled for adamw)")
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd only")
    nesterov: bool = Field(True, description="sgd only: Nesterov momentum (false: classical momentum)")
    schedule: Literal["cosine", "step", "constant"] = Field("cosine", description="cosine | step | constant, per step")
    warmup_epochs: int = Field(0, ge=0, description="linear warm-up from 0 to lr over this many epochs")
    step_size: int = Field(30, gt=0, description="step schedule: epochs between decays")
    gamma: float = Field(0.1, gt=0, description="step schedule: decay factor")


class TrainerConfig(_Strict):
    """The training loop: schedule length, batches, devices and precision."""

    epochs: int = Field(10, gt=0, description="passes over the training split")
    batch_size: int = Field(128, gt=0, description="samples per micro-batch on each process (global: x processes)")
    eval_batch_size: int = Field(512, gt=0, description="samples per forward pass on validation and test")
    accelerator: str = Field("auto", description="cpu | cuda | gpu | mps | tpu | auto (Lightning Fabric)")
    devices: int | str = Field(1, description="devices per node: a number, 'auto' or -1 (all)")
    num_nodes: int = Field(1, gt=0, description="machines; launch with torchrun or SLURM (docs/scaling.md)")
    strategy: str = Field("auto", description="Lightning Fabric strategy: auto | ddp | fsdp ...")
    precision: str = Field("32-true", description="32-true | bf16-mixed | 16-mixed (Lightning Fabric)")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes")
    grad_clip: float | None = Field(None, gt=0, description="clip gradient norm to this value")
    accumulate_grad_batches: int = Field(1, gt=0, description="micro-batches per optimiser step")
    checkpoint_every_steps: int | None = Field(
        None, gt=0, description="also checkpoint every N optimiser steps (None: at each epoch end only)"
    )
    on_nonfinite: Literal["stop", "skip"] = Field(
        "stop", description="a NaN/inf loss or gradient: stop the run naming the term and batch, or skip the batch"
    )
    progress: bool = Field(True, description="show rich progress bars")

    @field_validator("accelerator")
    @classmethod
    def _known_accelerator(cls, value: str) -> str:
        return _one_of(value, ACCELERATORS, "accelerator")

    @field_validator("precision")
    @classmethod
    def _known_precision(cls, value: str) -> str:
        return _one_of(value, PRECISIONS, "precision")

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: str) -> str:
        return _one_of(value, STRATEGIES, "strategy")

    @field_validator("devices")
    @classmethod
    def _valid_devices(cls, value: int | str) -> int | str:
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():  # the CLI passes "2"
            value = int(value)
        if isinstance(value, int) and (value >= 1 or value == -1):
            return value
        indices = str(value).strip().rstrip(",").split(",")
        if isinstance(value, str) and (value == "auto" or all(part.strip().isdigit() for part in indices)):
            return value
        raise ValueError(f"devices must be a count >= 1, -1 (all), 'auto', or device indices like '0,1'; "
                         f"got {value!r}")


def _one_of(value: str, allowed: tuple[str, ...], key: str) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {key} {value!r}; choose one of: {', '.join(allowed)}")
    return value


class EvalConfig(_Strict):
    """How test metrics and speed are measured."""

    latency_runs: int = Field(100, gt=0, description="timed batch-1 forward passes (median reported)")
    warmup_runs: int = Field(10, ge=0, description="untimed forward passes before the timed ones")
    throughput_batch: int = Field(256, gt=0, description="batch size of the throughput measurement")
    threads: int | None = Field(None, gt=0, description="torch threads during latency runs (None: keep current)")
    ece_bins: int = Field(15, gt=0, description="equal-width confidence bins of the calibration error (ECE)")
    teacher_metrics: bool = Field(
        True, description="run the teacher over the test split at the end (teacher accuracy, agreement); false saves "
        "that pass, which dominates short runs from a cache or with a big teacher"
    )


class RunConfig(_Strict):
    """Everything a run needs. ``teacher`` is None for plain supervised training."""

    name: str = Field("run", description="run folder name under output_dir")
    task: str = Field("classification", description="classification | causal-lm | embedding")
    output_dir: str = Field("runs", description="parent folder of run folders")
    seed: int = Field(0, ge=0, lt=SEED_LIMIT, description="training seed (initialisation, shuffling, augmentation), "
                      "in [0, 2^32)")
    data: DataConfig = Field(default_factory=DataConfig)
    student: ModelConfig = Field(default_factory=lambda: ModelConfig(name="mlp"), description="the model trained")
    teacher: TeacherConfig | None = Field(None, description="the teacher, by kind (null: plain training)")
    distill: DistillConfig = Field(default_factory=DistillConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    deploy: DeployConfig = Field(default_factory=lambda: DeployConfig())

    @field_validator("teacher", mode="before")
    @classmethod
    def _legacy_teacher(cls, value: Any) -> Any:
        return legacy_teacher_tree(value)
    @model_validator(mode="after")
    def _validation_split_needed(self) -> RunConfig:
        # A run, not a data set, needs validation: the best checkpoint is chosen on it ("best val epoch").
        if not self.data.val_fraction > 0:
            raise ValueError(f"data.val_fraction must be > 0, got {self.data.val_fraction}: the best checkpoint "
                             "(checkpoints/best, summary.json best_epoch) is chosen on the validation split; "
                             "use e.g. 0.1")
        return self

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        return check_run_name(value)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name


def check_run_name(name: str) -> str:
    """A run name is one plain folder name: joined to output_dir it must stay a child of it."""
    bad = (not name.strip() or name in (".", "..") or "/" in name or "\\" in name or "\0" in name
           or Path(name).is_absolute() or name != name.strip())
    if bad:
        raise ValueError(f"run name {name!r} must be a plain folder name (no path separators, not '.' or '..', "
                         "not empty); put the parent folder in output_dir")
    return name


def validation_problems(err: ValidationError) -> list[str]:
    """One ``key: message`` line per problem of a pydantic error."""
    problems = []
    for item in err.errors():
        key = ".".join(str(part) for part in item["loc"]) or "<root>"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; `kdistill config` prints every key)"
        problems.append(f"{key}: {message}")
    return problems


def _format_validation_error(err: ValidationError, source: str) -> str:
    return f"invalid config ({source}): " + "; ".join(validation_problems(err))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``trainer.epochs=5`` -> (["trainer", "epochs"], 5). Values are parsed as YAML scalars/lists."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.path=value, e.g. trainer.epochs=5")
    key, raw = text.split("=", 1)
    keys = key.strip().split(".")
    if not all(part.strip() for part in keys):
        raise ConfigError(f"override {text!r} has an empty key")
    return keys, load_yaml(raw, f"the value of --set {key.strip()}") if raw.strip() else None


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
        loaded = load_yaml(read_text(path, "config file"), f"config file {str(path)!r}") or {}
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
    teacher = tree.get("teacher")
    if isinstance(teacher, dict) and "name" not in teacher and Path(str(teacher.get("weights"))).is_dir():
        tree["teacher"] = {"name": teacher["weights"], **teacher}  # `--teacher-weights runs/t`: that run's model
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as exc:
        error = ConfigError(_format_validation_error(exc, source))
        error.problems = validation_problems(exc)  # one line each, for `kdistill check`
        raise error from None


def read_text(path: Path, what: str) -> str:
    """A text file's contents; unreadable or binary (not UTF-8) is a ConfigError naming the file."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {what} {str(path)!r}: {exc}") from None


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
