"""Training room: every architecture through sparsify's Trainer on one token stream."""

from .config import TrainingConfig
from ..hookpoints import HookpointError
from .train import RunDirError, train

__all__ = ["HookpointError", "RunDirError", "TrainingConfig", "train"]
