"""A tiny Meta-World collection produces a dataset that plain pyarrow + PyAV read consistently."""

import json
import os

import av
import numpy as np
import pyarrow.parquet as pq
import pytest


def _rendering_available() -> bool:
    try:
        from gigaworld_policy.envs.metaworld import MetaWorldEnv

        MetaWorldEnv("reach-v3", cameras=("corner",), image_size=(8, 8)).close()
        return True
    except Exception:
        return False


# CI sets GWP_REQUIRE_RENDERING=1 (it installs the OpenGL libraries), so there a broken renderer fails.
pytestmark = pytest.mark.skipif(
    os.environ.get("GWP_REQUIRE_RENDERING") != "1" and not _rendering_available(),
    reason="offscreen OpenGL (EGL) is not available: apt-get install libegl1 libgl1-mesa-dri",
)


def test_collect_writes_a_readable_dataset(tmp_path):
    from gigaworld_policy.envs.metaworld import collect

    report = collect(["reach-v3"], episodes=1, out=str(tmp_path / "mw"), cameras=("corner", "gripperPOV"),
                     image_size=(32, 40), seed=3, progress=False)
    assert report["reach-v3"]["episodes"] == 1
    root = tmp_path / "mw"
    info = json.loads((root / "meta" / "info.json").read_text())
    data = pq.read_table(root / "data" / "chunk-000" / "file-000.parquet")
    assert data.num_rows == info["total_frames"] > 5
    assert info["features"]["observation.state"]["shape"] == [4] and info["features"]["action"]["shape"] == [4]
    actions = np.stack(data["action"].to_pylist())
    assert np.abs(actions).max() <= 1 + 1e-6 and np.abs(actions).max() > 0.05  # the expert moved
    for camera in ("corner", "gripperPOV"):
        path = root / "videos" / f"observation.images.{camera}" / "chunk-000" / "file-000.mp4"
        with av.open(str(path)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        assert len(frames) == info["total_frames"]
        assert frames[0].shape == (32, 40, 3) and frames[0].std() > 5  # a rendered scene, not a blank frame
    tasks = pq.read_table(root / "meta" / "tasks.parquet").to_pandas()
    assert list(tasks.index) == ["reach the red goal position"]


def test_same_seed_same_layout():
    from gigaworld_policy.envs.metaworld import MetaWorldEnv

    env = MetaWorldEnv("reach-v3", cameras=("corner",), image_size=(16, 16))
    first = env.reset(7).images["corner"]
    goal = env.env._target_pos.copy()
    env.reset(8)
    assert not np.allclose(env.env._target_pos, goal)
    assert np.array_equal(env.reset(7).images["corner"], first) and np.allclose(env.env._target_pos, goal)
    env.close()
