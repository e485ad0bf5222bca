import pytest
import torch

from gigaworld_policy import GigaWorldPolicy, PolicyConfig

# Small models on 2 cores run far slower with more than one thread (contention).
torch.set_num_threads(1)


@pytest.fixture
def tiny_policy() -> GigaWorldPolicy:
    torch.manual_seed(0)
    return GigaWorldPolicy(PolicyConfig.preset("tiny")).eval()
