"""Library helpers of the training script (training/run_vq.py): recipes, checkpoints, Polyak averaging,
deterministic data order, the non-finite guard, tracking and plots, and the per-task glue."""

from .checkpoints import CheckpointError, list_checkpoints, resolve_checkpoint
from .config import ConfigError, load_recipe, parse_override, validate_recipe
from .guard import NonFiniteLossError
from .polyak import AverageState, averaged_model, polyak_average

__all__ = [
    "CheckpointError",
    "ConfigError",
    "NonFiniteLossError",
    "AverageState",
    "averaged_model",
    "list_checkpoints",
    "load_recipe",
    "parse_override",
    "polyak_average",
    "resolve_checkpoint",
    "validate_recipe",
]
