"""Property-based fuzzing (hypothesis) of configs, `--set` values, CLI flags and method/model options.

Every malformed input must end in a clean refusal: a KdistillError from the API, and from the CLI exit status 2
with one `error:` line (flags click cannot parse too), never a traceback or a hang. Examples
are bounded (a few hundred in all) so the file runs in `make test` in well under a minute.
"""

from __future__ import annotations

import inspect
import signal
from contextlib import contextmanager
from typing import Any, get_origin

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from cli_helpers import run_main
from kdistill.config import RunConfig, load_config
from kdistill.errors import KdistillError
from kdistill.methods.base import METHODS, build_method


def fuzz(examples: int):
    return settings(max_examples=examples, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


API_EXAMPLES, CLI_EXAMPLES = 200, 60  # 580 generated inputs per run in all (the figure in docs/reliability.md)
HANG_SECONDS = 30  # far above any answer (milliseconds); only a hang reaches it


@contextmanager
def no_hang():
    def fail(*_):
        raise AssertionError(f"no answer within {HANG_SECONDS} s: a hang")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(HANG_SECONDS)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def config_keys(model: type[BaseModel] = RunConfig, prefix: str = "") -> list[str]:
    """Every dotted key of the config (nested models too), as `--set` takes them."""
    keys = []
    for name, field in model.model_fields.items():
        keys.append(prefix + name)
        nested = [a for a in (getattr(field.annotation, "__args__", None) or (field.annotation,))
                  if isinstance(a, type) and issubclass(a, BaseModel)]
        for sub in nested:
            keys += config_keys(sub, f"{prefix}{name}.")
    return keys


KEYS = config_keys()
HOSTILE = [".nan", ".inf", "-.inf", "nan", "-1", "0", "-0.0", "1e400", "4294967296", "-4294967297", "null", "~", "",
           "[]", "{}", "[1", "{a:", "&a [*a]", "*undefined", "!!python/object/apply:os.system ['true']",
           "!!binary aGVsbG8=", "'unterminated", "yes", "0x1F", "1_000", "..", "/", "\x00", "a: b: c", "- a",
           "{kd: .nan}", "[{epochs: 1, methods: {kd: -5}}]", "{width: [8}", "{" * 200, "é", "\ud800"]
scalars = st.one_of(
    st.sampled_from(HOSTILE),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(alphabet=st.sampled_from(list("ab:,[]{}&*!|>-?#'\"%@` \t.0123456789\\/")), max_size=24),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]")
                      | st.dictionaries(st.sampled_from(["a", "kd", "width", "epochs", "name"]), inner, max_size=3)
                      .map(lambda d: "{" + ", ".join(f"{k}: {v}" for k, v in d.items()) + "}"), max_leaves=6)
keys = st.one_of(st.sampled_from(KEYS), st.text(alphabet=st.sampled_from(list("ab.xyz_")), max_size=12))


@fuzz(API_EXAMPLES)
@given(st.lists(st.tuples(keys, values), min_size=1, max_size=3))
def test_api_config_overrides_give_a_config_or_a_config_error(overrides) -> None:
    with no_hang():
        try:
            config = load_config(overrides=[f"{key}={value}" for key, value in overrides])
        except KdistillError:
            return
    assert isinstance(config, RunConfig)
    RunConfig.model_validate(config.model_dump(mode="json"))  # what is accepted can be saved and read back


def assert_clean_refusal(code: int, err: str) -> None:
    assert "Traceback" not in err, err
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err


@fuzz(CLI_EXAMPLES)
@given(st.lists(st.tuples(st.sampled_from(KEYS), values), min_size=1, max_size=2))
def test_cli_config_set_prints_a_config_or_one_error_line(monkeypatch, capsys, overrides) -> None:
    args = [part for key, value in overrides for part in ("--set", f"{key}={value}")]
    with no_hang():
        code, out, err = run_main(monkeypatch, capsys, "config", *args)
    if code == 0:
        assert "trainer:" in out and not err.strip()
    else:
        assert_clean_refusal(code, err)


FLAGS = ["--name", "--output-dir", "--data-root", "--student", "--student-kwargs", "--student-weights", "--epochs",
         "--batch-size", "--lr", "--optimizer", "--seed", "--precision", "--accelerator", "--devices", "--workers",
         "--teacher", "--teacher-kwargs", "--teacher-weights", "-T", "--alpha", "--method", "--set"]
SWITCHES = ["--overwrite", "--resume", "--no-progress", "--bogus-flag"]


@fuzz(CLI_EXAMPLES)
@given(st.lists(st.one_of(st.tuples(st.sampled_from(FLAGS), values), st.sampled_from(SWITCHES).map(lambda s: (s,))),
                min_size=1, max_size=4))
def test_cli_distill_flags_never_give_a_traceback(tmp_path_factory, monkeypatch, capsys, flags) -> None:
    """Every example fails (the data file does not exist, given last so it wins): we only check how it fails."""
    out_dir = tmp_path_factory.mktemp("fuzz")
    args = [part for flag in flags for part in flag]
    with no_hang():
        code, _, err = run_main(monkeypatch, capsys, "distill", "--output-dir", str(out_dir), *args,
                                "--data", f"csv:{out_dir}/missing.csv")
    assert_clean_refusal(code, err)
    assert not [p for p in out_dir.rglob("*") if p.name != "missing.csv"]  # nothing written


option_values: st.SearchStrategy[Any] = st.one_of(
    st.none(), st.booleans(), st.integers(-8, 64), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", "x", "layer1", "body.0", "nan"]), st.lists(st.integers(-2, 8), max_size=3),
    st.lists(st.tuples(st.sampled_from(["body.0", "x"]), st.sampled_from(["body.0", "y"])), max_size=2))


@fuzz(60)
@given(st.sampled_from(sorted(METHODS.names())), st.floats(allow_nan=True, allow_infinity=True), st.data())
def test_api_method_options_build_or_raise_a_kdistill_error(name, temperature, data) -> None:
    params = [p for p in inspect.signature(METHODS.get(name).__init__).parameters
              if p not in ("self", "temperature", "num_classes")]
    options = data.draw(st.dictionaries(st.sampled_from(params + ["unknown"]) if params else st.just("unknown"),
                                        option_values, max_size=3))
    with no_hang():
        try:
            build_method(name, temperature, 10, options)
        except KdistillError:
            pass


@fuzz(60)
@given(st.sampled_from(["mlp", "cnn", "resnet"]),
       st.dictionaries(st.sampled_from(["width", "depth", "dropout", "blocks", "bogus"]), option_values, max_size=3))
def test_api_model_kwargs_build_or_raise_a_kdistill_error(source, kwargs) -> None:
    """Integers stay small (a width of 10^9 is a legitimate, huge request, not malformed input)."""
    from kdistill.config import ModelConfig
    from kdistill.models import build_model

    try:
        config = ModelConfig(name=source, kwargs=kwargs)
    except ValidationError:  # e.g. a NaN kwarg: refused by the config (load_config makes it a ConfigError)
        return
    with no_hang():
        try:
            build_model(config, (1, 8, 8), 10)
        except KdistillError:
            pass


def float_keys(model: type[BaseModel] = RunConfig, prefix: str = "") -> list[str]:
    """Dotted keys of every float field (plain, optional, or a name -> float mapping)."""
    found = []
    for name, field in model.model_fields.items():
        text = str(field.annotation)
        if "float" in text:
            found.append(prefix + name)
        if get_origin(field.annotation) is list:  # list items (distill.stages) have no dotted key
            continue
        for sub in getattr(field.annotation, "__args__", None) or (field.annotation,):
            if isinstance(sub, type) and issubclass(sub, BaseModel):
                found += float_keys(sub, f"{prefix}{name}.")
    return found


@pytest.mark.parametrize("key", float_keys())
def test_every_float_key_refuses_nan_and_inf_naming_the_key(key) -> None:
    for value in (".nan", ".inf", "-.inf"):
        literal = f"{{kd: {value}}}" if key.endswith("methods") else value
        with pytest.raises(KdistillError, match=key.replace(".", r"\.")):
            load_config(overrides=[f"{key}={literal}"])
