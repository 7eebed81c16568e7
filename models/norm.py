"""Layer normalisation that runs in at least float32, so the network is safe under bf16/fp16 autocast."""

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class FloatLayerNorm(nn.LayerNorm):
    """LayerNorm(x) = (x - mean) / sqrt(var + eps) * weight (+ bias), computed in float32 (float64 stays float64).

    Autocast is switched off inside, the input and the affine parameters are upcast to
    promote_types(x.dtype, float32), and the result is cast back to the input's dtype. x: (..., dim).
    Returns (..., dim).
    """

    def __init__(self, dim: int, bias: bool = True) -> None:
        super().__init__(dim, elementwise_affine=True, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        dtype = torch.promote_types(x.dtype, torch.float32)  # float64 reference models keep their precision
        weight = self.weight.to(dtype)
        bias = None if self.bias is None else self.bias.to(dtype)
        with torch.autocast(device_type=x.device.type, enabled=False):
            normalised = F.layer_norm(x.to(dtype), self.normalized_shape, weight, bias, self.eps)
        return normalised.to(x.dtype)
