import json

import pytest

from gigaworld_policy.cli import main

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


def test_unknown_preset_is_a_clear_error(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "latency", "--preset", "huge"])
    assert "invalid choice: 'huge'" in capsys.readouterr().err


def test_train_options_from_a_file_and_dotted_flags(tmp_path):
    from gigaworld_policy.cli import parse_train_args

    config_file = tmp_path / "run.yaml"
    config_file.write_text("preset: small\nsteps: 500\noptim:\n  lr: 0.001\n  schedule: constant\n")
    config = parse_train_args(["--config", str(config_file), "--dataset", "a", "b", "--steps", "700",
                               "--optim.warmup-steps", "5", "--data.cameras", "corner", "gripperPOV"])
    assert config.preset == "small" and config.steps == 700 and config.dataset == ("a", "b")
    assert config.optim.lr == 0.001 and config.optim.schedule == "constant" and config.optim.warmup_steps == 5
    assert config.data.cameras == ("corner", "gripperPOV")
    config_file.write_text("stpes: 3\n")
    with pytest.raises(ValueError, match=r"unknown training options \['stpes'\]"):
        parse_train_args(["--config", str(config_file)])
    with pytest.raises(ValueError, match="--config needs a YAML or JSON file"):
        parse_train_args(["--steps", "3", "--config"])


def test_malformed_server_key_map_is_a_clear_error(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--checkpoint", "unused", "--key-map", "observation/image=corner,wrist"])
    assert "expected CLIENT_KEY=CAMERA pairs" in capsys.readouterr().err
    from gigaworld_policy.cli import build_parser

    args = build_parser().parse_args(["serve", "--checkpoint", "c", "--key-map", "observation/image=corner,b=wrist"])
    assert args.key_map == {"observation/image": "corner", "b": "wrist"}
