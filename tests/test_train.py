"""Training: exact resume, loss goes down, pretrain -> posttrain, spawned loader workers, two processes, crash-safe
checkpoints, EMA, logged losses, robot sizes from the data."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import write_dataset
from safetensors.torch import load_file

from gigaworld_policy import PolicyConfig
from gigaworld_policy.config import ActionExpertConfig, EmbodimentSpec
from gigaworld_policy.model.policy import GigaWorldPolicy
from gigaworld_policy.train import EMA, OptimConfig, TrainConfig, train


@pytest.fixture(scope="module")
def robot_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "robot"
    write_dataset(root, lengths=(20, 13, 17))
    return str(root)


@pytest.fixture(scope="module")
def video_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "video"
    write_dataset(root, lengths=(12, 15), with_actions=False)
    return str(root)


def config(data, out, **changes) -> TrainConfig:
    base = dict(dataset=(data,), preset="tiny", steps=6, output_dir=str(out), batch_size=4, num_workers=0,
                save_every=3, log_with="none", optim=OptimConfig(lr=1e-3, warmup_steps=2))
    return TrainConfig(**{**base, **changes})


def train_to(cfg: TrainConfig) -> Path:
    return train(cfg).checkpoint


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_resume_is_exact(robot_data, tmp_path):
    straight = train_to(config(robot_data, tmp_path / "straight"))
    # a run stopped after 3 of 6 steps (same learning-rate schedule), then resumed to 6
    train(config(robot_data, tmp_path / "resumed", steps=3, optim=OptimConfig(lr=1e-3, warmup_steps=2, decay_steps=6)))
    resumed = train_to(config(robot_data, tmp_path / "resumed", resume=True))
    a, b = weights(straight), weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ema_a, ema_b = load_file(str(straight / "ema.safetensors")), load_file(str(resumed / "ema.safetensors"))
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)
    # besides the optimiser, training_state/ holds small states, not another copy of the weights or of the EMA
    others = [f for f in (resumed / "training_state").iterdir() if f.name != "optimizer.bin"]
    assert sum(f.stat().st_size for f in others) < 0.5 * (resumed / "model.safetensors").stat().st_size, others
    with pytest.raises(FileExistsError, match="already has checkpoints"):
        train(config(robot_data, tmp_path / "straight"))


def test_time_cosine_decays_over_the_minutes_trained_not_the_steps():
    from gigaworld_policy.train import Progress, lr_lambda

    progress = Progress()
    factor = lr_lambda(OptimConfig(schedule="time-cosine", warmup_steps=4, min_lr_ratio=0.1), 1000, progress, 40.0)
    assert factor(1) == pytest.approx(0.5)  # the warm-up ramp, at minute 0
    for minutes, expected in ((0, 1.0), (20, 0.55), (40, 0.1), (55, 0.1)):
        progress.minutes = minutes
        assert factor(10) == factor(900) == pytest.approx(expected), minutes  # whatever the step
    with pytest.raises(ValueError, match="give --max-minutes"):
        TrainConfig(optim=OptimConfig(schedule="time-cosine"))


def test_the_time_budget_and_its_cosine_count_the_minutes_of_the_run_that_was_resumed(robot_data, tmp_path):
    schedule = OptimConfig(lr=1e-3, warmup_steps=2, schedule="time-cosine")
    first = train_to(config(robot_data, tmp_path / "run", steps=3, max_minutes=1000.0, optim=schedule))
    # the training state holds the progress after the scheduler (accelerate's custom objects, in order)
    progress_file = first / "training_state" / "custom_checkpoint_1.pkl"
    saved = torch.load(progress_file, weights_only=False)
    assert saved["step"] == 3 and 0 < saved["minutes"] < 1000
    saved["minutes"] = 1000.5  # as if the first run had trained for longer than the budget
    torch.save(saved, progress_file)
    resumed = train_to(config(robot_data, tmp_path / "run", resume=True, max_minutes=1000.0, optim=schedule,
                              log_every=1))
    assert resumed.name == "000004"  # one step, then it stops and checkpoints
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    logged = {row["step"]: row for row in map(json.loads, lines)}
    assert logged[4]["train/lr"] == pytest.approx(1e-3 * schedule.min_lr_ratio)  # the cosine is at its end


def test_overfitting_a_handful_of_samples_lowers_the_loss(tmp_path):
    from gigaworld_policy import PolicyConfig
    from gigaworld_policy.data import LeRobotDataset, PolicyDataset
    from gigaworld_policy.encoders.text import TextEncoder

    data = str(tmp_path / "handful")
    write_dataset(data, lengths=(10,))
    torch.manual_seed(0)
    GigaWorldPolicy(PolicyConfig.preset("tiny")).save_pretrained(tmp_path / "init")
    final = train_to(config(data, tmp_path / "run", init=str(tmp_path / "init"), steps=150, save_every=150,
                         batch_size=8, optim=OptimConfig(lr=3e-3, warmup_steps=1, schedule="constant")))
    processor = GigaWorldPolicy.from_pretrained(final).processors["sawyer"]
    text_encoder = TextEncoder.minilm(16)
    losses = []
    for checkpoint in (tmp_path / "init", final):
        policy = GigaWorldPolicy.from_pretrained(checkpoint)
        policy.text_encoder = text_encoder
        samples = PolicyDataset(LeRobotDataset(data), policy.config, processor=processor)
        batch = torch.utils.data.default_collate([samples[i] for i in range(10)])
        with torch.no_grad():
            infos = [policy.compute_loss(batch, torch.Generator().manual_seed(s))[1] for s in range(4)]
        losses.append([sum(float(i[k]) for i in infos) for k in ("loss_action", "loss_video")])
    (action_before, video_before), (action_after, video_after) = losses
    assert action_after < 0.4 * action_before and video_after < 0.75 * video_before, losses

    # open-loop evaluation sees the same: sampled action chunks get closer to the demonstrations
    from gigaworld_policy.evaluate import open_loop_dataset

    errors = []
    for checkpoint in (tmp_path / "init", final):
        policy = GigaWorldPolicy.from_pretrained(checkpoint)
        policy.text_encoder, policy.processors = text_encoder, {"sawyer": processor}
        errors.append(open_loop_dataset(policy, data, last_episodes=1, max_samples=10, out_dir=tmp_path / "ol"))
    assert errors[1]["action_mse"] < 0.5 * errors[0]["action_mse"], errors
    assert errors[0]["samples"] == 10
    assert (tmp_path / "ol" / "open_loop.json").is_file() and (tmp_path / "ol" / "open_loop_future.png").is_file()


def test_pretrain_on_video_then_posttrain(robot_data, video_data, tmp_path):
    pretrained = train_to(config(video_data, tmp_path / "pre", stage="pretrain", steps=3))
    assert GigaWorldPolicy.from_pretrained(pretrained).processors["sawyer"].action is None
    before = weights(pretrained)
    post = train_to(config(robot_data, tmp_path / "post", init=str(pretrained), steps=3))
    after = weights(post)
    assert not torch.equal(before["transformer.proj_out.weight"], after["transformer.proj_out.weight"])
    assert GigaWorldPolicy.from_pretrained(post).processors["sawyer"].action is not None  # robot stats travel along


def test_video_only_stage_leaves_action_statistics_to_post_training(robot_data, tmp_path):
    """A video-only stage on robot data ignores its actions, so their statistics must not travel to post-training,
    whose labelled data may be another set of demonstrations."""
    from gigaworld_policy.data import LeRobotDataset, PolicyDataset

    labelled = tmp_path / "labelled"
    write_dataset(labelled, lengths=(18, 16))
    pretrained = train_to(config(robot_data, tmp_path / "pre", stage="pretrain", steps=1, save_every=1))
    pre = GigaWorldPolicy.from_pretrained(pretrained).processors["sawyer"]
    assert pre.action is None and pre.state is not None
    post = train_to(config(str(labelled), tmp_path / "post", init=str(pretrained), steps=1, save_every=1))
    post_processor = GigaWorldPolicy.from_pretrained(post).processors["sawyer"]
    policy_config = PolicyConfig.preset("tiny")
    own = PolicyDataset(LeRobotDataset(labelled), policy_config).processor.action
    other = PolicyDataset(LeRobotDataset(robot_data), policy_config).processor.action
    assert post_processor.action == own != other
    assert post_processor.state == pre.state  # same robot: the state keeps its scale
    # more video-only training of the post-trained policy keeps the action statistics it was trained with
    again = train_to(config(robot_data, tmp_path / "again", stage="pretrain", init=str(post), steps=1, save_every=1))
    assert GigaWorldPolicy.from_pretrained(again).processors["sawyer"].action == own


def test_loader_workers_started_with_spawn(video_data, tmp_path):
    """macOS and Windows start loader workers with "spawn": the dataset and the batching must pickle."""
    method = torch.multiprocessing.get_start_method()
    torch.multiprocessing.set_start_method("spawn", force=True)
    try:
        checkpoint = train_to(config(video_data, tmp_path / "pre", stage="pretrain", steps=2, num_workers=1))
    finally:
        torch.multiprocessing.set_start_method(method, force=True)
    assert int(checkpoint.name) == 2


def test_crash_while_checkpointing_keeps_the_previous_one(robot_data, tmp_path, monkeypatch):
    original = GigaWorldPolicy.write_pretrained

    def crash_at_step_6(self, folder, *args, **kwargs):
        original(self, folder, *args, **kwargs)
        if (Path(folder) / "training_state").exists() and self._steps_written == 1:
            raise KeyboardInterrupt("killed while writing")
        self._steps_written += 1

    monkeypatch.setattr(GigaWorldPolicy, "_steps_written", 0, raising=False)
    monkeypatch.setattr(GigaWorldPolicy, "write_pretrained", crash_at_step_6)
    with pytest.raises(KeyboardInterrupt):
        train(config(robot_data, tmp_path / "run", log_every=1))
    checkpoints = tmp_path / "run" / "checkpoints"
    assert os.readlink(checkpoints / "last") == "000003"
    assert sorted(p.name for p in checkpoints.iterdir() if not p.name.startswith(".")) == ["000003", "last"]
    GigaWorldPolicy.from_pretrained(checkpoints / "last")
    monkeypatch.undo()

    def logged_steps() -> list[int]:
        return [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").open()]

    assert logged_steps() == [1, 2, 3, 4, 5, 6]  # steps 4-6 were logged, then lost with their checkpoint
    resumed = train_to(config(robot_data, tmp_path / "run", resume=True, log_every=1))  # training goes on from there
    assert resumed.name == "000006"
    assert logged_steps() == [1, 2, 3, 4, 5, 6]  # each step logged once: the lost steps' lines were replaced


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch_two_processes(robot_data, out: Path, *args: str, **env: str) -> list[list[str]]:
    """tests/distributed_train.py under torchrun on two CPU processes (gloo); each rank's report."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent), **env}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
               str(Path(__file__).parent / "distributed_train.py"), robot_data, str(out), *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return [(out / f"rank{r}.txt").read_text().split() for r in (0, 1)]


@pytest.fixture(scope="module")
def ddp_run(robot_data, tmp_path_factory) -> tuple[Path, list[list[str]]]:
    out = tmp_path_factory.mktemp("ddp")
    return out, launch_two_processes(robot_data, out)


def test_two_processes_train_and_agree(ddp_run):
    _, reports = ddp_run
    assert [world_size for world_size, *_ in reports] == ["2", "2"], "the ranks trained alone, not as one group"
    # Each rank draws its own batches and flow noise, so equal weights mean the gradients were averaged.
    assert reports[0][1] == reports[1][1]
    assert [share for _, _, share, _ in reports] == ["1.000", "1.000"]  # data-parallel: each rank holds all weights


def test_two_processes_on_a_time_cosine_agree_on_the_rate_and_the_last_step(robot_data, tmp_path):
    """Each rank has its own clock: unless they share one, their learning rates differ and so do their weights."""
    reports = launch_two_processes(robot_data, tmp_path, "--time-cosine")
    assert [world_size for world_size, *_ in reports] == ["2", "2"]
    assert reports[0][1] == reports[1][1] and reports[0][3] == reports[1][3], reports


def test_fsdp_on_two_processes_shards_equals_ddp_and_resumes_exactly(robot_data, ddp_run, tmp_path):
    ddp, _ = ddp_run
    reports = launch_two_processes(robot_data, tmp_path / "fsdp", "--resume-check", ACCELERATE_USE_FSDP="true")
    assert [world_size for world_size, *_ in reports] == ["2", "2"]
    assert all(0.3 < float(share) < 0.7 for _, _, share, _ in reports), f"the weights were not sharded: {reports}"

    def weights(run: Path, step: str, name: str) -> dict[str, torch.Tensor]:
        return load_file(str(run / "checkpoints" / step / name))

    for name in ("model.safetensors", "ema.safetensors"):  # whole tensors gathered from the shards
        sharded = weights(tmp_path / "fsdp" / "three", "000003", name)
        replicated = weights(ddp / "three", "000003", name)
        assert sharded.keys() == replicated.keys()
        for key in sharded:  # the same steps; only the order of the gradient sums differs
            torch.testing.assert_close(sharded[key], replicated[key], rtol=0, atol=1e-6, msg=key)
        resumed, straight = (weights(tmp_path / "fsdp" / run, "000006", name) for run in ("three", "six"))
        for key in straight:  # the sharded optimiser state, the RNG and the data position came back exactly
            assert torch.equal(resumed[key], straight[key]), key


def test_ema_forgets_the_random_initial_weights_early():
    model = torch.nn.Linear(4, 4)
    ema = EMA(model, decay=0.999)
    with torch.no_grad():
        model.weight.fill_(1.0)
    for step in range(20):
        ema.update(model, step)
    # Without the warm-up 0.999**20 = 98% of the average would still be the initial weights.
    torch.testing.assert_close(ema.shadow["weight"], torch.ones(4, 4), atol=1e-6, rtol=0)
    assert ema.decay_at(20_000) == 0.999


def test_logged_losses_are_means_over_the_interval(robot_data, tmp_path):
    def logged(out, log_every):
        train(config(robot_data, out, save_every=6, log_every=log_every))
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        return {row["step"]: row for row in rows}

    every_step, every_third = logged(tmp_path / "every", 1), logged(tmp_path / "third", 3)
    assert sorted(every_third) == [1, 3, 6]
    for step, covered in ((3, (2, 3)), (6, (4, 5, 6))):
        for name in ("train/loss", "train/loss_action", "train/loss_video"):
            mean = sum(every_step[s][name] for s in covered) / len(covered)
            assert every_third[step][name] == pytest.approx(mean, rel=1e-5), (step, name)


def test_init_keeps_its_checkpoints_architecture():
    base = PolicyConfig.preset("tiny").replace(observation_encoder="cnn")
    cfg = TrainConfig(dataset="unused", init="ckpt", cnn_widths=(8, 16), video_loss_weight=0.0)
    with pytest.raises(ValueError, match=r"--init ckpt keeps .* cnn_widths from \(32, 64, 128, 256\) to \(8, 16\)"):
        cfg.policy(base)
    assert cfg.policy().cnn_widths == (8, 16)  # a fresh run may choose its encoder
    same = TrainConfig(dataset="unused", init="ckpt", observation_encoder="cnn", video_loss_weight=0.0)
    assert same.policy(base).video_loss_weight == 0.0  # losses may change; restating the architecture is fine
    assert TrainConfig(dataset="unused", action_expert_dim=8).policy().action_expert == ActionExpertConfig(8, 32)
    with pytest.raises(ValueError, match="would change action_expert from None"):
        TrainConfig(dataset="unused", init="ckpt", action_expert_dim=8).policy(base)


def test_a_new_policy_takes_the_robot_sizes_of_the_data_and_an_init_checkpoint_keeps_its_own(robot_data, tmp_path):
    root = tmp_path / "goal_in_state"
    write_dataset(root, lengths=(12, 12), state_dim=7)
    checkpoint = train_to(config(str(root), tmp_path / "fresh", steps=2))
    assert GigaWorldPolicy.from_pretrained(checkpoint).config.embodiments[0] == EmbodimentSpec("sawyer", 7, 4)
    four_wide = train_to(config(robot_data, tmp_path / "four", steps=2))
    with pytest.raises(ValueError, match=r"'observation.state' has 7 dims, embodiment 'sawyer' expects state_dim 4"):
        train(config(str(root), tmp_path / "init", steps=2, init=str(four_wide)))


def test_weight_decay_spares_biases_norms_and_the_modulation_table():
    from gigaworld_policy.train import decays

    policy = GigaWorldPolicy(PolicyConfig.preset("tiny"))
    spared = {name for name, parameter in policy.named_parameters() if not decays(name, parameter)}
    assert spared and all(name.endswith((".bias", "scale_shift_table")) or "norm" in name for name in spared)
    assert "transformer.scale_shift_table" in spared and any(n.endswith(".to_q.bias") for n in spared)
    query = "transformer.blocks.0.attn1.to_q.weight"
    assert decays(query, policy.get_parameter(query))


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU accelerate does shard")
def test_fsdp_asked_for_in_one_cpu_process_is_refused_not_run_unsharded(robot_data, tmp_path, monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # what `accelerate launch --use_fsdp` sets
    with pytest.raises(ValueError, match="sharding needs several processes"):
        train(config(robot_data, tmp_path / "fsdp", steps=1))
