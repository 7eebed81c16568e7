"""Guided sampling as model wrappers: every sampler works on a guided model unchanged (docs/samplers.md, Guidance).

Nisonoff et al. (2024) guide the reverse RATES of a CTMC towards a class c. With R(x -> y) = sigma(t) Q[y, x]
s(x)_y (per position, `samplers.jumps`), the forward factor sigma(t) Q[y, x] is shared by every model and cancels
from both forms below, so each is a transform of the concrete score s:

- classifier-free (predictor-free) guidance with strength gamma:

      R^gamma(x -> y | c) = R(x -> y | c)^gamma R(x -> y)^(1 - gamma)
      <=>  log s^gamma(x)_y = gamma log s(x | c)_y + (1 - gamma) log s(x)_y;

  gamma = 1 is the conditional model, 0 the unconditional one, > 1 sharper. The conditional and the
  unconditional (null label) evaluations are ONE batched network call of 2B rows.

- predictor guidance with a classifier p(c | x_t, sigma-bar) of noisy sequences:

      R(x -> y | c) = R(x -> y) (p(c | y, t) / p(c | x, t))^gamma
      <=>  log s(x | c)_{i, y} = log s(x)_{i, y} + gamma (log p(c | x with x_i = y) - log p(c | x));

  exact for gamma = 1 and an exact classifier (Bayes' rule). The log-ratio is computed over every Hamming-1
  neighbour (exact) or to first order through the gradient of log p(c | .) in the one-hot input (the Taylor
  approximation of Nisonoff et al. 2024, after Vignac et al. 2023; Schiff et al. 2024 use it for large
  vocabularies):

      log p(c | x with x_i = y) - log p(c | x) ~ g[i, y] - g[i, x_i],   g = d log p(c | onehot(x)) / d onehot(x).

A time-independent denoiser p(x_0 | x_t) of the absorbing chain (`samplers.Denoiser`) is guided in its
normalised form (Schiff et al. 2024's D-CFG): p^gamma(y) proportional to p(y | c)^gamma p(y)^(1 - gamma) over the
clean tokens, so that the guided model is still a probability vector and a masked position unmasks at the
forward process's own rate. Nisonoff's unnormalised rates would multiply that rate by sum_y p(y | c)^gamma
p(y)^(1 - gamma) (< 1 for 0 < gamma < 1 by Hoelder's inequality), which the first-hitting and ReMDM samplers
cannot represent (they draw when to unmask from the schedule alone). Both forms agree at gamma = 0 and 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ctmc.noise_ratio import log_mask_ratio
from samplers.models import ConcreteScore, Denoiser, Model, as_model

# Predictor guidance computes the log-ratio exactly when a sequence has at most this many Hamming-1 neighbours
# (length x states: classifier rows per row asked), to first order otherwise.
EXACT_NEIGHBOURS = 1024
PREDICTOR_METHODS = ("auto", "exact", "first-order")


def guided_log_values(conditional: Tensor, unconditional: Tensor, gamma: float) -> Tensor:
    """gamma log a + (1 - gamma) log b, elementwise, from log a = conditional and log b = unconditional (same
    shape). A term with coefficient 0 is left out (gamma = 1 returns log a exactly, gamma = 0 log b); an entry where
    a term with a non-zero coefficient is -inf (a zero rate) is -inf: a move either model rules out stays ruled out.
    """
    terms = [(gamma, conditional), (1.0 - gamma, unconditional)]
    kept = [(weight, value) for weight, value in terms if weight != 0.0]
    out = sum(weight * value for weight, value in kept)
    impossible = torch.zeros_like(conditional, dtype=torch.bool)
    for _, value in kept:
        impossible |= torch.isneginf(value)
    return out.masked_fill(impossible, -math.inf)


def _check_gamma(gamma: float) -> float:
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not math.isfinite(gamma) or gamma < 0:
        raise ValueError(
            f"gamma must be a finite number >= 0 (1: the conditional model, 0: the unconditional one, > 1: sharper), "
            f"got {gamma!r}"
        )
    return float(gamma)


def _check_label(label: int, name: str = "label") -> int:
    if isinstance(label, bool) or not isinstance(label, int) or label < 0:
        raise ValueError(f"{name} must be an int >= 0, the class to sample, got {label!r}")
    return label


def _call(model: Model, x: Tensor, total: Tensor | None, where: Tensor | None, **keywords: Tensor) -> Tensor:
    """The model's raw output at `where` ((N, m) packed rows; (B, L, m) when where is None), asking the network for
    the packed rows when it supports them; keywords (e.g. label=) are passed to the network."""
    arguments = (x,) if isinstance(model, Denoiser) else (x, total)
    if where is None:
        return model.fn(*arguments, **keywords)
    if model.positions:
        return model.fn(*arguments, where=where, **keywords)
    return model.fn(*arguments, **keywords)[where]


def _log(values: Tensor, log: bool) -> Tensor:
    return values if log else torch.log(values)


class ClassifierFree:
    """The guided callable of `classifier_free_guidance`: (x (B, L), total (B,) or None, where) -> guided
    log-values, (B, L, m) or the packed (where.sum(), m) rows, from ONE call of the conditional network on
    2B rows: x twice, labelled `label` and `null_label`."""

    def __init__(self, model: Model, label: int, null_label: int, gamma: float) -> None:
        self.model, self.label, self.null_label, self.gamma = model, label, null_label, gamma

    def __call__(self, x: Tensor, total: Tensor | None = None, where: Tensor | None = None) -> Tensor:
        batch = x.shape[0]
        labels = torch.full((2 * batch,), self.label, dtype=torch.long, device=x.device)
        labels[batch:] = self.null_label
        doubled_total = None if total is None else torch.cat([total, total])
        doubled_where = None if where is None else torch.cat([where, where])
        raw = _call(self.model, torch.cat([x, x]), doubled_total, doubled_where, label=labels)
        half = raw.shape[0] // 2  # B sequences, or N packed rows (the first N belong to the first B sequences)
        log_values = _log(raw, self.model.log)
        guided = guided_log_values(log_values[:half], log_values[half:], self.gamma)
        if isinstance(self.model, Denoiser):
            guided = torch.log_softmax(guided, dim=-1)  # D-CFG: a probability vector over the clean tokens
        return guided

    def __repr__(self) -> str:
        return f"ClassifierFree({self.model!r}, label={self.label}, null_label={self.null_label}, gamma={self.gamma})"


def classifier_free_guidance(model: object, label: int, null_label: int, gamma: float) -> Model:
    """The model guided towards class `label` with classifier-free guidance of strength gamma (module docstring).

    model: a `ConcreteScore` or `Denoiser` (or a bare score callable) whose network takes a keyword
    `label=` (2B,) long, e.g. `models.DiT` / `models.RADDDenoiser` built with num_classes > 0; label: the class to
    sample, in [0, null_label); null_label: the network's null label (its num_classes); gamma >= 0.
    Returns a model of the same kind (log-values, packed outputs supported) whose one call evaluates the network
    on 2B rows, so it counts 2 row-evaluations per row in NFE (`calls` counts it once). A score is guided in the
    rate form gamma log s(. | c) + (1 - gamma) log s; a denoiser in the normalised form (module docstring).
    """
    model = as_model(model)
    if isinstance(null_label, bool) or not isinstance(null_label, int) or null_label < 1:
        raise ValueError(f"null_label must be an int >= 1, the network's num_classes, got {null_label!r}")
    if _check_label(label) >= null_label:
        raise ValueError(f"label must be a class in [0, {null_label}) (null_label={null_label}), got {label}")
    call = ClassifierFree(model, label, null_label, _check_gamma(gamma))
    return type(model)(call, log=True, positions=True, evaluations_per_row=2 * model.evaluations_per_row)


class PredictorGuided:
    """The guided callable of `predictor_guidance`: (x (B, L), total (B,), where) -> log concrete scores,
    (B, L, n) or the packed (where.sum(), n) rows. `classifier_rows` counts the sequences the classifier read."""

    def __init__(
        self,
        model: Model,
        classifier: Callable[[Tensor, Tensor], Tensor],
        label: int,
        gamma: float,
        method: str,
        chunk_size: int,
    ) -> None:
        self.model, self.classifier, self.label, self.gamma = model, classifier, label, gamma
        self.method, self.chunk_size = method, chunk_size
        self.classifier_rows = 0

    def __call__(self, x: Tensor, total: Tensor, where: Tensor | None = None) -> Tensor:
        positions = where if where is not None else torch.ones_like(x, dtype=torch.bool)
        guided = self.log_score(x, total, positions)  # (N, n)
        if self.gamma != 0.0:
            ratio = self.log_ratio(x, total, positions, guided.shape[-1])  # (N, n)
            guided = guided + self.gamma * ratio.to(guided.dtype)
        return guided if where is not None else guided.view(*x.shape, -1)

    def log_score(self, x: Tensor, total: Tensor, positions: Tensor) -> Tensor:
        """(N, n) log concrete scores of the unguided model at the positions (B, L) bool. A denoiser's rows become
        the absorbing chain's scores (RADD): log p(y | x_t) + log(e^{-sigma-bar} / (1 - e^{-sigma-bar})) and 0 at the
        mask for a masked position; 0 at its token and -inf elsewhere for a clean one (no reverse rate)."""
        raw = _log(_call(self.model, x, total, positions), self.model.log)
        if not isinstance(self.model, Denoiser):
            return raw
        vocab = raw.shape[-1]
        batch_index = positions.nonzero()[:, 0]
        tokens = x[positions]
        masked = (tokens == vocab)[:, None]
        clean = raw + log_mask_ratio(total.to(raw.dtype))[batch_index, None]
        score = torch.cat([clean, torch.zeros_like(clean[:, :1])], dim=-1)  # (N, V + 1), mask column 0
        own = F.one_hot(tokens, vocab + 1).bool()
        fixed = torch.full_like(score, -math.inf).masked_fill(own, 0.0)
        return torch.where(masked, score, fixed)

    def _method(self, length: int, num_states: int) -> str:
        if self.method != "auto":
            return self.method
        return "exact" if length * num_states <= EXACT_NEIGHBOURS else "first-order"

    def _classify(self, x: Tensor, total: Tensor) -> Tensor:
        """log p(label | x, total) (M,) for x (M, L) long (or (M, L, n) float), checking the classifier's output."""
        out = self.classifier(x, total)
        if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != x.shape[0]:
            raise ValueError(
                f"the classifier must return (batch, num_classes) log-probabilities, got "
                f"{tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__}"
            )
        if self.label >= out.shape[1]:
            raise ValueError(f"label must be a class in [0, {out.shape[1]}) of the classifier, got {self.label}")
        self.classifier_rows += x.shape[0]
        return out[:, self.label]

    def log_ratio(self, x: Tensor, total: Tensor, positions: Tensor, num_states: int) -> Tensor:
        """(N, n): log p(c | x with x_i = y) - log p(c | x) at the N positions (B, L) bool, for every state y (0 at
        y = x_i), exactly or to first order (`_method`). float64 for the exact form, the gradient's dtype else."""
        batch_index, position = positions.nonzero().unbind(1)
        tokens = x[positions]
        if self._method(x.shape[1], num_states) == "first-order":
            onehot = F.one_hot(x, num_states).to(total.dtype if total.is_floating_point() else torch.float32)
            with torch.enable_grad():
                onehot.requires_grad_(True)
                (gradient,) = torch.autograd.grad(self._classify(onehot, total).sum(), onehot)
            rows = gradient[positions]  # (N, n)
            return (rows - rows.gather(-1, tokens[:, None])).detach()
        center = self._classify(x, total).double()  # (B,)
        neighbours = x[batch_index][:, None, :].repeat(1, num_states, 1)  # (N, n, L)
        states = torch.arange(num_states, device=x.device)
        rows = torch.arange(neighbours.shape[0], device=x.device)
        neighbours[rows[:, None], states[None, :], position[:, None]] = states  # neighbour (r, y): x_i = y
        neighbours = neighbours.view(-1, x.shape[1])
        times = total[batch_index].repeat_interleave(num_states)
        values = torch.zeros(neighbours.shape[0], dtype=torch.float64, device=x.device)
        for start in range(0, neighbours.shape[0], self.chunk_size):
            part = slice(start, start + self.chunk_size)
            values[part] = self._classify(neighbours[part], times[part]).double()
        ratio = values.view(-1, num_states) - center[batch_index, None]
        return ratio.scatter(-1, tokens[:, None], 0.0)

    def __repr__(self) -> str:
        return (
            f"PredictorGuided({self.model!r}, {self.classifier!r}, label={self.label}, gamma={self.gamma}, "
            f"method={self.method!r})"
        )


def predictor_guidance(
    model: object,
    classifier: Callable[[Tensor, Tensor], Tensor],
    label: int,
    gamma: float = 1.0,
    method: str = "auto",
    chunk_size: int = 4096,
) -> ConcreteScore:
    """The unconditional model guided towards class `label` by a classifier of noisy sequences (module docstring).

    model: a `ConcreteScore` or a `Denoiser` (absorbing chain; turned into the chain's concrete score);
    classifier: (x_t (M, L) long, or (M, L, n) float one-hot for the first-order form; total (M,) sigma-bar) ->
    (M, C) log p(c | x_t), e.g. `models.NoisyClassifier`; label in [0, C); gamma >= 0 (1: the conditional law for an
    exact classifier); method: "exact" (every Hamming-1 neighbour: n classifier rows per position asked, in batches
    of chunk_size sequences), "first-order" (one classifier forward and backward of the B rows), or "auto": exact
    when length x states <= EXACT_NEIGHBOURS (1024), first-order otherwise.
    Returns a time-dependent `ConcreteScore` (log-values, packed outputs supported); NFE counts the network's rows
    only, and `returned.fn.classifier_rows` the classifier's.
    """
    model = as_model(model)
    if not callable(classifier):
        raise TypeError(f"classifier must be callable (x_t, total) -> (B, C) log-probabilities, got {classifier!r}")
    if method not in PREDICTOR_METHODS:
        raise ValueError(f"method must be one of {PREDICTOR_METHODS}, got {method!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an int >= 1 (classifier rows per call), got {chunk_size!r}")
    call = PredictorGuided(model, classifier, _check_label(label), _check_gamma(gamma), method, chunk_size)
    return ConcreteScore(call, log=True, positions=True, evaluations_per_row=model.evaluations_per_row)
