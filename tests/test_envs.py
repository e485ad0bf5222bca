"""Environment settings and the registry, without a simulator: names, checks, the recording file and its older forms."""

import json

import pytest
from helpers import write_dataset

from gigaworld_policy.envs.metaworld import LEGACY_FILE, MetaWorldSettings
from gigaworld_policy.envs.recording import RECORDING_FILE, Recording, read_recording
from gigaworld_policy.envs.registry import environment, name_of, settings_from_dict, settings_to_dict


def test_settings_round_trip_through_json():
    settings = MetaWorldSettings(cameras=("corner", "topview"), image_size=(32, 48), fps=5, goal_marker_radius=0.05,
                                 observe_goal=True, action_noise=0.5, action_noise_correlation=0.9)
    assert settings_from_dict("metaworld", json.loads(json.dumps(settings_to_dict(settings)))) == settings
    assert name_of(settings) == "metaworld" and environment("metaworld").settings is MetaWorldSettings
    assert settings.state_names == ("x", "y", "z", "gripper", "goal_x", "goal_y", "goal_z")
    assert settings_from_dict("metaworld", {}) == MetaWorldSettings()  # a setting left out takes its default


def test_an_unknown_environment_or_setting_is_a_sentence():
    with pytest.raises(ValueError, match=r"unknown environment 'metaworl' \(did you mean 'metaworld'\?\); the "
                                         r"registered ones are \['metaworld', 'aloha'\]"):
        environment("metaworl")
    with pytest.raises(ValueError, match=r"the settings: unknown metaworld setting 'observe_gaol' \(did you mean "
                                         r"'observe_goal'\?\); MetaWorldSettings has \['cameras', "):
        settings_from_dict("metaworld", {"observe_gaol": True})
    with pytest.raises(ValueError, match="must be an object of MetaWorldSettings fields, got list"):
        settings_from_dict("metaworld", [1, 2])
    with pytest.raises(ValueError, match="is the settings class of no registered environment"):
        name_of(Recording)


@pytest.mark.parametrize(("changes", "expected"), [
    ({"cameras": ("corner", "cornr")}, r"unknown camera 'cornr' \(did you mean 'corner'\?\); Meta-World has \["),
    ({"cameras": ()}, "no camera given; Meta-World has"),
    ({"image_size": (0, 64)}, r"image_size must be two positive whole numbers \(height, width\), got \(0, 64\)"),
    ({"fps": 0}, "fps must be a positive whole number, got 0"),
    ({"goal_marker_radius": float("nan")}, "goal_marker_radius must be a positive number of metres, got nan"),
    ({"action_noise": 0.3, "action_noise_correlation": 1.0}, r"action noise correlation must lie in \[0, 1\), got 1.0"),
    ({"action_noise": -1.0}, "action noise std must be a number >= 0, got -1.0"),
])
def test_a_bad_setting_is_refused_when_the_settings_are_made(changes, expected):
    with pytest.raises(ValueError, match=expected):
        MetaWorldSettings(**changes)
    with pytest.raises(ValueError, match="^the settings: " + expected):  # read from a file: said where
        settings_from_dict("metaworld", json.loads(json.dumps(changes)))


def test_a_dataset_no_environment_recorded_or_a_damaged_record_is_a_sentence(tmp_path):
    write_dataset(tmp_path / "data", lengths=(3,))
    with pytest.raises(ValueError, match=r"records no environment \(.*environment.json is missing\): it was not "
                                         r"recorded by `gwp collect`"):
        read_recording(tmp_path / "data")
    with pytest.raises(FileNotFoundError, match="is not a LeRobot dataset"):
        read_recording(tmp_path / "missing")
    record = tmp_path / "data" / "meta" / RECORDING_FILE
    record.write_text('{"env": "metaworld", ')  # cut short
    with pytest.raises(ValueError, match=f"{record} is not a JSON file"):
        read_recording(tmp_path / "data")
    record.write_text(json.dumps({"env": "robosuite", "settings": {}}))
    with pytest.raises(ValueError, match="unknown environment 'robosuite'"):
        read_recording(tmp_path / "data")
    record.write_text(json.dumps({"env": "metaworld", "settings": {"fps": -2}}))
    with pytest.raises(ValueError, match=f"^{record}: fps must be a positive whole number, got -2"):
        read_recording(tmp_path / "data")


def test_older_meta_world_recordings_convert_as_they_are_read(tmp_path):
    """Datasets recorded before meta/environment.json: with meta/metaworld_collection.json in each of the forms it
    had, and the first ones with nothing but info.json (the goal in the state shows as 7 state numbers)."""
    root = tmp_path / "old"
    write_dataset(root, lengths=(3,), state_dim=7, robot_type="sawyer")
    info = json.loads((root / "meta" / "info.json").read_text())
    cameras = {key: value for key, value in info["features"].items() if key.startswith("observation.images.")}
    renamed = dict(zip(cameras, ("corner", "corner2", "gripperPOV"), strict=True))
    info["features"] = {f"observation.images.{renamed[key]}" if key in renamed else key: value
                        for key, value in info["features"].items()}
    (root / "meta" / "info.json").write_text(json.dumps(info))
    first = read_recording(root)  # no settings file at all
    assert first == Recording("metaworld", MetaWorldSettings(image_size=(32, 48), observe_goal=True))

    legacy = root / "meta" / LEGACY_FILE
    # as the collections with a goal marker wrote it, before observe_goal and the action noise existed
    legacy.write_text(json.dumps({"tasks": ["reach-v3"], "episodes": 3, "cameras": ["corner", "gripperPOV"],
                                  "image_size": [32, 48], "seed": 4, "max_steps": 500, "goal_marker_radius": 0.05,
                                  "experts": {"reach-v3": {"expert_success_rate": 1.0}}}))
    older = read_recording(root)
    assert older.settings == MetaWorldSettings(cameras=("corner", "gripperPOV"), image_size=(32, 48),
                                               goal_marker_radius=0.05, observe_goal=True)
    assert (older.tasks, older.episodes, older.seed, older.max_steps) == (("reach-v3",), 3, 4, 500)
    legacy.write_text(json.dumps({**json.loads(legacy.read_text()), "observe_goal": False, "action_noise": 0.5,
                                  "action_noise_correlation": 0.9}))
    newer = read_recording(root).settings
    assert (newer.observe_goal, newer.action_noise, newer.action_noise_correlation) == (False, 0.5, 0.9)
    legacy.write_text("[3, true]")  # JSON, but not the settings object
    with pytest.raises(ValueError, match="holds a list: expected the settings object `collect` wrote"):
        read_recording(root)
