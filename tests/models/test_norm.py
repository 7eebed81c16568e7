"""models.norm.FloatLayerNorm: float64 stays float64 (reference tests), low precision is computed in float32."""

import torch
import torch.nn.functional as F

from models.norm import FloatLayerNorm


def test_float64_input_is_normalised_in_float64() -> None:
    torch.manual_seed(0)
    norm = FloatLayerNorm(8).double()
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    x = torch.randn(3, 5, 8, dtype=torch.float64) * 1e3 + 1e6  # large offset: float32 would lose ~1e-1 of it
    expected = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + norm.eps)
    expected = expected * norm.weight + norm.bias
    result = norm(x)
    assert result.dtype == torch.float64
    torch.testing.assert_close(result, expected, rtol=1e-12, atol=1e-12)


def test_bfloat16_input_is_normalised_in_float32_and_returned_in_bfloat16() -> None:
    torch.manual_seed(1)
    norm = FloatLayerNorm(8).to(torch.bfloat16)
    x = torch.randn(4, 8).to(torch.bfloat16)
    result = norm(x)
    assert result.dtype == torch.bfloat16
    reference = F.layer_norm(x.float(), (8,), norm.weight.float(), norm.bias.float(), norm.eps).to(torch.bfloat16)
    torch.testing.assert_close(result, reference, rtol=0, atol=0)
