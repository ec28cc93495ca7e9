"""The strict base of every config section, checks that several sections share, and errors as ``key: message``."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from kdistill.safe_yaml import reject_non_finite

SEED_LIMIT = 2**32  # numpy and Lightning's seed_everything take seeds in [0, 2^32)


class Section(BaseModel):
    """A config section: unknown keys are errors, and so is any assignment that would not validate."""

    # allow_inf_nan=False: NaN/inf in any float field is an error naming the key (NaN < 0 passes range checks).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def _finite_tree(value: Any) -> Any:
    # allow_inf_nan does not reach inside free-form mappings, so they are walked here.
    return reject_non_finite(value)


def _non_negative_weights(weights: dict[str, float]) -> dict[str, float]:
    """Method weights are finite (the model config) and >= 0: a negative weight would reward the divergence."""
    for name, weight in weights.items():
        if weight < 0:
            raise ValueError(f"weight of method {name!r} must be >= 0, got {weight}")
    return weights


FINITE = AfterValidator(_finite_tree)  # on a free-form mapping: every float inside it is finite
MethodWeights = Annotated[dict[str, float], AfterValidator(_non_negative_weights)]  # method name -> weight >= 0


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


def format_validation_error(err: ValidationError, source: str) -> str:
    """The one-line message of a ConfigError: where the config came from, then every problem."""
    return f"invalid config ({source}): " + "; ".join(validation_problems(err))
