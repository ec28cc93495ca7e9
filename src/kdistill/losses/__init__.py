"""Pure loss functions on tensors. They never see a model or a teacher."""

from kdistill.losses.divergence import kd_kl_loss

__all__ = ["kd_kl_loss"]
