"""The shipped video prior (priors/metaworld-small): what its recipe promises, and post-training from it."""

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from gigaworld_policy import GigaWorldPolicy
from gigaworld_policy.envs.metaworld import MetaWorldSettings
from gigaworld_policy.envs.recording import collect
from gigaworld_policy.train import OptimConfig, TrainConfig, train

PRIOR = Path(__file__).parents[1] / "priors" / "metaworld-small"
MAIN_JOB = {"reach-v3", "button-press-topdown-v3", "drawer-open-v3"}
FEW_SHOT = {"bin-picking-v3", "box-close-v3", "door-lock-v3", "door-unlock-v3", "hand-insert-v3"}


def test_the_prior_never_saw_the_main_job_or_the_few_shot_tasks_and_is_about_25_mb():
    recipe = json.loads((PRIOR / "recipe.json").read_text())
    assert len(recipe["tasks"]) == 42 and not set(recipe["tasks"]) & (MAIN_JOB | FEW_SHOT)
    assert set(recipe["held_out"]["main_job"]) == MAIN_JOB and set(recipe["held_out"]["few_shot"]) == FEW_SHOT
    assert sum(f.stat().st_size for f in PRIOR.iterdir()) < 26e6  # ~25 MB: 6.3 M weights in fp32
    policy = GigaWorldPolicy.from_pretrained(PRIOR)
    assert policy.config.observation_encoder == "cnn"  # the main job's network, goal in the state
    assert [(e.state_dim, e.action_dim) for e in policy.config.embodiments][:1] == [(7, 4)]
    assert policy.processors["sawyer"].cameras == ("corner", "corner2", "gripperPOV")


def test_post_training_starts_from_the_prior(tmp_path):
    settings = MetaWorldSettings(cameras=("corner", "corner2", "gripperPOV"), image_size=(64, 64), observe_goal=True)
    collect(settings, ["bin-picking-v3"], 1, tmp_path / "data", seed=0)
    result = train(TrainConfig(dataset=(str(tmp_path / "data"),), init=str(PRIOR), steps=1, batch_size=2,
                               num_workers=0, log_with="none", output_dir=str(tmp_path / "run"),
                               optim=OptimConfig(lr=0.0, warmup_steps=0)))
    prior, post = load_file(str(PRIOR / "model.safetensors")), load_file(str(result.checkpoint / "model.safetensors"))
    assert prior.keys() == post.keys() and all(torch.equal(prior[k], post[k]) for k in prior)  # lr 0: unchanged
