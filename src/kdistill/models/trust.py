"""Which Python files a run folder's config may import (``file:x.py:fn`` model sources).

Naming ``file:x.py:fn`` on your own command line or in your own config is running your own code. A run folder
copied from elsewhere is different: ``kdistill eval runs/x`` would import whatever ``x.py`` its config names. So
kdistill records the sha256 of every model file used by the runs it creates on this machine (in
``$KDISTILL_STATE_DIR/trusted_code.json``, default ``~/.local/state/kdistill``, outside any run folder so a run
folder cannot vouch for itself), and code named by a run folder is imported only when its hash is recorded there
or the user passes ``--trust-code``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from kdistill.config import ModelConfig, RunConfig
from kdistill.errors import UntrustedCodeError

STATE_ENV = "KDISTILL_STATE_DIR"
TRUST_FILE = "trusted_code.json"


def trust_store_path() -> Path:
    base = os.environ.get(STATE_ENV) or Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local/state")
    return Path(base) / (TRUST_FILE if os.environ.get(STATE_ENV) else f"kdistill/{TRUST_FILE}")


def code_files(config: RunConfig) -> list[Path]:
    """The Python files the config's models are built from (``file:<path.py>:<factory>``)."""
    models: list[ModelConfig | None] = [config.student, config.teacher]
    files = []
    for model in models:
        name = getattr(model, "name", None)  # teachers of kind cache / soft-labels run no code
        if name is not None and name.startswith("file:"):
            path_text = name.removeprefix("file:").rpartition(":")[0]
            if path_text:
                files.append(Path(path_text))
    return files


def _read_store() -> dict[str, str]:
    try:
        data = json.loads(trust_store_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def trust_config_code(config: RunConfig) -> None:
    """Record the hashes of the config's model files: runs created here may import them again later."""
    from kdistill.runs import file_sha256

    files = [path for path in code_files(config) if path.is_file()]
    if not files:
        return
    store = _read_store()
    store.update({file_sha256(path): str(path.resolve()) for path in files})
    target = trust_store_path()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(store, indent=1, sort_keys=True))
        tmp.replace(target)
    except OSError:
        pass  # a read-only home only means `kdistill eval` of this run will ask for --trust-code


def check_run_code(config: RunConfig, run_dir: Path, trust_code: bool) -> None:
    """Refuse to build models from code a run folder names unless trusted (see the module docstring)."""
    from kdistill.runs import file_sha256

    if trust_code:
        return
    trusted = _read_store()
    for path in code_files(config):
        if path.is_file() and file_sha256(path) not in trusted:
            raise UntrustedCodeError(
                f"run folder {run_dir} builds its model from {path}, which kdistill did not record when creating a "
                "run on this machine (or it changed since); read that file, then pass --trust-code to import it")
