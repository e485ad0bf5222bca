import json
import re

import pytest

from gigaworld_policy.cli import Checkpoint, Sampling, main, parse

REQUIRED = {
    "action_only_cached_ms", "action_only_uncached_ms", "joint_ms", "speedup_vs_uncached", "speedup_vs_joint",
    "cached_vs_uncached_max_abs", "gflops_cached", "achieved_gflops", "matmul_peak_gflops", "threads",
}


def test_bench_latency_prints_one_json_object(capsys):
    main(["bench", "latency", "--preset", "tiny", "--json", "--repeats", "1", "--steps", "3"])
    result = json.loads(capsys.readouterr().out)
    assert REQUIRED <= result.keys()
    assert result["threads"] == 1 and result["num_steps"] == 3
    assert result["cached_vs_uncached_max_abs"] <= 1e-5
    # exact FLOP counts: the cache saves arithmetic, and the joint path does the most
    assert result["gflops_cached"] < result["gflops_action_only_uncached"] < result["gflops_joint"]


def tyro_error(capsys) -> str:
    """What tyro printed for a mistake in the flags, without the frame drawn around it."""
    return " ".join(re.sub(r"[│╭╮╰╯─|+]|-{3,}", " ", capsys.readouterr().err).split())


def test_unknown_preset_is_a_clear_error(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "latency", "--preset", "huge"])
    message = tyro_error(capsys)
    assert "invalid choice 'huge' for argument '--preset'. Expected one of ('bench', " in message


def test_train_options_from_a_file_and_dotted_flags(tmp_path):
    config_file = tmp_path / "run.yaml"
    config_file.write_text("preset: small\nsteps: 500\noptim:\n  lr: 0.001\n  schedule: constant\n")
    _, config = parse(["train", "--config", str(config_file), "--dataset", "a", "b", "--steps", "700",
                       "--optim.warmup-steps", "5", "--data.cameras", "corner", "gripperPOV"])
    assert config.preset == "small" and config.steps == 700 and config.dataset == ("a", "b")
    assert config.optim.lr == 0.001 and config.optim.schedule == "constant" and config.optim.warmup_steps == 5
    assert config.data.cameras == ("corner", "gripperPOV")
    config_file.write_text("stpes: 3\n")
    with pytest.raises(ValueError, match=r"unknown training options \['stpes'\]"):
        parse(["train", "--config", str(config_file)])
    with pytest.raises(ValueError, match="--config needs a YAML or JSON file"):
        parse(["train", "--steps", "3", "--config"])
    with pytest.raises(ValueError, match="gwp serve reads no --config file"):
        parse(["serve", "--config", str(config_file)])


def test_malformed_server_key_map_is_a_clear_error(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--checkpoint", "unused", "--key-map", "observation/image=corner,wrist"])
    assert "expected CLIENT_KEY=CAMERA pairs separated by commas, got ['wrist']" in tyro_error(capsys)
    _, command = parse(["serve", "--checkpoint", "c", "--key-map", "observation/image=corner,b=wrist"])
    assert command.key_map == {"observation/image": "corner", "b": "wrist"}
    _, command = parse(["serve", "--checkpoint", "c", "--max-message-mib", "16", "--max-instruction-chars", "2000"])
    assert (command.key_map, command.max_message_mib, command.max_instruction_chars) == ({}, 16, 2000)


# Every command that runs a checkpoint, with what else it requires.
CHECKPOINT_COMMANDS = {
    "eval": ["--dataset", "d"],
    "eval metaworld": ["--tasks", "reach-v3"],
    "eval-open-loop": ["--dataset", "d"],
    "serve": [],
}
SHARED_FLAGS = ["--checkpoint", "c", "--raw-weights", "--text-encoder", "te", "--vae", "v", "--steps", "3",
                "--temperature", "0.5"]


@pytest.mark.parametrize("name", CHECKPOINT_COMMANDS)
def test_each_shared_flag_parses_the_same_in_every_command(name):
    _, command = parse([*name.split(), *CHECKPOINT_COMMANDS[name], *SHARED_FLAGS])
    assert command.load == Checkpoint("c", raw_weights=True, text_encoder="te", vae="v")
    assert command.sampling == Sampling(steps=3, temperature=0.5)
    _, defaults = parse([*name.split(), *CHECKPOINT_COMMANDS[name], "--checkpoint", "c"])
    assert defaults.load == Checkpoint("c") and defaults.sampling == Sampling()


def test_the_frozen_parts_and_steps_mean_the_same_in_training_and_benchmarks():
    _, config = parse(["train", "--text-encoder", "te", "--vae", "v"])
    assert (config.text_encoder, config.vae) == ("te", "v")
    _, bench = parse(["bench", "latency", "--vae", "v", "--steps", "3"])
    assert (bench.vae, bench.steps) == ("v", 3)


def test_environment_settings_are_flags_of_the_environment_commands():
    from gigaworld_policy.envs.metaworld import MetaWorldSettings

    _, collect = parse(["collect", "metaworld", "--tasks", "reach-v3", "push-v3", "--out", "o", "--cameras", "corner",
                        "--image-size", "32", "48", "--observe-goal", "--goal-marker-radius", "0.05"])
    assert collect.env == MetaWorldSettings(cameras=("corner",), image_size=(32, 48), observe_goal=True,
                                            goal_marker_radius=0.05)
    assert collect.tasks == ("reach-v3", "push-v3")
    _, evaluate = parse(["eval", "metaworld", "--checkpoint", "c", "--tasks", "reach-v3", "--cameras", "corner",
                         "--image-size", "32", "48", "--observe-goal", "--goal-marker-radius", "0.05"])
    assert evaluate.env == collect.env
    _, recorded = parse(["eval", "--checkpoint", "c", "--dataset", "data/mw"])
    assert recorded.env.dataset == "data/mw" and recorded.tasks == ()


def test_a_bad_setting_or_command_is_a_sentence(capsys):
    with pytest.raises(SystemExit):
        main(["collect", "metaworld", "--tasks", "reach-v3", "--out", "o", "--cameras", "cornr"])
    assert "unknown camera 'cornr' (did you mean 'corner'?)" in tyro_error(capsys)
    for argv, expected in ((["evl"], "unknown command 'evl' (did you mean 'eval'?); the commands are ['bench', "),
                           (["collect", "metaworl"], "gwp collect needs one of: metaworld"),
                           (["convert"], "gwp convert needs one of: videos, lerobot-v21")):
        with pytest.raises(SystemExit, match="^gwp: error: " + re.escape(expected)):
            main(argv)
    with pytest.raises(SystemExit, match=r"^gwp: error: --tasks takes names separated by spaces, got 'a-v3,b-v3'$"):
        main(["eval", "metaworld", "--checkpoint", "c", "--tasks", "a-v3,b-v3"])
    with pytest.raises(SystemExit, match=r"^gwp: error: no task given: name them with --tasks$"):
        main(["eval", "metaworld", "--checkpoint", "c"])


def test_gwp_alone_lists_the_commands(capsys):
    main([])
    listed = capsys.readouterr().out
    assert all(name in listed for name in ("train", "collect metaworld", "eval metaworld", "convert lerobot-v21"))
