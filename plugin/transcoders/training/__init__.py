"""Training room: every architecture through sparsify's Trainer on one token stream."""

from .config import TrainingConfig
from .train import HookpointError, RunDirError, train

__all__ = ["HookpointError", "RunDirError", "TrainingConfig", "train"]
