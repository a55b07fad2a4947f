"""Offline training pipeline: data, GLiP loss and baselines, cross-validated training, evaluation, export, sweeps."""

from .config import TrainConfig
from .train import export_model, train

__all__ = ["TrainConfig", "export_model", "train"]
