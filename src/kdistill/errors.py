"""Typed errors. Each message says what is wrong, where, and how to fix it; the CLI prints it as one line."""


class KdistillError(Exception):
    """Base class of every error kdistill raises on bad input.

    ``exit_code`` is the CLI's exit status for it: 2 for bad input; a subclass (or an instance) may set another, e.g.
    130/143 for a run interrupted by SIGINT/SIGTERM after writing its checkpoint.
    """

    exit_code: int = 2


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


class NonFiniteError(KdistillError, FloatingPointError):
    """A loss term, gradient or weight became NaN or infinite during training (the message names it)."""


class TrainingInterrupted(KdistillError):
    """SIGTERM or SIGINT stopped training after a checkpoint; ``exit_code`` is 128 + the signal number."""

    def __init__(self, signal_number: int, message: str) -> None:
        super().__init__(message)
        self.signal_number = signal_number
        self.exit_code = 128 + signal_number


class RunLockedError(RunFolderError):
    """Another process holds the run folder's lock (it is training, resuming or overwriting that run)."""


class UntrustedCodeError(ModelError):
    """A config from a run folder names Python code (``file:x.py:fn``) that kdistill was not told to trust."""


NumericalError = NonFiniteError  # the name kdistill check and older callers use
