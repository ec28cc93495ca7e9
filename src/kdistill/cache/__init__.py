"""Offline distillation: run the teacher once, store its outputs, train students from the store.

``build_cache`` runs ``config.teacher`` over the training split and writes a store (see ``store`` for the format,
``compact`` for the ``full``/``topk`` encodings). With an active ``RandomCropFlip`` it stores several augmented
views per sample with their parameters; ``CachedTeacher.train_dataset`` replays those exact views at training time.

Only logits are stored (the teacher kind ``cache`` provides ``logits``), so only methods that need nothing else
(kd, dkd, dist, lskd, and the token_* methods for language models) can train from a cache; the feature methods
(FitNets, attention transfer, CRD ...) need a live teacher. A cache serves the training split only.
For ``task: causal-lm`` each row is one sequence with the teacher's
distribution at every position (see ``build``); top-k mode keeps k log-probabilities per token.
"""

from kdistill.cache.build import build_cache, cache_info, default_cache_dir
from kdistill.cache.compact import CompactOutputs
from kdistill.cache.errors import CacheDiskFullError, CacheError, CacheIncompleteError, CacheMismatchError
from kdistill.cache.store import CacheStore
from kdistill.cache.teacher import (
    CachedTeacher,
    ReplayViews,
    open_cached_teacher,
    teacher_model_for_metrics,
)

__all__ = [
    "CacheDiskFullError",
    "CacheError",
    "CacheIncompleteError",
    "CacheMismatchError",
    "CacheStore",
    "CachedTeacher",
    "CompactOutputs",
    "ReplayViews",
    "build_cache",
    "cache_info",
    "default_cache_dir",
    "open_cached_teacher",
    "teacher_model_for_metrics",
]
