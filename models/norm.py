"""Layer normalisation that always runs in float32, so the network is safe under bf16/fp16 autocast."""

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class FloatLayerNorm(nn.LayerNorm):
    """LayerNorm(x) = (x - mean) / sqrt(var + eps) * weight (+ bias), computed in float32.

    Autocast is switched off inside, the input and the affine parameters are upcast, and the result is
    cast back to the input's dtype. x: (..., dim). Returns (..., dim).
    """

    def __init__(self, dim: int, bias: bool = True) -> None:
        super().__init__(dim, elementwise_affine=True, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        with torch.autocast(device_type=x.device.type, enabled=False):
            normalised = F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps)
        return normalised.to(x.dtype)
