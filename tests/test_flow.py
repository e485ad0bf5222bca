from itertools import pairwise

import torch

from gigaworld_policy.model import flow


def test_shift_warps_towards_noise_and_keeps_endpoints():
    u = torch.linspace(0, 1, 11)
    assert torch.allclose(flow.shift_sigma(u, 1.0), u)
    shifted = flow.shift_sigma(u, 5.0)
    assert shifted[0] == 0 and shifted[-1] == 1
    assert (shifted[1:-1] > u[1:-1]).all()
    assert torch.allclose(flow.shift_sigma(torch.tensor(0.5), 5.0), torch.tensor(5 * 0.5 / (1 + 4 * 0.5)))


def test_sampling_schedule_runs_from_noise_to_clean():
    sigmas = flow.sampling_sigmas(10, 5.0)
    assert sigmas.shape == (11,) and sigmas[0] == 1 and sigmas[-1] == 0
    assert (sigmas[1:] < sigmas[:-1]).all()


def test_euler_with_the_true_velocity_recovers_the_data():
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)
    x = flow.add_noise(x0, noise, torch.ones(3))
    assert torch.allclose(x, noise)
    sigmas = flow.sampling_sigmas(7, 5.0)
    for sigma, sigma_next in pairwise(sigmas):
        x = x + (sigma_next - sigma) * flow.velocity_target(x0, noise)
    assert torch.allclose(x, x0, atol=1e-6)
