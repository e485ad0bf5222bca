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
