"""Independent references for the loss tests: dense matrices from scipy, enumeration of tiny sequence spaces.

Nothing here calls the `losses` package. Everything is float64 numpy.
"""

from __future__ import annotations

import itertools

import numpy as np
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
