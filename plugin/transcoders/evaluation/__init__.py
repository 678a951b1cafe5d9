"""Splice evaluation: FVU, CE/KL with the coder in place of the module, latent stats."""

from .bootstrap import paired_difference
from .evaluate import EvalConfig, evaluate, evaluate_coders
from .splice import splice

__all__ = ["EvalConfig", "evaluate", "evaluate_coders", "paired_difference", "splice"]
