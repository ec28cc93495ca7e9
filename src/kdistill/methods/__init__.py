"""Distillation methods, one module each. Importing this package registers them."""

from kdistill.methods import logit_kd  # noqa: F401  (registration)
from kdistill.methods.base import METHODS, Method, MethodContext, build_method

__all__ = ["METHODS", "Method", "MethodContext", "build_method"]
