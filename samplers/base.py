"""The shared sampling mechanism: time grid, loop, conditioning, caching, NFE counting, progress bar.

A sampler subclasses `Sampler` and implements only its stateless step

    step(output, x, t, s, generator) -> x_s

that moves x (B, L) from time t to the earlier time s (both (B,) diffusion times) given the model output at
(x, t). The base class starts from the prior (the chain's limit law: all masks for the absorbing chain),
walks the time grid 1 = t_0 > t_1 > ... > t_K = eps, re-imposes the given tokens after every step and, if
`denoise`, finishes with the analytic step from eps to 0 (SEDD's final denoising step).

The loop can be driven step by step: `iterate(model, batch_size, length, ...)` yields one `SamplingStep` per
step (the start first), and `generate` is a short loop over it (`keep_trajectory=True` keeps every state).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

import ctmc
from ctmc.checks import check_int
from samplers.analytic import analytic_jumps
from samplers.decoding import Decoding
from samplers.jumps import apply_jumps
from samplers.models import Denoiser, Model, ModelOutput, X0Predictor, as_model, evaluate


@dataclass
class SamplingResult:
    """tokens: (B, L) long; nfe: network evaluations per sequence, i.e. row-evaluations / B (cached rows not
    counted; an int-valued float without per-row caching); calls: forward passes of the network.

    With `generate(..., keep_trajectory=True)`: states (K + 1, B, L) long, the start x_1 and the state after each
    of the K steps (the last is `tokens`), and times (K + 1, B) float64, the time of each state (1, ..., eps, and
    0 after a final denoising step); None otherwise.
    """

    tokens: Tensor
    nfe: float
    calls: int = 0
    states: Tensor | None = None
    times: Tensor | None = None


@dataclass
class SamplingStep:
    """One item of `Sampler.iterate`: where the loop stands after `index` steps.

    index: 0 for the start (x drawn from the prior, given positions imposed; no network call), then 1, 2, ...;
    t, s: (B,) float64 diffusion times the step went from and to (t == s at the start and for a corrector step);
    x: (B, L) long, the state at time s (given positions re-imposed); nfe, calls: as `SamplingResult`, so far;
    denoising: True for the final denoising step from eps to s = 0 (the last item when the sampler's `denoise`).
    """

    index: int
    t: Tensor
    s: Tensor
    x: Tensor
    nfe: float
    calls: int
    denoising: bool = False


CACHE_MODES = ("row", "batch", "none")


class _Evaluator:
    """Calls the model at the positions a step needs, counts row-evaluations, and reuses a time-independent
    denoiser's output.

    `evaluator(x, t, where)`: where (B, L) bool asks only for those positions' rows (a packed output); None asks
    for every position (a request for no position still makes the call, so that NFE counts steps as before).
    cache: "row" evaluates only the rows (sequences) whose tokens changed since their last evaluation, or that
    ask for a position not kept from it, gathered into a smaller batch (RADD's per-sequence cache; the kept
    rows are merged out of place, so an earlier ModelOutput held by a multi-stage step keeps its values);
    "batch" reuses the output only when no row needs a new evaluation (MDLM); "none" always calls. A
    `ConcreteScore` depends on time and is never cached. Row-independent networks give the same outputs, hence
    the same samples, in every mode.
    """

    def __init__(self, model: Model, process: ctmc.ForwardProcess, cache: str) -> None:
        self.model = model
        self.process = process
        self.cache = cache if model.time_independent else "none"
        n = process.num_states
        self.expected: int | tuple[int, ...] = n - 1 if isinstance(model, Denoiser) else n
        if isinstance(model, X0Predictor):
            self.expected = (n, process.rate_matrix.num_clean_states)
        self.row_evaluations = 0
        self.calls = 0
        self._last: tuple[Tensor, Tensor, Tensor] | None = None  # (x (B, L), kept (B, L) bool, rows (N, m))

    def nfe(self, batch_size: int) -> float:
        """Row-evaluations / batch size: the number of whole-batch calls the same work would take."""
        return self.row_evaluations / batch_size

    def __call__(self, x: Tensor, t: Tensor, where: Tensor | None = None, keep: Tensor | None = None) -> ModelOutput:
        """The model at (x, t) at the positions `where` ((B, L) bool; None: all). keep: (B, L) bool positions
        also computed when a row is evaluated with a cache on, so that a later step asking for them at an
        unchanged row needs no call (ReMDM asks for its reveals and keeps the masks)."""
        total = self.process.total(t)
        if self.cache == "none":
            return self._evaluate(x, total, where)
        request = where if where is not None else torch.ones_like(x, dtype=torch.bool)
        wide = request if keep is None else request | keep
        if self._last is None:
            stale = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        else:
            last_x, kept, _ = self._last
            stale = (last_x != x).any(1) | (request & ~kept).any(1)  # (B,): rows the cache cannot answer
        if not bool(stale.any()):
            return self._answer(x, total, request)
        if self.cache == "batch" or self._last is None or bool(stale.all()):
            fresh = self._evaluate(x, total, wide)
            self._last = (x, wide, fresh.values)
        else:
            rows = stale.nonzero().squeeze(1)
            self._merge(x, stale, wide, self._evaluate(x[rows], total[rows], wide[rows]).values)
        return self._answer(x, total, request)

    def _merge(self, x: Tensor, stale: Tensor, request: Tensor, fresh: Tensor) -> None:
        """Keep the stored rows of the rows that are not stale and the fresh rows (at `request`, (B, L) bool) of
        the others."""
        _, kept, stored = self._last
        from_fresh = (stale[:, None] & request).flatten()
        from_stored = (~stale[:, None] & kept).flatten()
        now_kept = from_fresh | from_stored
        order = now_kept.cumsum(0) - 1  # position -> row of the merged tensor
        merged = fresh.new_empty(int(now_kept.sum()), fresh.shape[-1])
        merged[order[from_fresh]] = fresh
        stored_order = kept.flatten().cumsum(0) - 1
        merged[order[from_stored]] = stored.index_select(0, stored_order[from_stored])
        self._last = (x, now_kept.view(x.shape), merged)

    def _answer(self, x: Tensor, total: Tensor, request: Tensor) -> ModelOutput:
        """The stored rows at `request` (within the kept positions) as a packed output."""
        _, kept, stored = self._last
        if not torch.equal(kept, request):
            order = kept.flatten().cumsum(0) - 1
            stored = stored.index_select(0, order[request.flatten()])
        return ModelOutput(stored, self._scale(total, stored), total, request, self.model.log)

    def _scale(self, total: Tensor, values: Tensor) -> Tensor | None:
        return 1.0 / torch.expm1(total.to(values.dtype)) if isinstance(self.model, Denoiser) else None

    def _evaluate(self, x: Tensor, total: Tensor, where: Tensor | None) -> ModelOutput:
        with torch.no_grad():
            output = evaluate(self.model, x, total, self.expected, where, self.process.rate_matrix)
        self.row_evaluations += x.shape[0] * self.model.evaluations_per_row
        self.calls += 1
        return output


class Sampler:
    """Reverse-time sampler of a `ctmc.ForwardProcess` (time 1 = noise down to eps, then optional denoising).

    process: the forward process; steps: number of steps K (>= 1) on the linear grid from 1 to eps, unless
    `times` (a decreasing sequence from 1 to eps) is given, whose intervals are then the steps (`self.steps`
    counts them and `steps` is not read); eps: the last time of the linear grid, in (0, 1);
    denoise: finish with the analytic step from eps to 0 (one extra network call, SEDD);
    temperature, top_k, top_p, greedy: how the destination of a jump is drawn (`samplers.Decoding`);
    cache: for a time-independent denoiser, "row" (or True, the default) calls the network only on the rows
    whose tokens changed since their last evaluation, "batch" only when some token of the batch changed, "none"
    (or False) on every step; NFE is reported as row-evaluations / batch size (a model's `evaluations_per_row`
    rows per row it is asked for: 2 under classifier-free guidance);
    progress: show a tqdm progress bar over steps.
    """

    def __init__(
        self,
        process: ctmc.ForwardProcess,
        steps: int = 128,
        eps: float = 1e-5,
        *,
        times: Sequence[float] | Tensor | None = None,
        denoise: bool = True,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        greedy: bool = False,
        cache: bool | str = True,
        progress: bool = False,
    ) -> None:
        if not isinstance(process, ctmc.ForwardProcess):
            raise TypeError(f"process must be a ctmc.ForwardProcess, got {type(process).__name__}")
        if not (isinstance(eps, (int, float)) and 0.0 < eps < 1.0):
            raise ValueError(f"eps must be a float in (0, 1), got {eps!r}; it is the last time of the grid")
        self.process = process
        self.eps = float(eps)
        self.times = self._make_times(steps, self.eps, times)
        self.steps = steps if times is None else self.times.numel() - 1  # the number of grid intervals
        self.denoise = bool(denoise)
        self.decoding = Decoding(temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy)
        self.cache = self._cache_mode(cache)
        self.progress = bool(progress)

    @staticmethod
    def _cache_mode(cache: bool | str) -> str:
        if isinstance(cache, bool):
            return "row" if cache else "none"
        if cache not in CACHE_MODES:
            raise ValueError(f"cache must be a bool or one of {CACHE_MODES}, got {cache!r}")
        return cache

    @staticmethod
    def _make_times(steps: int | None, eps: float, times: Sequence[float] | Tensor | None) -> Tensor:
        if times is None:
            check_int("steps", steps, 1)
            return torch.linspace(1.0, eps, steps + 1, dtype=torch.float64)
        grid = torch.as_tensor(times, dtype=torch.float64).flatten()
        if grid.numel() < 2 or not bool((grid[1:] < grid[:-1]).all()) or grid[0] > 1 or grid[-1] <= 0:
            raise ValueError("times must be a strictly decreasing sequence of >= 2 times in (0, 1], e.g. 1 ... eps")
        return grid

    # ---- the one method each sampler implements -------------------------------------------------------
    def step(
        self, output: ModelOutput, x: Tensor, t: Tensor, s: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        """Move x (B, L) from time t to time s < t ((B,) each) given the model output at (x, t)."""
        raise NotImplementedError

    def advance(
        self,
        evaluate: Callable[[Tensor, Tensor, Tensor | None], ModelOutput],
        x: Tensor,
        t: Tensor,
        s: Tensor,
        query: Tensor,
        generator: torch.Generator | None,
        **options: object,
    ) -> Tensor:
        """One step of the loop: x (B, L) from t to s ((B,) each). `evaluate(x, time, where)` calls the (cached,
        counted) model; a single-stage sampler evaluates once at (x, query) and calls `step`, a multi-stage
        sampler overrides this to evaluate at intermediate points too. Only the positions `needed(x)` are asked
        for."""
        return self.step(evaluate(x, query, self.needed(x)), x, t, s, generator, **options)

    # ---- hooks ----------------------------------------------------------------------------------------
    def needed(self, x: Tensor) -> Tensor | None:
        """The positions of x (B, L) whose model output a step reads: (B, L) bool, or None for every position.

        On the absorbing chain only a mask has reverse rates (Q[y, x] = 0 for a clean x: a token never moves
        back), so only the masked positions are asked for; every other chain needs every position.
        """
        rate_matrix = self.process.rate_matrix
        if rate_matrix.score_factorises:  # the pure absorbing chain
            return x == rate_matrix.mask_index
        return None

    def check_model(self, model: Model) -> None:
        """Refuse model kinds this sampler cannot use (a denoiser needs a chain whose score factorises; a
        ConcreteScore and an X0Predictor work on every chain)."""
        if isinstance(model, Denoiser) and not self.process.rate_matrix.score_factorises:
            raise TypeError(
                "a samplers.Denoiser only defines a score for the absorbing chain (RADD); use a ConcreteScore "
                f"with {type(self.process.rate_matrix).__name__}"
            )

    def prior(self, batch_size: int, length: int, device: torch.device, generator: torch.Generator | None) -> Tensor:
        """x_1 (B, L): independent draws from the chain's limit law (all masks for the absorbing chain)."""
        return self.process.rate_matrix.sample_limit((batch_size, length), generator, device)

    def schedule(
        self, x: Tensor, free: Tensor, generator: torch.Generator | None
    ) -> Iterator[tuple[Tensor, Tensor, Tensor, dict]]:
        """Yield (t, s, query, options) per step: (B,) times from t to s, the model evaluated at `query`,
        and extra keyword arguments of `step` (empty for grid samplers)."""
        batch = x.shape[0]
        for t, s in zip(self.times[:-1], self.times[1:], strict=True):
            t_batch, s_batch = t.expand(batch).to(x.device), s.expand(batch).to(x.device)
            yield t_batch, s_batch, t_batch, {}

    def num_steps(self, x: Tensor, free: Tensor) -> int:
        """How many steps `schedule` yields (for the progress bar)."""
        return self.times.numel() - 1

    # ---- the shared loop -------------------------------------------------------------------------------
    def iterate(
        self,
        model: object,
        batch_size: int,
        length: int,
        *,
        generator: torch.Generator | None = None,
        prefix: Tensor | None = None,
        given: Tensor | None = None,
        tokens: Tensor | None = None,
        device: torch.device | str | None = None,
    ) -> Iterator[SamplingStep]:
        """The sampling loop, one `SamplingStep` at a time: the start (index 0, x drawn from the prior), every
        step of `schedule`, then the final denoising step if `denoise` (marked `denoising`). Arguments as
        `generate`; they are checked here, before the first step. The last item's x is `generate`'s tokens for
        the same generator: `generate` is this loop.

        The steps are computed as the iterator is advanced; a caller may stop early, or read each state as it
        comes (e.g. to plot a trajectory).
        """
        model = as_model(model)
        self.check_model(model)
        check_int("batch_size", batch_size, 1)
        check_int("length", length, 1)
        if device is None:
            device = generator.device if generator is not None else torch.device("cpu")
        device = torch.device(device)
        fixed, values = self._conditioning(batch_size, length, prefix, given, tokens, device)
        return self._loop(model, batch_size, fixed, values, generator, device)

    def _loop(
        self,
        model: Model,
        batch_size: int,
        fixed: Tensor,
        values: Tensor,
        generator: torch.Generator | None,
        device: torch.device,
    ) -> Iterator[SamplingStep]:
        """The body of `iterate`, after its checks: a generator of the steps."""
        x = torch.where(fixed, values, self.prior(batch_size, fixed.shape[1], device, generator))
        evaluator = _Evaluator(model, self.process, self.cache)
        start = self.times[0].expand(batch_size).to(device)
        yield SamplingStep(0, start, start, x, 0.0, 0)
        steps = self.schedule(x, ~fixed, generator)
        if self.progress:
            from tqdm.auto import tqdm

            steps = tqdm(steps, total=self.num_steps(x, ~fixed), desc=type(self).__name__)
        index = 0
        for t, s, query, options in steps:
            x = torch.where(fixed, values, self.advance(evaluator, x, t, s, query, generator, **options))
            index += 1
            yield SamplingStep(index, t, s, x, evaluator.nfe(batch_size), evaluator.calls)
        if self.denoise:
            t = self.times[-1].expand(batch_size).to(device)
            output = evaluator(x, t, self.needed(x))
            x = torch.where(fixed, values, self.denoising_step(output, x, t, generator))
            yield SamplingStep(index + 1, t, torch.zeros_like(t), x, evaluator.nfe(batch_size), evaluator.calls, True)

    def generate(
        self,
        model: object,
        batch_size: int,
        length: int,
        *,
        generator: torch.Generator | None = None,
        prefix: Tensor | None = None,
        given: Tensor | None = None,
        tokens: Tensor | None = None,
        device: torch.device | str | None = None,
        keep_trajectory: bool = False,
    ) -> SamplingResult:
        """Draw (B, L) token ids from the model's reverse process and count the network calls.

        model: `samplers.ConcreteScore`, `samplers.Denoiser`, `samplers.X0Predictor` or a bare callable
        score(x, total).
        prefix: (P,) or (B, P) long tokens fixed at positions 0 .. P-1 (a prompt).
        given: (B, L) bool mask of fixed positions (infilling), with their tokens taken from `tokens`
        ((B, L) long; other entries ignored). Fixed positions never change; the others follow the model.
        device: where to sample; defaults to the generator's device, else CPU.
        keep_trajectory: also return every state and its time (`SamplingResult.states`, `.times`).
        """
        steps = self.iterate(
            model, batch_size, length, generator=generator, prefix=prefix, given=given, tokens=tokens, device=device
        )
        states, times = [], []
        for step in steps:
            if keep_trajectory:
                states.append(step.x)
                times.append(step.s)
        result = SamplingResult(step.x, step.nfe, step.calls)
        if keep_trajectory:
            result.states, result.times = torch.stack(states), torch.stack(times)
        return result

    def sample(
        self,
        model: object,
        batch_size: int,
        length: int,
        *,
        generator: torch.Generator | None = None,
        prefix: Tensor | None = None,
        given: Tensor | None = None,
        tokens: Tensor | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """`generate(...)`'s tokens: (B, L) long."""
        return self.generate(
            model, batch_size, length, generator=generator, prefix=prefix, given=given, tokens=tokens, device=device
        ).tokens

    def denoising_step(
        self, output: ModelOutput, x: Tensor, t: Tensor, generator: torch.Generator | None
    ) -> Tensor:
        """The analytic step from t = eps to 0 (SEDD's final denoising; every mask is resolved)."""
        total_t = output.total
        probability, jumps = analytic_jumps(self.process.rate_matrix, output, x, total_t, torch.zeros_like(total_t))
        return apply_jumps(x, probability, jumps, self.decoding, generator)

    def _conditioning(
        self,
        batch_size: int,
        length: int,
        prefix: Tensor | None,
        given: Tensor | None,
        tokens: Tensor | None,
        device: torch.device,
    ) -> tuple[Tensor, Tensor]:
        """(fixed (B, L) bool, values (B, L) long) from a prefix and/or an infilling mask."""
        clean = self.process.rate_matrix.num_clean_states
        fixed = torch.zeros(batch_size, length, dtype=torch.bool, device=device)
        values = torch.zeros(batch_size, length, dtype=torch.long, device=device)
        if given is not None:
            if not isinstance(given, Tensor) or given.dtype != torch.bool or given.shape != (batch_size, length):
                raise ValueError(f"given must be a bool tensor of shape {(batch_size, length)} (batch_size, length)")
            if not isinstance(tokens, Tensor) or tokens.shape != (batch_size, length) or tokens.is_floating_point():
                raise ValueError(
                    f"tokens must be a long tensor of shape {(batch_size, length)} holding the given positions' "
                    "tokens when given is passed"
                )
            given, tokens = given.to(device), tokens.to(device).long()
            bad = given & ((tokens < 0) | (tokens >= clean))
            if bool(bad.any()):
                raise ValueError(f"tokens at given positions must be clean token ids in [0, {clean})")
            fixed, values = given.clone(), torch.where(given, tokens, 0)
        elif tokens is not None:
            raise ValueError("tokens is only used with given (the mask of fixed positions); pass both")
        if prefix is not None:
            prefix = check_prefix(prefix, batch_size, length, clean, device)
            width = prefix.shape[1]
            fixed[:, :width] = True
            values[:, :width] = prefix
        return fixed, values

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.process!r}, steps={self.steps}, eps={self.eps})"


def check_prefix(prefix: Tensor | None, batch_size: int, length: int, clean: int, device: torch.device) -> Tensor:
    """A prompt as (B, P) long on `device` (P = 0 for None), checked: a (P,) or (batch_size, P) integer tensor of
    clean ids in [0, clean), P <= length. Raises ValueError naming `prefix` otherwise."""
    if prefix is None:
        return torch.zeros(batch_size, 0, dtype=torch.long, device=device)
    if not isinstance(prefix, Tensor) or prefix.is_floating_point() or prefix.dim() not in (1, 2):
        raise ValueError("prefix must be a long tensor of shape (P,) or (batch_size, P)")
    prefix = prefix.to(device).long()
    if prefix.dim() == 1:
        prefix = prefix.expand(batch_size, -1)
    if prefix.shape[0] != batch_size:
        raise ValueError(f"prefix has {prefix.shape[0]} rows, expected batch_size = {batch_size}")
    if prefix.shape[1] > length:
        raise ValueError(f"prefix of length {prefix.shape[1]} does not fit in length {length}; shorten it")
    if prefix.numel() and bool(((prefix < 0) | (prefix >= clean)).any()):
        raise ValueError(f"prefix must hold clean token ids in [0, {clean})")
    return prefix
