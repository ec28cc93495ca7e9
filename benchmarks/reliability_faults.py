"""Fault-injection campaign behind the figures of docs/reliability.md (issue 19), one command on a CPU:

    .venv/bin/python benchmarks/reliability_faults.py --kills 8 --output-dir runs/reliability-faults

1. kill -9 at random moments of a real `kdistill train` process, then `--resume`, until the run finishes; the final
   weights must equal those of an uninterrupted run bit for bit.
2. Every checkpoint file (and config.yaml) truncated, emptied, bit-flipped or deleted, then `--resume` (the CLI entry
   point, in this process): each must be refused with exit 2 and one error line naming the damaged file.
3. Every way of damaging a cache shard (truncated, emptied, bit-flipped, garbled): `cache info` must not count it,
   and a second `cache build` must rebuild it byte-identical.
Results: <output-dir>/results.json (and printed).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from safetensors.torch import load_file

TINY = ["--data", "digits", "--student", "mlp", "--student-kwargs", "{width: 8, depth: 1}", "--batch-size", "8",
        "--no-progress", "--accelerator", "cpu"]
SRC = str(Path(__file__).resolve().parents[1] / "src")


def cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; sys.argv[0] = 'kdistill'; from kdistill.cli import main; main()",
            *args]


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": SRC}


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(cli(*args), env=ENV, capture_output=True, text=True, timeout=600)


def run_here(*args: str) -> tuple[int, str]:
    """The same entry point in this process (no interpreter start-up: the damage trials are many and short)."""
    from kdistill import cli

    sys.argv, err, code = ["kdistill", *args], io.StringIO(), 0
    with contextlib.redirect_stderr(err):
        try:
            cli.main()
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, err.getvalue()


def same_weights(a: Path, b: Path) -> bool:
    left, right = load_file(str(a)), load_file(str(b))
    return left.keys() == right.keys() and all(left[k].equal(right[k]) for k in left)


def kill_and_resume(out: Path, kills: int, epochs: int, rng: random.Random) -> dict:
    """Kill the run ``kills`` times at random moments after its first checkpoint, resuming each time."""
    base = ["train", *TINY, "--epochs", str(epochs), "--output-dir", str(out)]
    reference = run(*base, "--name", "uninterrupted")
    assert reference.returncode == 0, reference.stderr
    args, folder, done_kills = [*base, "--name", "killed"], out / "killed", 0
    flag: list[str] = []
    while done_kills < kills:
        process = subprocess.Popen(cli(*args, *flag), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        marker = folder / "checkpoints/last/state.pt"
        seen = marker.stat().st_mtime_ns if marker.exists() else 0
        while process.poll() is None and not (marker.exists() and marker.stat().st_mtime_ns != seen):
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.6))  # anywhere in the next epoch, mid-checkpoint included
        if process.poll() is not None:
            break  # finished before the kill
        process.send_signal(signal.SIGKILL)
        process.wait()
        done_kills, flag = done_kills + 1, ["--resume"]
    final = run(*args, *flag) if not (folder / "summary.json").is_file() else None
    assert final is None or final.returncode == 0, final.stderr
    epochs_logged = [json.loads(line)["epoch"] for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return {"kills": done_kills, "resumes": done_kills, "epochs": epochs,
            "metrics_epochs_in_order": epochs_logged == list(range(epochs)),
            "bit_identical": same_weights(folder / "student.safetensors", out / "uninterrupted/student.safetensors")}


def flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) - 16] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE = {"truncated": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
          "emptied": lambda p: p.write_bytes(b""), "bit-flipped": flip, "deleted": Path.unlink}


def damaged_checkpoints(out: Path) -> dict:
    base = ["train", *TINY, "--epochs", "2", "--output-dir", str(out)]
    assert run_here(*base, "--name", "pristine")[0] == 0
    pristine = out / "pristine"
    files = ["config.yaml", *(f"checkpoints/last/{p.name}" for p in sorted((pristine / "checkpoints/last").iterdir()))]
    results = []
    for name in files:
        for kind, damage in DAMAGE.items():
            if name == "config.yaml" and kind in ("bit-flipped", "deleted"):
                continue  # a flipped YAML byte can stay valid YAML; a deleted config is "not a run"
            trial = out / "trial"
            shutil.rmtree(trial, ignore_errors=True)
            shutil.copytree(pristine, trial)
            text = (trial / "config.yaml").read_text().replace(str(pristine), str(trial))
            (trial / "config.yaml").write_text(text.replace("name: pristine", "name: trial"))
            damage(trial / name)
            code, err = run_here(*[a if a != "2" else "3" for a in base], "--name", "trial", "--resume")
            lines = err.strip().splitlines()
            refused = (code == 2 and len(lines) == 1 and lines[0].startswith("error: ")
                       and Path(name).name in lines[0] and "Traceback" not in err)
            results.append({"file": name, "damage": kind, "refused_naming_file": refused, "message": lines[-1:]})
    return {"faults": len(results), "refused": sum(r["refused_naming_file"] for r in results), "trials": results}


def damaged_shards(out: Path) -> dict:
    from kdistill.cache import build_cache, cache_info
    from kdistill.cache.store import shard_name
    from kdistill.config import DataConfig, ModelConfig, RunConfig, TrainerConfig
    from kdistill.data import load_data
    from kdistill.models import build_model, save_weights

    splits = load_data(DataConfig(name="digits"))
    teacher = ModelConfig(name="mlp", kwargs={"width": 16, "depth": 1})
    weights = save_weights(build_model(teacher, splits.input_shape, splits.num_classes), out / "teacher.safetensors")
    config = RunConfig(teacher=teacher.model_copy(update={"weights": str(weights)}),
                       trainer=TrainerConfig(accelerator="cpu"))
    store, results = out / "cache", []
    build_cache(config, store, shard_size=500)
    for kind, damage in {**DAMAGE, "garbled": lambda p: p.write_bytes(b"\x93NUMPY" + os.urandom(4000))}.items():
        for shard in range(3):
            original = (store / shard_name(shard)).read_bytes()
            damage(store / shard_name(shard))
            counted = cache_info(store)["coverage"] == 1.0
            rebuilt = build_cache(config, store, shard_size=500)
            results.append({"shard": shard, "damage": kind, "counted_as_coverage": counted,
                            "rebuilt_identical": (store / shard_name(shard)).read_bytes() == original
                            and rebuilt["rebuilt_shards"] == [shard]})
    return {"faults": len(results), "not_counted": sum(not r["counted_as_coverage"] for r in results),
            "rebuilt_identical": sum(r["rebuilt_identical"] for r in results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-dir", type=Path, default=Path("runs/reliability-faults"))
    args = parser.parse_args()
    shutil.rmtree(args.output_dir, ignore_errors=True)
    args.output_dir.mkdir(parents=True)
    started = time.perf_counter()
    results = {"kill_and_resume": kill_and_resume(args.output_dir / "kill", args.kills, args.epochs,
                                                  random.Random(args.seed)),
               "damaged_checkpoints": damaged_checkpoints(args.output_dir / "checkpoints"),
               "damaged_shards": damaged_shards(args.output_dir)}
    results["seconds"] = round(time.perf_counter() - started, 1)
    (args.output_dir / "results.json").write_text(json.dumps(results, indent=2))
    summary = {k: {key: v for key, v in value.items() if key != "trials"} if isinstance(value, dict) else value
               for k, value in results.items()}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
