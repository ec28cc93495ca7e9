"""Distillation methods, one module each. Importing this package registers them."""

from kdistill.methods import (  # noqa: F401  (registration)
    attention,
    crd,
    dist,
    dkd,
    embedding,
    fitnet,
    logit_kd,
    lskd,
    nst,
    pkt,
    rkd,
    sp,
    token_kd,
)
from kdistill.methods.base import METHODS, Method, MethodContext, build_method

__all__ = ["METHODS", "Method", "MethodContext", "build_method"]
