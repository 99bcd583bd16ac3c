"""Training: data, degradations, losses, discriminator, the loop, network interpolation.

Entry points for the CLI: ``run_training`` (``vidsr train``) and
``interpolate_checkpoints``; ``release_run`` turns a run into shipped weights
and a model card.
"""

from vidsr.models.interpolate import interpolate_checkpoints, interpolate_state_dicts
from vidsr.train.config import TrainConfig, load_config
from vidsr.train.loop import TrainResult, run_training
from vidsr.train.release import Release, release_run

__all__ = [
    "Release",
    "TrainConfig",
    "TrainResult",
    "interpolate_checkpoints",
    "interpolate_state_dicts",
    "load_config",
    "release_run",
    "run_training",
]
