"""Policy server: openpi protocol round trips, error replies, concurrency, health check; client and broker."""

import asyncio
import threading
import urllib.request

import msgpack
import numpy as np
import pytest
import torch
from helpers import CAMERAS, smooth_frame, write_dataset

from gigaworld_policy.envs.base import Observation
from gigaworld_policy.inference import Predictor
from gigaworld_policy.serving import msgpack_numpy
from gigaworld_policy.serving.client import ActionChunkBroker, PolicyClient
from gigaworld_policy.serving.server import PolicyServer
from gigaworld_policy.train import TrainConfig, train


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    write_dataset(root / "data", lengths=(12, 10))
    config = TrainConfig(dataset=(str(root / "data"),), preset="tiny", steps=2, output_dir=str(root / "run"),
                         batch_size=2, num_workers=0, log_with="none")
    return train(config).checkpoint


@pytest.fixture(scope="module")
def server(checkpoint):
    server = PolicyServer(Predictor.from_checkpoint(checkpoint), "127.0.0.1", 0,
                          key_map={"observation/image": "top"})
    started = threading.Event()
    state = {}

    def run():
        loop = asyncio.new_event_loop()
        state["loop"], state["stop"] = loop, asyncio.Event()
        ready = asyncio.Event()
        task = loop.create_task(server.serve(ready, state["stop"]))
        loop.run_until_complete(ready.wait())
        started.set()
        loop.run_until_complete(task)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(60)
    yield server
    state["loop"].call_soon_threadsafe(state["stop"].set)
    thread.join(10)


def request(**changes):
    obs = {f"observation.images.{c}": smooth_frame(0, 3, i) for i, c in enumerate(CAMERAS)}
    obs.update({"observation.state": np.array([0.1, -0.2, 0.3, 0.0], np.float32), "task": "open the drawer"})
    obs.update(changes)
    return obs


def test_round_trip_returns_a_chunk_in_robot_units(server):
    with PolicyClient("127.0.0.1", server.port) as client:
        assert client.metadata["cameras"] == list(CAMERAS) and client.metadata["action_horizon"] == 8
        reply = client.infer(request())
    assert reply["actions"].shape == (8, 4) and reply["actions"].dtype == np.float32
    assert np.isfinite(reply["actions"]).all() and reply["server_timing"]["infer_ms"] > 0


def test_predictor_unnormalises_the_sampled_actions(checkpoint):
    predictor = Predictor.from_checkpoint(checkpoint)
    observation = Observation({c: smooth_frame(0, 1, i) for i, c in enumerate(CAMERAS)},
                              np.zeros(4, np.float32), "open the drawer")
    actions = predictor.predict(observation, generator=torch.Generator().manual_seed(0))["actions"]
    noise = torch.randn(1, 8, 14, generator=torch.Generator().manual_seed(0))  # tiny pads actions to 14 dims
    normalized = predictor.policy.sample_actions(predictor.batch(observation), noise=noise)
    expected = predictor.action_normalizer.unnormalize(normalized[0]).numpy()
    assert np.allclose(actions, expected, atol=1e-5)
    assert not np.allclose(actions, normalized[0].numpy())  # robot units differ from model units


def test_bad_requests_get_error_replies_and_the_connection_keeps_working(server):
    with PolicyClient("127.0.0.1", server.port) as client:
        assert "not valid msgpack" in client.send_raw(b"\xc1 definitely not msgpack")["error"]
        assert "binary msgpack" in client.send_raw("a text frame")["error"]
        missing = request()
        del missing["observation.images.left"]
        with pytest.raises(RuntimeError, match=r"missing image\(s\) for camera\(s\) \['left'\]"):
            client.infer(missing)
        with pytest.raises(RuntimeError, match=r"image 'observation.images.top' must be \(H, W, 3\)"):
            client.infer(request(**{"observation.images.top": np.zeros((5, 5), np.uint8)}))
        with pytest.raises(RuntimeError, match=r"state has shape \(7,\), the policy expects \(4,\)"):
            client.infer(request(**{"observation.state": np.zeros(7, np.float32)}))
        with pytest.raises(RuntimeError, match="send 'task'"):
            client.infer(request(task=None))
        assert client.infer(request())["actions"].shape == (8, 4)


def test_openpi_style_keys_and_channel_first_images(server):
    obs = {"observation/image": smooth_frame(0, 0, 0).transpose(2, 0, 1),  # mapped to camera "top", CHW
           "images": {"left": smooth_frame(0, 0, 1), "right": smooth_frame(0, 0, 2).astype(np.float32) / 255},
           "observation/state": np.zeros(4, np.float32), "prompt": "close the drawer", "return_video": True}
    with PolicyClient("127.0.0.1", server.port) as client:
        reply = client.infer(obs)
    assert reply["actions"].shape == (8, 4) and reply["video"].shape == (2, 32, 32, 3)


def test_two_clients_at_once(server):
    replies = {}

    def work(name):
        with PolicyClient("127.0.0.1", server.port) as client:
            replies[name] = [client.infer(request())["actions"].shape for _ in range(3)]

    threads = [threading.Thread(target=work, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert replies == {"a": [(8, 4)] * 3, "b": [(8, 4)] * 3}


def test_health_check(server):
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=10) as response:
        assert response.status == 200 and response.read() == b"ok\n"


def test_broker_requests_a_chunk_every_k_steps():
    class CountingClient:
        calls = 0

        def infer(self, observation):
            self.calls += 1
            return {"actions": np.arange(8 * 2, dtype=np.float32).reshape(8, 2) + 100 * self.calls}

    client = CountingClient()
    broker = ActionChunkBroker(client, execute_steps=3)
    actions = [broker.act({}) for _ in range(7)]
    assert client.calls == 3
    assert [a[0] for a in actions] == [100, 102, 104, 200, 202, 204, 300]


def test_msgpack_numpy_speaks_openpis_wire_format():
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    raw = msgpack.unpackb(msgpack_numpy.packb({"actions": array}), raw=True)
    assert raw[b"actions"][b"__ndarray__"] is True and raw[b"actions"][b"dtype"] == b"<f4"
    assert raw[b"actions"][b"shape"] == [2, 3]
    # str keys (other clients) decode as well as bytes keys (openpi)
    packed = msgpack.packb({"x": {"__ndarray__": True, "data": array.tobytes(), "dtype": "<f4", "shape": [2, 3]}})
    assert np.array_equal(msgpack_numpy.unpackb(packed)["x"], array)
    assert msgpack_numpy.unpackb(msgpack_numpy.packb({"n": np.int64(3)}))["n"] == 3


def test_a_key_map_to_a_camera_the_policy_lacks_is_refused_at_start(checkpoint):
    with pytest.raises(ValueError, match=r"renames to \['wrist'\], which this policy does not read"):
        PolicyServer(Predictor.from_checkpoint(checkpoint), key_map={"observation/image": "wrist"})
    # a full LeRobot key names the camera as well as its bare name does
    PolicyServer(Predictor.from_checkpoint(checkpoint), key_map={"observation/image": "observation.images.top"})
