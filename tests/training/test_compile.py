"""model.compile: the compiled network trains on the same loss and gradients as the eager one.

Reference: the eager network with the same weights, on the same noisy batch, through the training path's
`loss_output` (packed outputs). The graph capture (TorchDynamo and AOT autograd, the part that meets this
package's code: the in-place shift, the custom autograd Functions, the boolean `where`) runs with the
"aot_eager" backend, which takes seconds; inductor's code generation is torch's own (minutes on 2 cores, so
it is measured in docs/experiments.md, not run here).
"""

from __future__ import annotations

import pytest
import torch

import losses
import models
from evaluation.bounds import loss_output
from training.module import DiffusionModule

# torch's own graph capture calls an API torch deprecates (torch.jit.script_method); not this project's code.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")


def _network(n: int) -> models.DiT:
    torch.manual_seed(0)
    return models.DiT(n, hidden_size=16, num_layers=1, num_heads=2, cond_dim=8, max_length=8,
                      absorbing_parameterization=True)


@pytest.mark.parametrize("loss_name", ["ScoreEntropy", "LambdaDCE"])
def test_compiled_network_gives_the_same_loss_and_gradients(loss_name):
    if loss_name == "LambdaDCE":
        def network(n):
            torch.manual_seed(0)
            return models.RADDDenoiser(n, hidden_size=16, num_layers=1, num_heads=2, max_length=8)
    else:
        network = _network
    loss_class = getattr(losses, loss_name)
    eager = DiffusionModule(11, network=network, loss=loss_class)
    compiled = DiffusionModule(11, network=network, loss=loss_class, compile="aot_eager")
    compiled.network.load_state_dict(eager.network.state_dict())
    assert compiled.network._compiled_call_impl is not None and eager.network._compiled_call_impl is None
    g = torch.Generator().manual_seed(1)
    x0 = torch.randint(0, 11, (4, 8), generator=g)
    results = []
    for module in (eager, compiled):
        t = module.loss.sample_time(4, generator=torch.Generator().manual_seed(2))
        x_t = module.process.sample(x0, t[:, None], generator=torch.Generator().manual_seed(3))
        value = module.loss(loss_output(module.network, module.loss, x_t, module.process.total(t)), x0, x_t, t)
        value.sum().backward()
        results.append((value.detach(), [p.grad for p in module.network.parameters()]))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-5, atol=1e-6)
    for a, b in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)


def test_compile_option_values():
    assert DiffusionModule(11, network=_network, compile=True).network._compiled_call_impl is not None
    with pytest.raises(ValueError, match=r"model.compile must be true, false or a torch.compile backend"):
        DiffusionModule(11, network=_network, compile="bogus")
