"""Robot data: LeRobot v3.0 datasets, composite images, normalisation, processors, training samples."""

from .composite import composite
from .lerobot import LeRobotDataset, LeRobotDatasetWriter
from .normalize import Normalizer
from .processor import RobotProcessor
from .training import DataConfig, PolicyDataset

__all__ = ["DataConfig", "LeRobotDataset", "LeRobotDatasetWriter", "Normalizer", "PolicyDataset", "RobotProcessor",
           "composite"]
