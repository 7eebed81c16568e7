"""Independent references for the loss tests: dense matrices from scipy, enumeration of tiny sequence spaces.

Nothing here imports the `losses` package (expected_loss calls the loss object it is given). Everything is
float64 (numpy, or torch where a loss is called).
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from scipy.integrate import quad_vec, solve_ivp
from scipy.linalg import expm


def all_sequences(num_states: int, length: int) -> np.ndarray:
    """(num_states ** length, length) int array of every sequence, in lexicographic order."""
    return np.array(list(itertools.product(range(num_states), repeat=length)), dtype=np.int64)


def sequence_index(seqs: np.ndarray, num_states: int) -> np.ndarray:
    """Lexicographic index of each row of seqs (the inverse of all_sequences)."""
    length = seqs.shape[-1]
    powers = num_states ** np.arange(length - 1, -1, -1)
    return seqs @ powers


def toy_data(num_clean: int, length: int, seed: int) -> np.ndarray:
    """A full-support random distribution over the num_clean ** length clean sequences."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(num_clean**length, 2.0))
    return p


def token_transition(matrix: np.ndarray, total: float) -> np.ndarray:
    """P = expm(total * Q), from scipy."""
    return expm(total * matrix)


def fast_token_transition(matrix: np.ndarray, total: float) -> np.ndarray:
    """expm(total * Q) by numpy's eigendecomposition (Q diagonalisable), for integrands evaluated many times."""
    values, vectors = np.linalg.eig(matrix)
    return np.real(vectors @ np.diag(np.exp(total * values)) @ np.linalg.inv(vectors))


def sequence_transition(matrix: np.ndarray, total: float, length: int, clean: int) -> np.ndarray:
    """(clean ** length, n ** length): P(x_t = x | x0) for clean x0 and every noisy sequence x."""
    n = matrix.shape[0]
    P = fast_token_transition(matrix, total)
    x0s = all_sequences(clean, length)
    xs = all_sequences(n, length)
    out = np.ones((len(x0s), len(xs)))
    for i in range(length):
        out *= P[x0s[:, i]][:, xs[:, i]]
    return out


def exact_scores(p_t: np.ndarray, n: int, length: int) -> np.ndarray:
    """(N, L, n): s[x, i, y] = p_t(x with x_i = y) / p_t(x) over all n ** L sequences x (p_t > 0 assumed)."""
    xs = all_sequences(n, length)
    out = np.empty((len(xs), length, n))
    for i in range(length):
        for y in range(n):
            neighbour = xs.copy()
            neighbour[:, i] = y
            out[:, i, y] = p_t[sequence_index(neighbour, n)] / p_t
    return out


def denoising_score_entropy(matrix, total, sigma, log_score, x0, x_t):
    """Direct formula, per sequence: sum_i sum_{y != x_t^i} sigma Q[y, x_t^i] (s - r log s + r log r - r).

    log_score: (B, L, n); x0, x_t: (B, L) ints; total, sigma: (B,). r from scipy's expm.
    """
    out = np.zeros(len(x0))
    for b in range(len(x0)):
        P = token_transition(matrix, total[b])
        for i in range(x0.shape[1]):
            a, x = x0[b, i], x_t[b, i]
            for y in range(matrix.shape[0]):
                if y == x or matrix[y, x] == 0:
                    continue
                r = P[a, y] / P[a, x]
                s = np.exp(log_score[b, i, y])
                k = r * np.log(r) - r if r > 0 else 0.0
                rls = r * log_score[b, i, y] if r > 0 else 0.0
                out[b] += sigma[b] * matrix[y, x] * (s - rls + k)
    return out


def pairs(clean, n, length):
    """Every (clean x0, noisy x) pair: x0s, xs and the flat index arrays a (into x0s), b (into xs)."""
    x0s, xs = all_sequences(clean, length), all_sequences(n, length)
    a, b = np.meshgrid(np.arange(len(x0s)), np.arange(len(xs)), indexing="ij")
    return x0s, xs, a.ravel(), b.ravel()


def expected_loss(loss, process, output_at, clean, length):
    """(N0,): int_0^1 E_{x_t | x0} loss(output_at(x_t, t), x0, x_t, t) dt for every clean x0."""
    n = process.num_states
    x0s, xs, a, b = pairs(clean, n, length)
    matrix = process.rate_matrix.matrix().numpy()
    x0, x_t = torch.as_tensor(x0s[a]), torch.as_tensor(xs[b])

    def integrand(time):
        t = torch.full((len(a),), time, dtype=torch.float64)
        total = float(process.total(t[:1]))
        q = sequence_transition(matrix, total, length, clean)[a, b]
        keep = q > 0
        values = np.zeros(len(a))
        values[keep] = loss(output_at(x_t[keep], t[keep]), x0[keep], x_t[keep], t[keep]).numpy()
        return (q * values).reshape(len(x0s), len(xs)).sum(1)

    value, _ = quad_vec(integrand, 1e-12, 1.0, epsabs=1e-9, epsrel=1e-9, limit=400)
    return value


def kl_rows(q, prior):
    """KL(q_r || prior) for every row r of q, with 0 log 0 = 0."""
    q = np.asarray(q)
    return np.where(q > 0, q * (np.log(np.where(q > 0, q, 1)) - np.log(prior)), 0).sum(-1)


def true_denoiser(p0, vocab, length):
    """((vocab + 1) ** L, L, vocab): p0(x0^i = y | unmasked part of x) for every partly masked x (p0 > 0)."""
    x0s, xs = all_sequences(vocab, length), all_sequences(vocab + 1, length)
    out = np.full((len(xs), length, vocab), 1.0 / vocab)
    for k, x in enumerate(xs):
        post = p0 * np.all((x0s == x) | (x == vocab), axis=1)
        for i in range(length):
            out[k, i] = np.bincount(x0s[:, i], weights=post, minlength=vocab) / post.sum()
    return out


def radd_reverse_marginal(table, vocab, length, prior):
    """(vocab ** L,): the law at t = 0 of the reverse absorbing chain driven by a denoiser table, started from
    `prior` ((vocab + 1) ** L,). In the clock log(lambda) a masked position i of x becomes y at rate
    table[x, i, y], a time-free generator, so the law is prior @ expm(200 G) (log lambda runs to -inf)."""
    n = vocab + 1
    xs = all_sequences(n, length)
    generator = np.zeros((len(xs), len(xs)))
    for k, x in enumerate(xs):
        for i in np.nonzero(x == vocab)[0]:
            for y in range(vocab):
                target = x.copy()
                target[i] = y
                generator[k, sequence_index(target, n)] += table[k, i, y]
    np.fill_diagonal(generator, -generator.sum(1))
    final = prior @ expm(200.0 * generator)
    return final[sequence_index(all_sequences(vocab, length), n)]


def noisy_exact_scores(p0, matrix, total, length, clean, noise):
    """(n ** L, L, n): the exact concrete scores of p_t = p0 P(total)^L, times exp(noise) (noise = 0: exact)."""
    p_t = p0 @ sequence_transition(matrix, total, length, clean)
    return exact_scores(p_t, matrix.shape[0], length) * np.exp(noise)


def score_reverse_marginal(score_at, matrix, top, length, prior):
    """(n ** L,): the law at total noise 0 of the reverse chain with rates Q[y, x] s(x, total)_{i, y}, started
    from `prior` at total = top; score_at(total) -> (n ** L, L, n). Solved with scipy's DOP853 in the clock
    top - total (for chains whose scores stay moderate as total -> 0, such as the uniform chain)."""
    n = matrix.shape[0]
    xs = all_sequences(n, length)

    def reverse_rhs(clock, p):
        scores = score_at(top - clock)
        flow = np.zeros_like(p)
        for i in range(length):
            for y in range(n):
                target = xs.copy()
                target[:, i] = y
                moving = (xs[:, i] != y) * scores[:, i, y] * matrix[y, xs[:, i]] * p
                np.add.at(flow, sequence_index(target, n), moving)
                flow -= moving
        return flow

    solution = solve_ivp(reverse_rhs, (0.0, top - 1e-9), prior, method="DOP853", rtol=1e-11, atol=1e-13)
    return solution.y[:, -1]
