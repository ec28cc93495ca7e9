"""Typed errors. Each message says what is wrong, where, and how to fix it; the CLI prints it as one line."""


class KdistillError(Exception):
    """Base class of every error kdistill raises on bad input."""


class ConfigError(KdistillError):
    """A config key is missing, unknown or out of range."""


class RegistryError(KdistillError):
    """An unknown or duplicate name in a registry (models, data sets, methods)."""


class DataError(KdistillError):
    """A data source cannot be read or does not match what the run expects."""


class ModelError(KdistillError):
    """A model cannot be built, or its inputs/outputs do not fit the data or the other model."""


class CheckpointError(KdistillError):
    """A checkpoint is missing, unreadable, or does not fit the model."""


class RunFolderError(KdistillError):
    """The run folder exists (and neither overwrite nor resume was asked) or is not a run folder."""


class RunLockedError(RunFolderError):
    """Another process holds the run folder's lock (it is training, resuming or overwriting that run)."""


class UntrustedCodeError(ModelError):
    """A config from a run folder names Python code (``file:x.py:fn``) that kdistill was not told to trust."""


class NumericalError(KdistillError, FloatingPointError):
    """Training produced a non-finite loss, gradient or weight (still a FloatingPointError for old callers)."""
