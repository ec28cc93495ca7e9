"""Which samples each process sees: one seeded order per epoch, split across processes, resumable mid-epoch.

Training (``ShardSampler``) follows ``torch.utils.data.DistributedSampler``: the epoch's permutation (seeded by the
run seed and the epoch, so a resumed run sees the same order) is padded by wrapping around until every process gets
the same number of samples (DDP needs the same number of steps everywhere); process ``r`` takes positions ``r, r +
W, r + 2W, ...``. With one process it is the plain shuffled epoch. Batch ``k`` of every process together holds the
samples of batch ``k`` of a one-process run with ``W`` times the batch size.

Validation (``EvalShard``) must count every sample exactly once: each process gets the same number of items (so
sharded models run the same number of forward passes) and the padding items are marked, then dropped from the
metrics.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import Dataset, Sampler

REAL_KEY = "_real_sample"  # validation batches: False on the padding items of the last process's shard


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * 100_003 + epoch


class ShardSampler(Sampler[int]):
    """This process's share of the shuffled epoch; ``start_epoch`` picks the order and where to resume in it."""

    def __init__(self, size: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size
        self.per_rank = math.ceil(size / world_size)
        self.epoch, self.start = 0, 0

    def start_epoch(self, epoch: int, skip: int = 0) -> None:
        """Order of ``epoch``, starting after this process's first ``skip`` samples (consumed before a checkpoint).

        Not named ``set_epoch`` on purpose: Fabric's dataloader calls ``set_epoch(number of iterations so far)`` on
        any sampler that has one, which in a resumed run is not the epoch."""
        self.epoch, self.start = epoch, skip

    def __len__(self) -> int:
        return max(0, self.per_rank - self.start)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        order = torch.randperm(self.size, generator=generator)
        padding = self.per_rank * self.world_size - self.size
        if padding:
            order = torch.cat([order, order.repeat(math.ceil(padding / self.size))[:padding]])
        yield from order[self.rank :: self.world_size][self.start :].tolist()


class EvalShard(Dataset):
    """Items ``rank, rank + W, ...`` of ``dataset``, padded to ``ceil(n / W)`` items with marked repeats."""

    def __init__(self, dataset: Dataset, rank: int, world_size: int) -> None:
        self.dataset, self.rank, self.world_size = dataset, rank, world_size
        self.total = len(dataset)  # type: ignore[arg-type]
        self.length = math.ceil(self.total / world_size)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        position = self.rank + index * self.world_size
        item = dict(self.dataset[position % self.total])
        item[REAL_KEY] = torch.tensor(position < self.total)
        return item


def real_samples(batch: dict[str, torch.Tensor], logits: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Drop the padding items of an ``EvalShard`` batch (after the forward pass, which every process must run)."""
    real = batch.pop(REAL_KEY, None)
    if real is None or bool(real.all()):
        return batch, logits
    rows = real.shape[0]
    kept = {k: v[real] if torch.is_tensor(v) and v.dim() > 0 and v.shape[0] == rows else v for k, v in batch.items()}
    return kept, logits[real]
