"""The memory plan: measured activation bytes scale bilinearly in blocks and batch as the plan assumes; the per-GPU
rows follow the precision, LoRA and FSDP; fits / does not fit."""

import dataclasses
import json

import pytest

from gigaworld_policy.cli import main
from gigaworld_policy.config import PolicyConfig
from gigaworld_policy.memory import (
    GIB,
    PlanConfig,
    measure_activations,
    plan_memory,
    saved_bytes,
    training_batch,
    training_policy,
)


def with_layers(config: PolicyConfig, layers: int) -> PolicyConfig:
    return config.replace(transformer=dataclasses.replace(config.transformer, num_layers=layers))


@pytest.mark.parametrize("plan", [
    PlanConfig(preset="tiny"),
    PlanConfig(preset="tiny", lora_rank=4, mixed_precision="bf16", gradient_checkpointing=True),
    PlanConfig(preset="tiny", mixed_precision="bf16"),
], ids=["fp32", "lora-bf16-checkpointing", "full-bf16"])
def test_measured_activations_scale_to_other_depths_and_batches_as_claimed(plan):
    config = PolicyConfig.preset("tiny")
    fitted = measure_activations(config, plan, batch=2)
    for layers, batch in ((4, 4), (3, 5)):
        direct = saved_bytes(training_policy(with_layers(config, layers), plan, "cpu"), training_batch(config, batch),
                             plan.mixed_precision)
        assert fitted.at(layers, batch) == direct
    assert fitted.per_layer_sample > 0 and fitted.per_sample > 0
    at_one = measure_activations(config, plan, batch=1)  # measured at batch 1, exact there for any depth
    deep = training_policy(with_layers(config, 4), plan, "cpu")
    assert at_one.at(4, 1) == saved_bytes(deep, training_batch(config, 1), plan.mixed_precision)


def test_blocks_on_fake_tensors_keep_exactly_the_bytes_of_a_real_run():
    config = PolicyConfig.preset("tiny")
    for plan in (PlanConfig(preset="tiny"), PlanConfig(preset="tiny", mixed_precision="bf16"),
                 PlanConfig(preset="tiny", lora_rank=4, mixed_precision="bf16", gradient_checkpointing=True)):
        policy, batch = training_policy(config, plan, "cpu"), training_batch(config, 3)
        fake = saved_bytes(policy, batch, plan.mixed_precision, fake_blocks=True)
        assert fake == saved_bytes(policy, batch, plan.mixed_precision, fake_blocks=False) > 0


def test_checkpointing_keeps_less_per_block_and_bf16_less_than_fp32():
    config = PolicyConfig.preset("tiny")
    plain = measure_activations(config, PlanConfig(preset="tiny"))
    checkpointed = measure_activations(config, PlanConfig(preset="tiny", gradient_checkpointing=True))
    assert checkpointed.per_layer_sample < plain.per_layer_sample / 2
    lora_bf16 = measure_activations(config, PlanConfig(preset="tiny", lora_rank=4, mixed_precision="bf16"))
    assert lora_bf16.per_layer_sample < plain.per_layer_sample


def test_the_plan_shards_with_fsdp_counts_lora_and_says_whether_it_fits():
    full = plan_memory(PlanConfig(preset="tiny", reserve_gib=0))
    rows, counts = full["per_gpu_bytes"], full["parameters"]
    assert counts["trained"] == counts["total"] and rows["weights"] == 4 * counts["total"]
    assert rows["optimizer"] == 2 * rows["gradients"] == 2 * rows["ema"]
    assert rows["total"] == sum(v for k, v in rows.items() if k != "total")

    sharded = plan_memory(PlanConfig(preset="tiny", fsdp=True, gpus=4, reserve_gib=0))["per_gpu_bytes"]
    assert sharded["weights"] == rows["weights"] / 4 and sharded["optimizer"] == rows["optimizer"] / 4
    assert sharded["fsdp_gathered_blocks"] > 0

    lora = plan_memory(PlanConfig(preset="tiny", lora_rank=2, mixed_precision="bf16", reserve_gib=0))
    lora_counts = lora["parameters"]
    assert 0 < lora_counts["trained"] < counts["total"] < lora_counts["total"]
    assert lora["per_gpu_bytes"]["weights"] == 2 * lora_counts["frozen"] + 4 * lora_counts["trained"]
    assert lora["per_gpu_bytes"]["optimizer"] == 8 * lora_counts["trained"]

    total_gib = rows["total"] / GIB
    assert plan_memory(PlanConfig(preset="tiny", reserve_gib=0, card_gib=2 * total_gib))["fits"]
    assert not plan_memory(PlanConfig(preset="tiny", reserve_gib=0, card_gib=total_gib / 2))["fits"]


def test_plan_memory_command_prints_json_and_refuses_bad_input(capsys):
    main(["plan-memory", "--preset", "tiny", "--lora-rank", "2", "--card-gib", "24", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert result["plan"]["lora_rank"] == 2 and result["fits"] is True
    for flags, message in ((["--preset", "tiny", "--gpus", "0"], "gpus >= 1"),
                           (["--preset", "gwp05"], "action expert")):
        with pytest.raises(SystemExit):
            main(["plan-memory", *flags])
        printed = capsys.readouterr()
        assert message in " ".join((printed.out + printed.err).split())
