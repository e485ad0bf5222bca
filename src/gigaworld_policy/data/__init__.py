"""Robot data: LeRobot v3.0 datasets, composite images, normalisation, training samples."""

from .composite import composite
from .lerobot import LeRobotDataset, LeRobotDatasetWriter
from .normalize import Normalizer
from .training import DataConfig, PolicyDataset

__all__ = ["DataConfig", "LeRobotDataset", "LeRobotDatasetWriter", "Normalizer", "PolicyDataset", "composite"]
