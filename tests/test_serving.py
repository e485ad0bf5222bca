"""Policy server: openpi protocol round trips, error replies, limits, concurrency, health check; client and broker."""

import logging
import re
import threading
import time
import urllib.request
from collections import OrderedDict

import msgpack
import numpy as np
import pytest
import torch
from helpers import CAMERAS, smooth_frame, write_dataset
from websockets.exceptions import ConnectionClosedError

from gigaworld_policy.envs.base import Observation
from gigaworld_policy.inference import Predictor
from gigaworld_policy.serving import msgpack_numpy
from gigaworld_policy.serving.client import ActionChunkBroker, PolicyClient
from gigaworld_policy.serving.server import PolicyServer, serve_in_background
from gigaworld_policy.train import TrainConfig, train


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    write_dataset(root / "data", lengths=(12, 10))
    config = TrainConfig(dataset=(str(root / "data"),), preset="tiny", steps=2, output_dir=str(root / "run"),
                         batch_size=2, num_workers=0, log_with="none")
    return train(config).checkpoint


MAX_MESSAGE_BYTES, MAX_INSTRUCTION_CHARS = 2**16, 100  # small, so the tests of the limits stay fast


@pytest.fixture(scope="module")
def predictor(checkpoint):
    return Predictor.from_checkpoint(checkpoint)


@pytest.fixture(scope="module")
def server(predictor):
    server = PolicyServer(predictor, "127.0.0.1", 0, key_map={"observation/image": "top"},
                          max_message_bytes=MAX_MESSAGE_BYTES, max_instruction_chars=MAX_INSTRUCTION_CHARS)
    with serve_in_background(server):
        yield server


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
    expected = predictor.processor.action.unnormalize(normalized[0]).numpy()
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
        huge = np.full(4, np.finfo(np.float32).max, np.float32)  # finite, but not once normalised
        with pytest.raises(RuntimeError, match=r"actions for this observation are not finite \(its state, normalised, "
                                               r"reaches \|x\| = 2\.\d+e\+38"):
            client.infer(request(**{"observation.state": huge}))
        without_task = request()
        del without_task["task"]
        with pytest.raises(RuntimeError, match="missing the instruction: send 'task'"):
            client.infer(without_task)
        assert client.infer(request())["actions"].shape == (8, 4)


def test_openpi_style_keys_and_channel_first_images(server):
    obs = {"observation/image": smooth_frame(0, 0, 0).transpose(2, 0, 1),  # mapped to camera "top", CHW
           "images": {"left": smooth_frame(0, 0, 1), "right": smooth_frame(0, 0, 2).astype(np.float32) / 255,
                      "wrist": "a camera the policy does not read"},
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


def test_a_key_map_to_a_camera_the_policy_lacks_is_refused_at_start(predictor):
    with pytest.raises(ValueError, match=r"renames to \['wrist'\], which this policy does not read"):
        PolicyServer(predictor, key_map={"observation/image": "wrist"})
    # a full LeRobot key names the camera as well as its bare name does
    PolicyServer(predictor, key_map={"observation/image": "observation.images.top"})


def test_metadata_announces_the_limits(server):
    with PolicyClient("127.0.0.1", server.port) as client:
        assert client.metadata["max_message_bytes"] == MAX_MESSAGE_BYTES
        assert client.metadata["max_instruction_chars"] == MAX_INSTRUCTION_CHARS


def test_a_message_over_the_limit_closes_only_its_own_connection(server, caplog):
    with PolicyClient("127.0.0.1", server.port) as bystander, PolicyClient("127.0.0.1", server.port) as client:
        with pytest.raises(ConnectionClosedError) as closed:
            client.send_raw(b"\x00" * (MAX_MESSAGE_BYTES + 1))
        assert closed.value.rcvd.code == 1009  # websockets' "message too big"
        assert bystander.infer(request())["actions"].shape == (8, 4)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]  # expected: no traceback
    with PolicyClient("127.0.0.1", server.port) as client:
        too_big = request(**{"observation.images.top": np.zeros((200, 200, 3), np.uint8)})  # 120 kB
        refused = f"packs to 1[0-9,]+ bytes; the server takes at most {MAX_MESSAGE_BYTES:,}"
        with pytest.raises(ValueError, match=refused):
            client.infer(too_big)  # refused before it is sent: the connection stays usable
        assert client.infer(request())["actions"].shape == (8, 4)


def test_an_instruction_over_the_limit_is_refused(server):
    with PolicyClient("127.0.0.1", server.port) as client:
        with pytest.raises(RuntimeError, match="instruction is 101 characters long; this server takes at most 100"):
            client.infer(request(task="x" * (MAX_INSTRUCTION_CHARS + 1)))
        assert client.infer(request(task="x" * MAX_INSTRUCTION_CHARS))["actions"].shape == (8, 4)


def test_a_bad_request_is_answered_while_another_client_holds_the_policy(server, monkeypatch):
    """Checks run before a request waits for inference, so a malformed request never queues behind (or holds up)
    another client's."""
    entered, release = threading.Event(), threading.Event()
    predict = server.predictor.predict_batch

    def slow_predict(*args, **kwargs):
        entered.set()
        assert release.wait(30)
        return predict(*args, **kwargs)

    monkeypatch.setattr(server.predictor, "predict_batch", slow_predict)
    replies = {}

    def busy_client():
        with PolicyClient("127.0.0.1", server.port) as client:
            replies["busy"] = client.infer(request())

    thread = threading.Thread(target=busy_client)
    thread.start()
    try:
        assert entered.wait(30)
        with PolicyClient("127.0.0.1", server.port, timeout=10) as client:
            assert "takes at most 100" in client.send_raw(msgpack_numpy.packb(request(task="x" * 10**4)))["error"]
            assert "[0, 1]" in client.send_raw(msgpack_numpy.packb(request(**{
                "observation.images.top": np.full((32, 48, 3), 255.0, np.float32)})))["error"]
            assert "the policy expects (4,)" in client.send_raw(msgpack_numpy.packb(request(**{
                "observation.state": np.zeros(7, np.float32)})))["error"]
    finally:
        release.set()
        thread.join(30)
    assert replies["busy"]["actions"].shape == (8, 4)


MALFORMED = {  # what a client sent -> the sentence it gets back
    "float image in 0..255": ({"observation.images.top": np.full((32, 48, 3), 200.0, np.float32)},
                              r"float image 'observation.images.top' must be in \[0, 1\], got values in \[200, 200\]"),
    "empty image": ({"observation.images.top": np.zeros((0, 48, 3), np.uint8)},
                    r"image 'observation.images.top' has no pixels: shape \(0, 48, 3\)"),
    "empty channel-first image": ({"observation.images.top": np.zeros((3, 32, 0), np.uint8)}, "has no pixels"),
    "return_video 'yes'": ({"return_video": "yes"}, r"'return_video' must be true or false, got str 'yes'"),
    "return_video 'false'": ({"return_video": "false"}, "'return_video' must be true or false, got str 'false'"),
    "return_video {}": ({"return_video": {}}, "'return_video' must be true or false, got a map"),
    "return_video 1": ({"return_video": 1}, "'return_video' must be true or false, got int 1"),
    "complex state": ({"observation.state": np.array([1 + 2j, 0, 0, 0])}, "state must be real numbers, got complex"),
    "state as a map": ({"observation.state": {"x": 1.0}}, "state must be a list or 1-D array of numbers, got a map"),
    "state holding None": ({"observation.state": [0, 0, 0, None]},
                           r"state must be a flat list of numbers, got \[0, 0, 0, None\]"),
    "state beyond float32": ({"observation.state": [1e39, 0.0, 0.0, 0.0]},
                             r"state must be finite float32 numbers \(\|x\| <= 3.4e\+38\), got 1e\+39 at index 0"),
    "NaN state": ({"observation.state": [0.0, float("nan"), 0.0, 0.0]}, "got nan at index 1"),
    "2-D state": ({"observation.state": np.zeros((2, 2), np.float32)}, r"state must be 1-D, got shape \(2, 2\)"),
    "task of the wrong type": ({"task": 5}, "the instruction 'task' must be a string, got int 5"),
    "task None": ({"task": None}, "the instruction 'task' must be a string, got None"),
    "non-string key": ({7: "seven"}, "request keys must be strings, got int 7"),
    "non-string image key": ({"images": {1: np.zeros((32, 48, 3), np.uint8)}},
                             "'images' keys must be strings, got int 1"),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_each_malformed_request_gets_its_own_sentence_and_no_traceback(server, caplog, name):
    changes, expected = MALFORMED[name]
    with caplog.at_level(logging.INFO), PolicyClient("127.0.0.1", server.port) as client:
        error = client.send_raw(msgpack_numpy.packb({**request(), **changes}))["error"]
        assert client.infer(request())["actions"].shape == (8, 4)  # the connection keeps working
    assert re.search(expected, error), error
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


def test_malformed_msgpack_gets_a_sentence(server):
    bad_array = {"x": {b"__ndarray__": True, b"data": b"\0" * 3, b"dtype": "<f4", b"shape": [2]}}
    cases = {
        msgpack.packb(bad_array): r"array of dtype <f4 and shape \[2\] needs 8 bytes of data, got 3",
        msgpack.packb({"x": {"__ndarray__": True, "data": b"", "dtype": "|O", "shape": [0]}}):
            "array dtype must name a number type such as '<f4' or '|u1', got '|O'",
        msgpack.packb({"x": {"__ndarray__": True, "data": b"", "dtype": "<f4", "shape": [-1]}}):
            r"array 'shape' must be a list of at most 32 sizes >= 0, got \[-1\]",
        msgpack.packb({"x": {"__npgeneric__": True, "data": 1000, "dtype": "|i1"}}):
            "a numpy scalar of dtype |i1 needs a number that fits it, got 1000",
        b"\x81\x92\x01\x02\x03": "map keys must be strings \\(or numbers\\), got a list",  # {[1, 2]: 3}
        b"\x81\xc4\x01\xff\x01": r"map key b'\\xff' is not UTF-8 text",
        b"\x91" * 5000 + b"\x01": "not valid msgpack: maps and arrays are nested too deeply",
        b"\x92\x01": "not valid msgpack: Unpack failed: incomplete input",
    }
    with PolicyClient("127.0.0.1", server.port) as client:
        for message, expected in cases.items():
            error = client.send_raw(message)["error"]
            assert error.startswith("cannot decode the request: ") and re.search(expected, error), error


def test_a_message_of_too_many_list_and_map_elements_is_refused():
    """Millions of tiny objects would hold the GIL while they decode: refused early, whether in one list or many."""
    with pytest.raises(ValueError, match="at most 50 list and map elements in all, got a list of 51; send arrays as"):
        msgpack_numpy.unpackb(msgpack.packb([0] * 51), max_items=50)
    with pytest.raises(ValueError, match="at most 50 list and map elements in all, got a map of 51"):
        msgpack_numpy.unpackb(msgpack.packb({str(i): i for i in range(51)}), max_items=50)
    with pytest.raises(ValueError, match="at most 50 list and map elements in all, got more"):
        msgpack_numpy.unpackb(msgpack.packb([[0] * 10] * 5), max_items=50)  # 5 x 10 + 5
    assert msgpack_numpy.unpackb(msgpack.packb([[0] * 9] * 5), max_items=50) == [[0] * 9] * 5


@pytest.mark.parametrize("bug", [ZeroDivisionError, ValueError])  # a ValueError past the request's checks is ours
def test_an_internal_error_is_logged_and_not_sent_to_the_client(server, monkeypatch, caplog, bug):
    def broken(*args, **kwargs):
        raise bug("deep inside")

    monkeypatch.setattr(server.predictor, "predict_batch", broken)
    with PolicyClient("127.0.0.1", server.port) as client:
        error = client.send_raw(msgpack_numpy.packb(request()))["error"]
    assert error.startswith("internal error of the policy server") and "deep inside" not in error
    assert any(r.exc_info and r.exc_info[0] is bug for r in caplog.records)


def test_the_instruction_cache_keeps_the_recently_used_within_its_budget(predictor, monkeypatch):
    encoder = predictor.policy.text_encoder
    first, _ = encoder(["instruction 0"])
    entry = encoder.cache["instruction 0"].nbytes
    monkeypatch.setattr(encoder, "cache_bytes", 3 * entry)  # the same short instructions take equal room
    monkeypatch.setattr(encoder, "cache", OrderedDict(encoder.cache))
    for i in range(1, 40):
        encoder([f"instruction {i % 10}", "instruction 0"])  # 0 stays in use, so it stays in the cache
    assert sum(t.nbytes for t in encoder.cache.values()) <= 3 * entry
    assert list(encoder.cache) == ["instruction 8", "instruction 0", "instruction 9"]  # least recently used first
    again, _ = encoder(["instruction 5", "instruction 0"])  # evicted ones encode again, the same
    assert torch.allclose(again[1], first[0])


def test_a_policy_without_real_time_chunking_refuses_an_action_prefix(server):
    with PolicyClient("127.0.0.1", server.port) as client:
        assert client.metadata["action_prefix"] == {"supported": False, "max_steps": 0}
        with pytest.raises(RuntimeError, match="does not take an 'action_prefix'"):
            client.infer(request(action_prefix=np.zeros((2, 4), np.float32)))
        # a prefix of no steps (nothing runs while the request is served) is no prefix
        assert client.infer(request(action_prefix=np.zeros((0, 4), np.float32)))["actions"].shape == (8, 4)


def test_an_action_prefix_in_robot_units_starts_the_served_chunk(checkpoint, tmp_path):
    data = checkpoint.parents[2] / "data"
    config = TrainConfig(dataset=(str(data),), preset="tiny", steps=2, output_dir=str(tmp_path / "rtc"), batch_size=2,
                         num_workers=0, log_with="none", action_prefix_prob=0.5)
    rtc = Predictor.from_checkpoint(train(config).checkpoint)
    prefix = np.array([[0.5, -1.0, 0.25, 2.0], [0.4, -0.9, 0.2, 1.5]], np.float32)  # 2 = d_max of a chunk of 8
    with serve_in_background(PolicyServer(rtc, "127.0.0.1", 0)) as served:
        with PolicyClient("127.0.0.1", served.port) as client:
            assert client.metadata["action_prefix"] == {"supported": True, "max_steps": 2}
            actions = client.infer(request(action_prefix=prefix))["actions"]
            assert np.allclose(actions[:2], prefix, atol=1e-5) and actions.shape == (8, 4)
            with pytest.raises(RuntimeError, match=r"action_prefix must be \(d <= 2, 4\), got \(3, 4\)"):
                client.infer(request(action_prefix=np.zeros((3, 4), np.float32)))
            with pytest.raises(RuntimeError, match="action_prefix must be finite"):
                client.infer(request(action_prefix=np.full((1, 4), np.nan, np.float32)))


@pytest.fixture
def scripted_server():
    """A websocket server that sends metadata, then answers each request with the next of `replies` (a frame, or
    ("late", frame): sent after 1 s)."""
    from websockets.sync.server import serve

    replies = []

    def handler(connection):
        connection.send(msgpack_numpy.packb({"action_horizon": 2}))
        for _ in connection:
            reply = replies.pop(0)
            if isinstance(reply, tuple):
                time.sleep(1.0)
                reply = reply[1]
            connection.send(reply)

    with serve(handler, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield server.socket.getsockname()[1], replies
        server.shutdown()


def test_the_client_says_what_an_openpi_text_frame_or_a_reply_without_actions_said(scripted_server):
    port, replies = scripted_server
    replies += ["Traceback: KeyError 'observation/image'", msgpack_numpy.packb({"server_timing": {}}),
                msgpack_numpy.packb([1, 2]), msgpack_numpy.packb({"actions": np.zeros(3, np.float32)})]
    with PolicyClient("127.0.0.1", port, timeout=10) as client:
        with pytest.raises(RuntimeError, match="policy server: Traceback: KeyError 'observation/image'"):
            client.infer({"task": "x"})
        with pytest.raises(RuntimeError, match=r"a reply with 'actions' \(H, A\), got keys \['server_timing'\]"):
            client.infer({"task": "x"})
        with pytest.raises(RuntimeError, match="expected a msgpack map, got a list"):
            client.infer({"task": "x"})
        with pytest.raises(RuntimeError, match=r"and actions of shape \(3,\)"):
            client.infer({"task": "x"})


def test_a_timed_out_request_closes_the_client_so_its_late_reply_answers_nothing(scripted_server):
    port, replies = scripted_server
    late = msgpack_numpy.packb({"actions": np.ones((2, 1), np.float32)})
    replies += [("late", late), msgpack_numpy.packb({"actions": np.zeros((2, 1), np.float32)})]
    with PolicyClient("127.0.0.1", port, timeout=0.3) as client:
        with pytest.raises(TimeoutError, match="did not reply within 0.3 s, so the connection was closed"):
            client.infer({"task": "x"})
        with pytest.raises(RuntimeError, match="make a new PolicyClient"):
            client.infer({"task": "x"})
