"""Splice evaluation: FVU, CE/KL with the coder in place of the module, latent stats."""

from .evaluate import EvalConfig, evaluate, evaluate_coders
from .splice import splice

__all__ = ["EvalConfig", "evaluate", "evaluate_coders", "splice"]
