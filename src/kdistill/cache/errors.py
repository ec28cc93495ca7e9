"""Errors of the teacher-output cache. Each says what is wrong with which store and what to do about it."""

from kdistill.errors import KdistillError


class CacheError(KdistillError):
    """A teacher cache cannot be built, read or used for this run."""


class CacheMismatchError(CacheError):
    """A stored cache was made for another teacher, data set, transform or precision than the current run."""

    def __init__(self, part: str, message: str) -> None:
        super().__init__(message)
        self.part = part  # "task" | "teacher" | "data" | "transform" | "precision" | "layout" | "format"


class CacheIncompleteError(CacheError):
    """A cache is missing or only partly built (a build was interrupted)."""


class CacheDiskFullError(CacheError):
    """The disk filled up while a shard was written; the complete shards are kept and a build can resume."""
