"""The prepared GPU check runs end to end on the CPU with the tiny presets, importing only what the GPU machine has."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "gpu_check.py"
# What the GPU machine lacks (it has torch, accelerate, safetensors, transformers, peft and what they need, as tqdm and
# pyyaml, numpy, pyarrow): importing any of these fails there, as it does here.
ABSENT = ("diffusers", "av", "mujoco", "metaworld", "tyro", "pandas", "PIL", "tensorboard", "scipy", "matplotlib",
          "websockets", "msgpack")


def test_gpu_check_prints_one_json_of_all_stages_without_the_missing_packages():
    code = (f"import sys, runpy; sys.modules.update(dict.fromkeys({ABSENT!r})); "
            f"sys.argv = [{str(SCRIPT)!r}, '--preset', 'tiny', '--device', 'cpu', '--no-compile', '--repeats', '1']; "
            f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert not report["skipped"]
    decoding = {(row["preset"], row["attention"]): row for row in report["decoding"]}
    assert set(decoding) == {(p, a) for p in ("tiny", "tiny-expert") for a in ("sdpa", "flex")}
    for row in decoding.values():
        assert row["action_only_cached_ms"] > 0 and row["joint_ms"] > 0 and row["cached_vs_uncached_max_abs"] < 0.02
    full, lora = report["training"]
    assert full["lora_rank"] == 0 and full["trained_parameters"] == full["parameters"]
    assert lora["lora_rank"] == 16 and 0 < lora["trained_parameters"] < full["parameters"] < lora["parameters"]
    assert full["seconds_per_step"] > 0 and lora["seconds_per_step"] > 0
