"""The enumeration reference of the sampler tests lives in the library (`ctmc.enumeration`) so benchmarks share it."""

from ctmc.enumeration import ToyChain, total_variation, tv_noise_bound

__all__ = ["ToyChain", "total_variation", "tv_noise_bound"]
