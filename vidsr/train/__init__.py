"""Training: data, degradations, losses, discriminator, the loop, network interpolation.

Entry points for the CLI: ``run_training`` (``vidsr train``) and
``interpolate_checkpoints``.
"""

from vidsr.train.config import TrainConfig, load_config
from vidsr.train.interpolate import interpolate_checkpoints, interpolate_state_dicts
from vidsr.train.loop import TrainResult, run_training

__all__ = [
    "TrainConfig",
    "TrainResult",
    "interpolate_checkpoints",
    "interpolate_state_dicts",
    "load_config",
    "run_training",
]
