import sys
from pathlib import Path

import pytest
import torch

from gigaworld_policy import GigaWorldPolicy, PolicyConfig

sys.path.insert(0, str(Path(__file__).parent))  # shared test helpers (helpers.py)

# Small models on 2 cores run far slower with more than one thread (contention).
torch.set_num_threads(1)


@pytest.fixture
def tiny_policy() -> GigaWorldPolicy:
    torch.manual_seed(0)
    return GigaWorldPolicy(PolicyConfig.preset("tiny")).eval()
