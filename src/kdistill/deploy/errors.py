"""Typed errors of the deploy chain; the CLI prints each as one ``error:`` line."""

from kdistill.errors import KdistillError


class DeployError(KdistillError):
    """A deploy step cannot run with the given run, format or options."""


class ExportError(DeployError):
    """The exporter cannot handle the model (e.g. an unsupported operator); the message names a fallback format."""


class ParityError(DeployError):
    """An exported artefact does not reproduce the PyTorch student within tolerance; the file is not published."""


class PruneError(DeployError):
    """The pruning target cannot be met (or the model cannot be pruned structurally)."""


class QuantizeError(DeployError):
    """int8 was asked for a task or format that does not support it."""
