"""The on-disk store: ``manifest.json`` plus ``shard-NNNNN.npy`` files, one numpy structured array per shard.

A shard holds the rows of ``shard_size`` consecutive training samples, ``views`` rows per sample (row =
sample * views + view); a language-model store has one row per sequence holding all ``positions`` tokens. Shards
are written to ``<name>.tmp``, fsync'd and renamed, so a shard file under its real
name is always complete; the manifest (also written atomically) lists the completed shards and the sha256 of each,
checked before a shard is first read (a truncated, emptied or garbled shard is named, never used). A store of at
most ``IN_MEMORY_BYTES`` (every classifier store of a usual image data set: Fashion-MNIST with 4 views is 6 MB) is
read into memory on the first lookup, so a batch's rows are one gather; a larger one (language models) is read by
memory-mapping shard files (``np.load(mmap_mode="r")``) on demand, so memory stays bounded whatever its size.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np

from kdistill.cache.compact import row_fields
from kdistill.cache.errors import CacheDiskFullError, CacheError, CacheIncompleteError, CacheMismatchError
from kdistill.runs import file_sha256

FORMAT_VERSION = 2  # 2: the whole training data fingerprinted, a sha256 per shard
MANIFEST = "manifest.json"
_MAX_OPEN_SHARDS = 32
IN_MEMORY_BYTES = 256 * 2**20


def shard_name(shard: int) -> str:
    return f"shard-{shard:05d}.npy"


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems cannot fsync a directory; the rename is still atomic
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_file(path: Path, write) -> None:
    """Call ``write(file)`` on a fresh file and fsync it (split out so tests can simulate a full disk)."""
    with open(path, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write(path: Path, write, what: str) -> None:
    """Write via ``<path>.tmp`` + rename; ENOSPC becomes a CacheDiskFullError and the tmp file is removed."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        _write_file(tmp, write)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise CacheDiskFullError(
                f"disk full while writing {what} of the cache in {path.parent}; the complete shards are kept: "
                "free some space and run `kdistill cache build` again to resume"
            ) from None
        raise CacheError(f"cannot write {what} in {path.parent}: {exc}") from None
    _fsync_dir(path.parent)


class CacheStore:
    """One cache folder: the manifest, the layout it describes, and memory-mapped access to the rows."""

    def __init__(self, root: Path, manifest: dict) -> None:
        self.root = Path(root)
        self.manifest = manifest
        fields = row_fields(manifest["mode"], manifest["k"], manifest["num_classes"], manifest["precision"],
                            manifest.get("positions"))
        if manifest["augmented"]:
            fields.append(("params", "<i2", (3,)))  # (dy, dx, flip) of RandomCropFlip
        self.dtype = np.dtype(fields)
        self._open: OrderedDict[int, np.ndarray] = OrderedDict()
        self._verified: set[int] = set()  # shards whose checksum this process has checked
        self._table: np.ndarray | None = None  # every row, for a store read into memory
        self.repaired: list[int] = []  # shards a resumed build found damaged (checksum) and built again

    # Layout -------------------------------------------------------------------------------------------------------
    @property
    def views(self) -> int:
        return self.manifest["views"]

    @property
    def num_samples(self) -> int:
        return self.manifest["num_samples"]

    @property
    def num_shards(self) -> int:
        return self.manifest["num_shards"]

    @property
    def bytes_per_sample(self) -> int:
        return self.dtype.itemsize * self.views

    @property
    def positions(self) -> int | None:
        """Token positions per row (language-model stores), None for classifier stores."""
        return self.manifest.get("positions")

    def shard_samples(self, shard: int) -> range:
        size = self.manifest["shard_size"]
        return range(shard * size, min((shard + 1) * size, self.num_samples))

    @property
    def coverage(self) -> float:
        return len(self.manifest["completed_shards"]) / self.num_shards

    # Opening and writing ------------------------------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | Path) -> CacheStore:
        root = Path(root)
        path = root / MANIFEST
        if not path.is_file():
            raise CacheIncompleteError(
                f"no teacher cache in {str(root)!r} (no {MANIFEST}); build one with `kdistill cache build CONFIG "
                f"--dir {root}`"
            )
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise CacheError(f"cannot read {path}: {exc}") from None
        if manifest.get("format_version") != FORMAT_VERSION:
            raise CacheMismatchError(
                "format", f"cache {str(root)!r} has format version {manifest.get('format_version')}, this kdistill "
                f"reads {FORMAT_VERSION}; rebuild it with `kdistill cache build`")
        return cls(root, manifest)

    def write_manifest(self) -> None:
        text = json.dumps(self.manifest, indent=1, sort_keys=True) + "\n"
        atomic_write(self.root / MANIFEST, lambda handle: handle.write(text.encode()), "the manifest")

    def remove_temporaries(self) -> None:
        """Delete ``*.tmp`` files a killed build left behind."""
        for leftover in self.root.glob("*.tmp"):
            leftover.unlink(missing_ok=True)

    def write_shard(self, shard: int, rows: np.ndarray) -> None:
        """Write one complete shard atomically, then record it in the manifest."""
        expected = len(self.shard_samples(shard)) * self.views
        if rows.dtype != self.dtype or len(rows) != expected:
            raise CacheError(f"shard {shard}: got {len(rows)} rows of {rows.dtype}, "
                             f"expected {expected} of {self.dtype}")
        path = self.root / shard_name(shard)
        atomic_write(path, lambda handle: np.lib.format.write_array(handle, rows, allow_pickle=False), f"shard {shard}")
        self.manifest.setdefault("shard_sha256", {})[str(shard)] = file_sha256(path)
        self.manifest["completed_shards"] = sorted({*self.manifest["completed_shards"], shard})
        self.write_manifest()

    def shard_problem(self, shard: int) -> str | None:
        """None when the shard file is there and matches its recorded sha256, else what is wrong with it."""
        path = self.root / shard_name(shard)
        expected = self.manifest.get("shard_sha256", {}).get(str(shard))
        if not path.is_file():
            return f"{path} is missing"
        if expected is None:
            return f"{path} has no recorded checksum"
        if file_sha256(path) != expected:
            return f"{path} is damaged (truncated or altered: its sha256 differs from the one recorded)"
        return None

    # Reading ------------------------------------------------------------------------------------------------------
    def _shard(self, shard: int) -> np.ndarray:
        """The shard's memory map, kept in a small LRU so open file handles stay bounded."""
        if shard in self._open:
            self._open.move_to_end(shard)
            return self._open[shard]
        if shard not in self._verified:  # hashed once per process (not on each reopening): a bad shard never
            problem = self.shard_problem(shard)  # reaches training
            if problem:
                raise CacheError(f"{problem}; run `kdistill cache build` on this store again to rebuild it")
            self._verified.add(shard)
        try:
            rows = np.load(self.root / shard_name(shard), mmap_mode="r")
        except (OSError, ValueError, EOFError) as exc:
            raise CacheError(f"cannot read {self.root / shard_name(shard)}: {exc}") from None
        if rows.dtype != self.dtype:
            raise CacheError(f"{self.root / shard_name(shard)} holds {rows.dtype}, the manifest says {self.dtype}")
        self._open[shard] = rows
        while len(self._open) > _MAX_OPEN_SHARDS:
            self._open.popitem(last=False)
        return rows

    def read_rows(self, rows: np.ndarray) -> np.ndarray:
        """Copy the given rows (sample * views + view) out of the memory-mapped shards."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= self.num_samples * self.views):
            raise CacheError(
                f"sample index out of the cache's range (it holds {self.num_samples} training samples); a cached "
                "teacher serves only the training split it was built from"
            )
        if self._table is None and self.num_samples * self.bytes_per_sample <= IN_MEMORY_BYTES:
            self._table = np.concatenate([self._shard(shard) for shard in range(self.num_shards)])
            self._open.clear()  # the copy serves every read from now on
        if self._table is not None:
            return self._table[rows]
        per_shard = self.manifest["shard_size"] * self.views
        shards, local = np.divmod(rows, per_shard)
        out = np.empty(len(rows), dtype=self.dtype)
        for shard in np.unique(shards):
            mask = shards == shard
            out[mask] = self._shard(int(shard))[local[mask]]
        return out

    def read_field(self, name: str) -> np.ndarray:
        """One small field (e.g. the augmentation ``params``) of every row, in row order, copied into memory."""
        return np.concatenate([np.array(self._shard(shard)[name]) for shard in range(self.num_shards)])

    def close(self) -> None:
        self._open.clear()
        self._table = None

    def __getstate__(self) -> dict:
        # DataLoader workers get the manifest only and map (and check) the shards themselves: pickling a memmap or
        # the in-memory rows would copy them.
        return {**self.__dict__, "_open": OrderedDict(), "_verified": set(), "_table": None}

    def size_on_disk(self) -> int:
        return sum(path.stat().st_size for path in self.root.iterdir() if path.is_file())
