"""The core installs alone: without any extra it still imports, builds, trains and saves; what needs an extra names
the extra to install."""

import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
OPTIONAL = ("metaworld", "mujoco", "diffusers", "websockets", "msgpack", "scipy", "matplotlib", "peft")
# As if none of the extras were installed: importing any of these modules fails as a missing package does.
WITHOUT_EXTRAS = f"import sys; sys.path.insert(0, {str(TESTS)!r}); sys.modules.update(dict.fromkeys({OPTIONAL!r})); "


def run_without_extras(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT_EXTRAS + code], capture_output=True, text=True, timeout=300)


def test_the_core_trains_and_saves_a_policy_without_any_extra(tmp_path):
    code = f"""
import warnings; warnings.simplefilter("ignore")
import torch; torch.set_num_threads(1)
from helpers import write_dataset
from gigaworld_policy import GigaWorldPolicy
from gigaworld_policy.train import TrainConfig, train
write_dataset({str(tmp_path / "data")!r}, lengths=(12, 10))
result = train(TrainConfig(dataset=({str(tmp_path / "data")!r},), preset="tiny", steps=2, batch_size=2, num_workers=0,
                           output_dir={str(tmp_path / "run")!r}, log_with="none"))
GigaWorldPolicy.from_pretrained(result.checkpoint)
print("trained without extras")
"""
    done = run_without_extras(code)
    assert done.returncode == 0 and "trained without extras" in done.stdout, done.stderr[-2000:]


@pytest.mark.parametrize(("code", "extra"), [
    ("import gigaworld_policy.serving.server", "serve"),
    ("from gigaworld_policy.serving.client import PolicyClient", "serve"),
    ("from gigaworld_policy.encoders.wan_vae import WanVAECodec; WanVAECodec.random_wan22()", "wan"),
    ("from gigaworld_policy import GigaWorldPolicy, PolicyConfig; from gigaworld_policy.model.lora import add_lora; "
     "add_lora(GigaWorldPolicy(PolicyConfig.preset('tiny')), 4, 4, ('init', 'base'))", "lora"),
])
def test_what_needs_an_extra_names_it(code, extra):
    done = run_without_extras(code)
    assert done.returncode != 0
    assert f"which is not installed: pip install 'gigaworld-policy[{extra}]'" in done.stderr, done.stderr[-2000:]
