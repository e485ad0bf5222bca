"""Robot data: LeRobot v3.0 datasets, composite images (`data.composite`), normalisation, processors, training
samples.

The names below are imported on first use (PEP 562), so that the model, which needs only `data.processor`, loads
without the dataset readers' PyAV and pandas (e.g. on a GPU machine that runs `benchmarks/gpu_check.py` alone).
"""

from importlib import import_module

_MODULE_OF = {"LeRobotDataset": "lerobot", "LeRobotDatasetWriter": "lerobot",
              "Normalizer": "normalize", "RobotProcessor": "processor", "DataConfig": "training",
              "PolicyDataset": "training"}

__all__ = ["DataConfig", "LeRobotDataset", "LeRobotDatasetWriter", "Normalizer", "PolicyDataset", "RobotProcessor"]


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_MODULE_OF[name]}", __name__), name)
