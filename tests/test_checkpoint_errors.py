"""Damaged checkpoints, unknown names and what killed runs leave behind: each is one sentence that names the file
(or name) and what is wrong with it, before anything runs or is written; leftovers are cleared on the next run."""

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from helpers import write_dataset

from gigaworld_policy import GigaWorldPolicy, PolicyConfig
from gigaworld_policy.atomic import clear_interrupted_writes
from gigaworld_policy.checkpoints import prune_checkpoints
from gigaworld_policy.cli import main
from gigaworld_policy.train import OptimConfig, TrainConfig, train


def truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def scramble(path: Path) -> None:
    path.write_bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0)).byte().numpy())


def cli_error(argv: list[str]) -> str:
    """The message `gwp` exits with; it must be one line."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    message = str(exit_.value.code)
    assert message.startswith("gwp: error: ") and "\n" not in message, message
    return message


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    policy = GigaWorldPolicy(PolicyConfig.preset("tiny"))
    folder = tmp_path_factory.mktemp("checkpoint") / "policy"
    policy.save_pretrained(folder, ema_state=policy.state_dict())
    return folder


@pytest.fixture
def copy(checkpoint, tmp_path) -> Path:
    return Path(shutil.copytree(checkpoint, tmp_path / "policy"))


# ---- checkpoint files --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "damage", "flags", "expected"), [
    ("model.safetensors", truncate, [], "is truncated: it has {half} bytes, its header needs at least {full}"),
    ("model.safetensors", truncate, ["--raw-weights"], "is truncated"),
    ("ema.safetensors", truncate, ["--raw-weights"], "is truncated"),
    ("ema.safetensors", scramble, [], "is not a safetensors file (Error while deserializing header"),
    ("model.safetensors", scramble, [], "is not a safetensors file ("),
])
def test_a_damaged_weights_file_is_named_whichever_of_the_two_is_loaded(copy, name, damage, flags, expected):
    full = (copy / name).stat().st_size
    damage(copy / name)
    message = cli_error(["eval-open-loop", "--checkpoint", str(copy), "--dataset", "unused", *flags])
    assert f"{copy / name} {expected.format(full=full, half=full // 2)}" in message


def test_gwp_eval_refuses_a_truncated_model_file_though_it_runs_the_ema(copy):
    truncate(copy / "model.safetensors")
    message = cli_error(["eval", "metaworld", "--checkpoint", str(copy), "--tasks", "reach-v3", "--out",
                         str(copy / "eval")])
    assert f"{copy / 'model.safetensors'} is truncated" in message
    assert not (copy / "eval").exists()


def test_an_unknown_config_field_is_named_with_the_file(copy):
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "chunk_sise": 8}))
    message = cli_error(["eval-open-loop", "--checkpoint", str(copy), "--dataset", "unused"])
    assert f"{copy / 'config.json'}: unknown config field 'chunk_sise' (did you mean 'chunk_size'?)" in message

    nested = {**config, "transformer": {**config["transformer"], "num_layer": 1, "colour": "red"}}
    with pytest.raises(ValueError, match=r"unknown config fields 'transformer.num_layer' \(did you mean 'num_layers'\?"
                                         r"\), 'transformer.colour'; WanConfig has \['patch_size', "):
        PolicyConfig.from_dict(nested)
    with pytest.raises(ValueError, match=r"'embodiments\[0\].dof'; EmbodimentSpec has \['name', 'state_dim'"):
        PolicyConfig.from_dict({**config, "embodiments": [{"name": "arm", "state_dim": 4, "action_dim": 4, "dof": 6}]})
    (copy / "config.json").write_text('{"chunk_size": ')  # cut short
    with pytest.raises(ValueError, match=f"{copy / 'config.json'} is not a JSON file"):
        TrainConfig(policy_config=str(copy / "config.json")).policy()


def test_a_missing_processor_file_is_named_not_the_embodiment(copy):
    (copy / "processor.json").unlink()
    message = cli_error(["serve", "--checkpoint", str(copy)])
    assert message == f"gwp: error: {copy} is not a policy checkpoint: processor.json is missing"


def test_weights_of_another_shape_than_the_config_says_are_one_sentence(copy):
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "max_state_dim": config["max_state_dim"] + 1}))
    message = cli_error(["eval-open-loop", "--checkpoint", str(copy), "--dataset", "unused"])
    assert f"{copy / 'ema.safetensors'} does not hold the weights of the model its config.json describes" in message
    assert "size mismatch for state_encoder" in message


# ---- task names ---------------------------------------------------------------------------------------------------
def test_gwp_eval_checks_every_task_name_before_it_runs_one(tmp_path):
    out = tmp_path / "eval"
    message = cli_error(["eval", "metaworld", "--checkpoint", str(tmp_path / "never-read"), "--tasks", "reach-v3",
                         "no-such-task-v3", "reach-v2", "--out", str(out)])
    assert "unknown Meta-World tasks 'no-such-task-v3', 'reach-v2' (did you mean 'reach-v3'?)" in message
    assert not out.exists()  # reach-v3 did not run first


# ---- training: resume and leftovers -------------------------------------------------------------------------------
def run_config(data, out, **changes) -> TrainConfig:
    base = dict(dataset=(data,), preset="tiny", steps=2, output_dir=str(out), batch_size=4, num_workers=0,
                save_every=1, log_every=1, log_with="none", optim=OptimConfig(lr=1e-3, warmup_steps=1))
    return TrainConfig(**{**base, **changes})


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[str, Path]:
    """A dataset and a run of 2 steps with a checkpoint after each."""
    root = tmp_path_factory.mktemp("run")
    write_dataset(root / "data", lengths=(12, 10))
    train(run_config(str(root / "data"), root / "out"))
    return str(root / "data"), root / "out"


@pytest.fixture
def run(trained, tmp_path) -> Path:
    return Path(shutil.copytree(trained[1], tmp_path / "out", symlinks=True))


def listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"" for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("name", ["model.safetensors", "training_state/optimizer.bin",
                                  "training_state/random_states_0.pkl"])
def test_resume_onto_a_damaged_last_names_the_file_and_changes_nothing(trained, run, name):
    last = run / "checkpoints" / "last"
    truncate(last / name)
    before = listing(run)
    with pytest.raises(ValueError) as error:
        train(run_config(trained[0], run, steps=3, resume=True))
    message = str(error.value)
    assert message.startswith(f"cannot resume from 000002: {last.resolve() / name} ") and "\n" not in message
    assert message.endswith(f"point {last} at an earlier checkpoint (000001) to resume from there")
    assert listing(run) == before


def test_resume_without_ema_weights_says_how_to_resume(trained, run):
    (run / "checkpoints" / "000002" / "ema.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="ema.safetensors is missing .*: resume with --ema-decay 0"):
        train(run_config(trained[0], run, steps=3, resume=True))


def test_a_resumed_run_clears_what_killed_checkpoint_writes_left(trained, run):
    checkpoints = run / "checkpoints"
    (checkpoints / ".000003.tmp-k1ll3d00" / "training_state").mkdir(parents=True)  # killed inside atomic_directory
    (checkpoints / ".000003.staging" / "training_state").mkdir(parents=True)  # killed before it
    (checkpoints / ".last.tmp").symlink_to("000003")  # killed while re-pointing last
    (run / ".metrics.jsonl.tmp").write_text("")  # killed while trimming the log
    with (run / "metrics.jsonl").open("a") as log:
        log.write('{"step": 3, "train/lo')  # killed while logging a step that never reached a checkpoint
    train(run_config(trained[0], run, steps=3, resume=True))
    assert sorted(p.name for p in checkpoints.iterdir()) == ["000001", "000002", "000003", "last"]
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").open()] == [1, 2, 3]


def test_a_resumed_run_keeps_only_keep_checkpoints_even_when_it_saves_none(trained, run):
    train(run_config(trained[0], run, steps=2, resume=True, keep_checkpoints=1))  # nothing left to train
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["000002", "last"]


def test_checkpoints_are_pruned_by_step_and_never_the_last_one(tmp_path):
    for name in ("999998", "999999", "1000000"):
        (tmp_path / name).mkdir()
    (tmp_path / "last").symlink_to("1000000")
    prune_checkpoints(tmp_path, keep=2)  # by name, "1000000" would sort first and go
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1000000", "999999", "last"]
    (tmp_path / "last").unlink()
    (tmp_path / "last").symlink_to("999999")  # pointed back by hand, to resume from there
    prune_checkpoints(tmp_path, keep=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1000000", "999999", "last"]


def test_clearing_interrupted_writes_puts_back_a_folder_moved_aside(tmp_path):
    (tmp_path / ".data.old-ab12cd34" / "data").mkdir(parents=True)  # killed between atomic_directory's two renames
    (tmp_path / ".data.old-ab12cd34" / "data" / "kept").write_text("the only copy")
    (tmp_path / ".data.tmp-ef56gh78").mkdir()  # the new version, never renamed into place
    (tmp_path / ".done.old-ij90kl12" / "done").mkdir(parents=True)  # killed after both renames: done is the new one
    (tmp_path / "done").mkdir()
    (tmp_path / ".notes.txt.tmp").write_text("half")  # write_text_atomically
    (tmp_path / ".gitignore").write_text("*")  # not ours
    (tmp_path / ".data.writing-123-x").mkdir()  # another writer's temporary (remove_folders_of_dead_writers)
    cleared = clear_interrupted_writes(tmp_path)
    assert cleared == [".data.old-ab12cd34", ".data.tmp-ef56gh78", ".done.old-ij90kl12", ".notes.txt.tmp"]
    assert (tmp_path / "data" / "kept").read_text() == "the only copy"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".data.writing-123-x", ".gitignore", "data", "done"]


def test_saved_weights_are_as_readable_as_the_other_files(tmp_path):
    """safetensors alone writes its files 0600: a checkpoint shared on a cluster would be unreadable to the group."""
    GigaWorldPolicy(PolicyConfig.preset("tiny")).save_pretrained(tmp_path / "policy", ema_state={})
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "policy").iterdir()}
    assert modes["model.safetensors"] == modes["ema.safetensors"] == modes["config.json"], modes


def test_eval_without_a_dataset_needs_a_checkpoint_that_records_its_environment(checkpoint, copy):
    message = cli_error(["eval", "--checkpoint", str(checkpoint)])
    assert "records no environment (environments.json is missing" in message and "--dataset" in message
    recording = {"env": "metaworld", "settings": {"cameras": ["corner"]}, "tasks": ["reach-v3"]}
    (copy / "environments.json").write_text(json.dumps({"sawyer": recording, "aloha": {"env": "aloha"}}))
    assert "choose one with --embodiment" in cli_error(["eval", "--checkpoint", str(copy)])
    assert "not 'ur5'" in cli_error(["eval", "--checkpoint", str(copy), "--embodiment", "ur5"])
    (copy / "environments.json").write_text(json.dumps({"sawyer": {**recording, "settings": {"cameras": ["cornr"]}}}))
    assert "environments.json" in cli_error(["eval", "--checkpoint", str(copy)])  # a bad record names its file
