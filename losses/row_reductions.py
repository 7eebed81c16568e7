"""The lean per-position reductions now live in `ctmc.row_reductions` (the chains' loss terms use them)."""

from ctmc.row_reductions import (
    Bregman,
    LogMixture,
    LogSumExp,
    bregman_statistics,
    log_mixture_statistics,
    logsumexp_statistics,
)

__all__ = [
    "Bregman",
    "LogMixture",
    "LogSumExp",
    "bregman_statistics",
    "log_mixture_statistics",
    "logsumexp_statistics",
]
