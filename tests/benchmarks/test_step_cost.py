"""The training-step benchmark's language-model workloads and AdamW methods (issue 30's step
cost): the LoRA workload trains the adapters only, with the frozen base weights an argument
of the compiled step; the ratios are taken to AdamW when Adam does not run. No timing is
asserted."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from benchmarks import models, step_cost
from experiments.lm import model as M


def test_lm_lora_workload_trains_the_adapters_and_takes_the_base_as_input():
    w = models.make_workload("lm_lora", batch_size=2)
    reference = M.with_lora(M.make_model(M.LMConfig.named("small"), 0), 8, seed=1)
    assert jax.tree.structure(w.params) == jax.tree.structure(
        nnx.to_pure_dict(nnx.state(reference, nnx.LoRAParam))
    )
    assert sum(x.size for x in jax.tree.leaves(w.params)) == M.param_count(reference, nnx.LoRAParam)
    rest, windows = w.batch
    assert windows.shape == (2, 129)
    loss = w.loss_fn(w.params, w.batch)
    # The frozen weights are read from the batch (an argument), not closed over.
    zeroed = jax.tree.map(jnp.zeros_like, rest)
    assert float(w.loss_fn(w.params, (zeroed, windows))) != pytest.approx(float(loss))
    assert "batch 2" in w.description


def test_lm_full_workload_trains_every_parameter():
    w = models.make_workload("lm_full", batch_size=2)
    assert sum(x.size for x in jax.tree.leaves(w.params)) == 842_496
    assert jnp.isfinite(w.loss_fn(w.params, w.batch))


def test_ratios_are_to_adamw_when_adam_does_not_run():
    methods = ["adamw", "profit_adamw_sgd_n1", "profit_adamw_auto_n1"]
    res = step_cost.run(["lm_lora"], methods, rounds=1, batch_size=2, time_budget_s=None)
    assert res["baseline"] == "adamw"
    timing = res["workloads"][0]["timing"]
    assert timing["adamw"]["ratio_median"] == 1.0
    assert timing["calls_per_block"] == 2  # PROFIT's whole cycles
    analysis = res["workloads"][0]["memory_analysis"]
    # PROFIT's θ_ref: one more copy of the 73,728 adapters (fp32) among the step's arguments.
    extra = (
        analysis["profit_adamw_sgd_n1"]["argument_size_in_bytes"]
        - analysis["adamw"]["argument_size_in_bytes"]
    )
    assert 4 * 73_728 <= extra < 4 * 73_728 + 1024
    assert "ratio to AdamW (median)" in step_cost.markdown(res)


def test_baseline_and_unknown_methods():
    assert step_cost.baseline_of(["profit_sgd_n1", "adam", "adamw"]) == "adam"
    assert step_cost.baseline_of(["profit_adamw_sgd_n1", "adamw"]) == "adamw"
    with pytest.raises(ValueError, match=r"unknown methods.*'nope'"):
        step_cost.method_specs(["adamw", "nope"])
