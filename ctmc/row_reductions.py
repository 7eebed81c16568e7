"""Per-position reductions of a (B, L, n) network output whose backward pass builds the gradient in one tensor.

A loss over a large vocabulary needs only a few numbers per position from the network output o: a logsumexp,
a sum of an elementwise function, and the entries at a few token ids. Written with ordinary autograd, every
such piece keeps its own (B, L, n) intermediate alive for the backward pass and returns its own dense
(B, L, n) gradient (a `gather` scatters into a fresh zero tensor), which are then added. Each function here is
one `torch.autograd.Function` that saves only `o` itself and, in the backward pass, writes

    d loss / d o = (dense part, from the reductions) + scatter of the gathered entries' gradients

into a single new tensor, which becomes `o.grad` without a copy. Peak memory: forward one (B, L, n)
temporary; backward the gradient and nothing else of that size. The logsumexp and the Bregman sum keep their
forward temporary (e^{o - max}, expm1(o - base)) and rescale it in place into the gradient, so their backward
allocates nothing of that size and repeats no exp pass.

- `logsumexp_statistics`: lse_{y < width} o_y and o at the given ids (softmax-type losses).
- `bregman_statistics`: sum_{y not excluded} phi(o_y - base), phi(u) = e^u - u - 1 (score entropy).
- `log_mixture_statistics`: lse_y o_y and sum_y log(1 + w softmax(o)_y) (D3PM's uniform-chain posterior).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

_BLOCK_ELEMENTS = 1 << 20  # entries per row block in a backward pass: 1M (4 MiB in float32)
_CACHE_ELEMENTS = 1 << 18  # entries per thread in a forward row block kept in cache: 1 MiB in float32


def _refuse_nan_or_inf(bad: Tensor) -> None:
    """Raise if any row holds a NaN or +inf that the reduction reads (bad: (B, L) bool, derived from the
    reduction's own row statistics, so the check costs no pass over the output). Without it such a row would
    give a NaN gradient even where the loss multiplies its term by 0 (an unmasked position)."""
    if bool(bad.any()):
        raise ValueError(
            "output contains NaN or +inf in the states a row reduction reads; the network diverged or a log "
            "was taken of a negative number. Check the learning rate and the network's last layer."
        )


def _add_gathered(grad: Tensor, index: Tensor, grad_gathered: Tensor | None) -> Tensor:
    """grad[..., index] += grad_gathered, in place (repeated ids add up). grad: (B, L, n); index: (B, L, k)."""
    if grad_gathered is not None:
        grad.scatter_add_(-1, index, grad_gathered.to(grad.dtype))
    return grad


class LogSumExp(NamedTuple):
    """lse: (B, L) logsumexp of o over the first `width` states; gathered: (B, L, k) o at the given ids."""

    lse: Tensor
    gathered: Tensor


class _LogSumExpGather(torch.autograd.Function):
    """lse = m + log sum_{y < width} e^{o_y - m} (m = the row maximum) and o at the ids.

    The forward keeps w = e^{o - m} (0 beyond width), the one (B, L, n) temporary it needs anyway, and the first
    backward turns it into the gradient in place: d lse / d o_y = w_y / sum(w). No second exp pass, no second
    (B, L, n) tensor. A later backward through the same graph (retain_graph=True, gradcheck) recomputes w.
    """

    @staticmethod
    def forward(ctx, output: Tensor, index: Tensor, width: int) -> tuple[Tensor, Tensor]:
        top = output[..., :width].amax(dim=-1)
        _refuse_nan_or_inf(torch.isnan(top) | (top == math.inf))  # amax propagates NaN
        top = torch.where(torch.isfinite(top), top, torch.zeros((), dtype=top.dtype, device=top.device))
        weights, total = _shifted_exp(output, top, width)
        ctx.save_for_backward(output, index, top, total)
        ctx.width = width
        ctx.weights = weights  # not save_for_backward: the backward consumes it in place
        return top + total.log(), output.gather(-1, index)

    @staticmethod
    def backward(ctx, grad_lse: Tensor | None, grad_gathered: Tensor | None):
        output, index, top, total = ctx.saved_tensors
        grad, ctx.weights = ctx.weights, None
        if grad is None:  # the buffer went into an earlier backward of this graph
            grad = _shifted_exp(output, top, ctx.width)[0]
        if grad_lse is None:
            grad.zero_()
        else:
            grad.mul_((grad_lse / total)[..., None])
        return _add_gathered(grad, index, grad_gathered), None, None


def _shifted_exp(output: Tensor, top: Tensor, width: int) -> tuple[Tensor, Tensor]:
    """(w, sum_y w_y) for w = e^{o - top} over the first width states and 0 beyond: one new (B, L, n) tensor,
    filled block by block (`_row_blocks`) so that the subtract, the exp and the sum read a block from cache."""
    weights = torch.empty(output.shape, dtype=output.dtype, device=output.device)
    total = output.new_empty(output.shape[:-1])
    for rows, out, top_rows, total_rows in _row_blocks(output, weights, top, total):
        torch.sub(rows, top_rows[:, None], out=out)
        out[:, width:] = float("-inf")
        torch.sum(out.exp_(), dim=-1, out=total_rows)
    return weights, total


def _row_blocks(output: Tensor, *tensors: Tensor):
    """Yield matching blocks of rows of `output` (..., n) and of tensors shaped (..., k) or (...), each block
    _CACHE_ELEMENTS entries of output per thread at most (at least one row), as 2-D (rows, n) / 1-D (rows,) views.

    An elementwise pass over a (B, L, n) tensor that is much larger than the cache reads it from memory once per
    operation; a loop over cache-sized blocks reads each block once from memory and then from cache for the next
    operations (docs/training.md, "Step cost"). A block holds _CACHE_ELEMENTS entries per torch thread, since
    each operation splits it among the threads. Off the CPU the whole tensor is one block: a kernel launch per
    block would cost more than the cache saves. The tensors other than output must be contiguous (they are
    written through the views).
    """
    n = output.shape[-1]
    flat = output.reshape(-1, n)
    views = [t.view(-1, t.shape[-1]) if t.dim() == output.dim() else t.view(-1) for t in tensors]
    if output.device.type == "cpu":  # each thread's share of a block is about _CACHE_ELEMENTS entries
        step = max(1, _CACHE_ELEMENTS * torch.get_num_threads() // max(n, 1))
    else:
        step = max(1, flat.shape[0])
    for start in range(0, flat.shape[0], step):
        part = slice(start, start + step)
        yield (flat[part], *(view[part] for view in views))


def logsumexp_statistics(output: Tensor, index: Tensor, width: int | None = None) -> LogSumExp:
    """lse = log sum_{y < width} exp(o_y) (width = n by default) and o[..., index].

    output: (B, L, n) float; index: (B, L, k) long. Returns `LogSumExp` with (B, L) and (B, L, k) tensors.
    """
    width = output.shape[-1] if width is None else width
    return LogSumExp(*_LogSumExpGather.apply(output, index, width))


class Bregman(NamedTuple):
    """total: (B, L) sum_{y not excluded} phi(o_y - base); gathered: (B, L, k) o at the given ids."""

    total: Tensor
    gathered: Tensor


class _BregmanGather(torch.autograd.Function):
    """total = sum_{y not excluded} phi(o_y - base) and o at the ids; phi'(u) = expm1(u).

    The forward's one (B, L, n) temporary is expm1(o - base) (0 at the excluded states), which is also
    d total / d o; it is kept and the first backward scales it in place into the gradient (no second
    subtract / expm1 pass). A later backward through the same graph (retain_graph=True, gradcheck) recomputes it.
    """

    @staticmethod
    def forward(ctx, output: Tensor, base: Tensor, exclude: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        shifted, total = _shifted_expm1(output, base, exclude)
        _refuse_nan_or_inf(torch.isnan(total))  # NaN, or +inf - (+inf) from the linear part
        ctx.save_for_backward(output, base, exclude, index)
        ctx.derivative = shifted  # not save_for_backward: the backward consumes it in place
        return total, output.gather(-1, index)

    @staticmethod
    def backward(ctx, grad_total: Tensor | None, grad_gathered: Tensor | None):
        output, base, exclude, index = ctx.saved_tensors
        grad, ctx.derivative = ctx.derivative, None
        if grad_total is None:
            grad = torch.zeros_like(output)
        else:  # phi'(u) = expm1(u), 0 at the excluded states
            if grad is None:  # the buffer went into an earlier backward of this graph
                grad = _shifted_expm1(output, base, exclude)[0]
            grad.mul_(grad_total[..., None])
        return _add_gathered(grad, index, grad_gathered), None, None, None


def _shifted_expm1(output: Tensor, base: Tensor, exclude: Tensor) -> tuple[Tensor, Tensor]:
    """(expm1(u), sum_y phi(u_y)) for u = o - base with u = 0 at the excluded states: one new (B, L, n) tensor
    and its (B, L) sums of phi(u) = expm1(u) - u, filled block by block (`_row_blocks`)."""
    shifted = torch.empty(output.shape, dtype=output.dtype, device=output.device)
    total = output.new_empty(output.shape[:-1])
    blocks = _row_blocks(output, shifted, base.contiguous(), exclude.contiguous(), total)
    scratch = None  # the CPU expm1 form's block buffer, allocated with the first block
    for rows, out, base_rows, exclude_rows, total_rows in blocks:
        torch.sub(rows, base_rows[:, None], out=out)
        out.scatter_(-1, exclude_rows, 0.0)  # phi(0) = 0: excluded states drop out exactly
        linear = out.sum(-1)
        if output.device.type != "cpu":
            out.expm1_()
        else:
            scratch = torch.empty_like(out) if scratch is None else scratch
            _expm1_(out, scratch[: out.shape[0]])
        torch.sub(out.sum(-1), linear, out=total_rows)
    return shifted, total


def _expm1_(u: Tensor, scratch: Tensor) -> Tensor:
    """u <- expm1(u) in place, as tanh(u / 2) (1 + e^u) (= (e^u - 1) / (e^u + 1) (e^u + 1)); scratch: like u.

    The identity has no cancellation anywhere (1 + e^u >= 1, and tanh is accurate near 0), so it is as exact as
    torch.expm1: within 1.1 ulp in float32 over u in [-100, 88] against float64 (torch.expm1: 0.8 ulp). It gives
    exactly 0 at u = 0, -1 at -inf, inf on overflow, NaN at NaN. On the CPU, torch's tanh and exp are vectorised
    while its expm1 is not: four passes over a block in cache take about 0.7x the time of the one expm1 pass
    (float32, V = 50,257, one thread; docs/training.md, "Step cost").
    """
    torch.mul(u, 0.5, out=scratch).tanh_()
    return torch.addcmul(scratch, scratch, u.exp_(), out=u)


def bregman_statistics(output: Tensor, base: Tensor, exclude: Tensor, index: Tensor) -> Bregman:
    """sum over y not in `exclude` of phi(o_y - base), phi(u) = e^u - u - 1, and o[..., index].

    output: (B, L, n) float; base: (B, L) (no gradient is taken with respect to it); exclude, index: (B, L, k)
    long. Returns `Bregman` with (B, L) and (B, L, k) tensors.
    """
    return Bregman(*_BregmanGather.apply(output, base.detach(), exclude, index))


class LogMixture(NamedTuple):
    """lse: (B, L) logsumexp_y o_y; total: (B, L) sum_y log(1 + w p_y), p = softmax(o); gathered: (B, L, k)."""

    lse: Tensor
    total: Tensor
    gathered: Tensor


class _LogMixtureGather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, output: Tensor, log_weight: Tensor, index: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        lse = torch.logsumexp(output, dim=-1)
        shifted = output - (lse - log_weight)[..., None]  # log(w p_y) <= log w
        if bool((log_weight < _log_max(output.dtype)).all()):
            total = shifted.exp_().log1p_().sum(-1)  # in place: log(1 + w p_y) without overflow
        else:
            total = torch.nn.functional.softplus(shifted).sum(-1)
        ctx.save_for_backward(output, log_weight, index, lse)
        return lse, total, output.gather(-1, index)

    @staticmethod
    def backward(ctx, grad_lse: Tensor | None, grad_total: Tensor | None, grad_gathered: Tensor | None):
        output, log_weight, index, lse = ctx.saved_tensors
        grad_lse = torch.zeros_like(lse) if grad_lse is None else grad_lse
        grad_total = torch.zeros_like(lse) if grad_total is None else grad_total
        # d total / d o_k = g_k - p_k sum_y g_y with g_y = w p_y / (1 + w p_y) = sigmoid(log p_y + log w);
        # d lse / d o_k = p_k. Both g and p are needed at once, so rows are processed in blocks: the
        # temporaries are one block, the gradient the only (B, L, n) tensor.
        n = output.shape[-1]
        grad = torch.empty_like(output)
        rows, rows_grad = output.reshape(-1, n), grad.view(-1, n)
        lse, log_weight = lse.reshape(-1, 1), log_weight.reshape(-1, 1)
        grad_lse, grad_total = grad_lse.reshape(-1, 1), grad_total.reshape(-1, 1)
        block = max(1, _BLOCK_ELEMENTS // n)
        for start in range(0, rows.shape[0], block):
            part = slice(start, start + block)
            log_probs = rows[part] - lse[part]
            mixture = torch.add(log_probs, log_weight[part], out=rows_grad[part]).sigmoid_()
            coefficient = grad_lse[part] - grad_total[part] * mixture.sum(-1, keepdim=True)
            mixture.mul_(grad_total[part]).add_(log_probs.exp_().mul_(coefficient))
        return _add_gathered(grad, index, grad_gathered), None, None


def _log_max(dtype: torch.dtype) -> float:
    """log of the largest finite value of dtype: exp(u) is finite for u below it."""
    return math.log(torch.finfo(dtype).max)


def log_mixture_statistics(output: Tensor, log_weight: Tensor, index: Tensor) -> LogMixture:
    """lse = logsumexp_y o_y, total = sum_y log(1 + w p_y) with p = softmax(o) and w = exp(log_weight), and
    o[..., index]. This is sum_y log(w p_y + 1) = sum_y log(a p_y + c) - n log c for w = a / c, the mixture
    of a prediction with a uniform floor.

    output: (B, L, n) float; log_weight: (B, L) finite (no gradient is taken with respect to it); index:
    (B, L, k) long. Returns `LogMixture` with (B, L), (B, L) and (B, L, k) tensors.
    """
    return LogMixture(*_LogMixtureGather.apply(output, log_weight.detach().to(output.dtype), index))
