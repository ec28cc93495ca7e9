"""Model sources. Importing this package registers the built-in ones."""

from kdistill.deploy import pruned_model  # noqa: F401  (registers `pruned`: the runs of kdistill deploy --prune)
from kdistill.models import builtin, encoders, given, hf, hub  # noqa: F401  (registration)
from kdistill.models.base import MODEL_SOURCES, ModelRequest, build_model, count_parameters, logits_of
from kdistill.models.run_folder import load_model
from kdistill.models.weights import load_weights, save_weights

__all__ = ["MODEL_SOURCES", "ModelRequest", "build_model", "count_parameters", "load_model", "load_weights",
           "logits_of", "save_weights"]
