"""What sharded PROFIT communicates: the HLO collective counter, and PROFIT vs Adam under FSDP.

The first tests check ``benchmarks.hlo`` on hand-written HLO. The last ones
compile a full FSDP training step on 8 simulated CPU devices (``benchmarks.collectives``,
in a child process) for Adam and for PROFIT around the same Adam, on
Explicit and Auto mesh axes, and assert that PROFIT adds nothing but scalar
all-reduces (its global ⟨g,Δ⟩, ‖Δ‖², ‖g‖², and ‖u‖² for the automatic
reference step): never a parameter-sized collective.
"""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest

from benchmarks import hlo

# ----------------------------------------------------------------------------
# The parser, on hand-written HLO.

_ASYNC_COND_WHILE = """
HloModule m

%add (a: f32[], b: f32[]) -> f32[] {
  %a = f32[] parameter(0)
  %b = f32[] parameter(1)
  ROOT %s = f32[] add(f32[] %a, f32[] %b)
}

%inner (p: f32[4]) -> f32[] {
  %p = f32[4]{0} parameter(0)
  %r = f32[] reduce(%p, %c), dimensions={0}, to_apply=%add
  ROOT %ar = f32[] all-reduce(%r), replica_groups=mesh['x'=2,'y'=4] {'y'}, to_apply=%add
}

%branch_true (t: f32[4]) -> f32[] {
  %t = f32[4]{0} parameter(0)
  ROOT %call = f32[] call(%t), to_apply=%inner
}

%branch_false (t: f32[4]) -> f32[] {
  %t = f32[4]{0} parameter(0)
  ROOT %z = f32[] constant(0)
}

%body (w: (s32[], f32[16])) -> (s32[], f32[16]) {
  %w = (s32[], f32[16]{0}) parameter(0)
  %x = f32[16]{0} get-tuple-element(%w), index=1
  %cp = f32[16]{0} collective-permute(%x), source_target_pairs={{0,1},{1,0}}
  %i = s32[] get-tuple-element(%w), index=0
  ROOT %tup = (s32[], f32[16]{0}) tuple(%i, %cp)
}

%cond (w: (s32[], f32[16])) -> pred[] {
  %w = (s32[], f32[16]{0}) parameter(0)
  ROOT %k = pred[] constant(false)
}

ENTRY %main (p0: f32[4], p1: bf16[2,8], pr: pred[]) -> f32[] {
  %p0 = f32[4]{0} parameter(0)
  %p1 = bf16[2,8]{1,0} parameter(1)
  %pr = pred[] parameter(2)
  %ags = (bf16[2,8]{1,0}, bf16[16,8]{1,0}) all-gather-start(%p1), replica_groups=[1,8]<=[8], dimensions={0}
  %agd = bf16[16,8]{1,0} all-gather-done(%ags)
  %rs = f32[1]{0} reduce-scatter(%p0), replica_groups={{0,1,2,3},{4,5,6,7}}, dimensions={0}, to_apply=%add
  %cnd = f32[] conditional(%pr, %p0, %p0), true_computation=%branch_true, false_computation=%branch_false
  %init = (s32[], f32[16]{0}) tuple(%i0, %x0)
  %loop = (s32[], f32[16]{0}) while(%init), condition=%cond, body=%body
  ROOT %out = f32[] add(%cnd, %cnd)
}
"""  # noqa: E501


def test_parser_folds_async_pairs_and_finds_control_flow():
    colls = {c.kind: c for c in hlo.collectives(_ASYNC_COND_WHILE, num_devices=8)}
    assert sorted(colls) == ["all-gather", "all-reduce", "collective-permute", "reduce-scatter"]

    ag = colls["all-gather"]  # one entry for the -start/-done pair, result from the -done
    assert (ag.name, ag.operand_shapes, ag.result_shapes) == (
        "ags",
        (("bf16", (2, 8)),),
        (("bf16", (16, 8)),),
    )
    assert ag.payload_bytes == 16 * 8 * 2 and ag.group_size == 8
    assert not ag.conditional and not ag.in_loop

    ar = colls["all-reduce"]  # in a computation called from a conditional branch
    assert ar.conditional and not ar.in_loop and ar.computation == "inner"
    assert ar.group_size == 4 and ar.payload_bytes == 4

    rs = colls["reduce-scatter"]
    assert rs.group_size == 4 and rs.payload_bytes == 16 and rs.result_shapes == (("f32", (1,)),)
    assert rs.traffic_bytes() == pytest.approx(3 / 4 * 16)

    cp = colls["collective-permute"]
    assert cp.in_loop and not cp.conditional and cp.payload_bytes == 64


def test_traffic_model_and_summary():
    text = """
ENTRY %main (p: f32[1024]) -> f32[1024] {
  %p = f32[1024]{0} parameter(0)
  %q = f32[] parameter(1)
  ROOT %ar = (f32[1024]{0}, f32[]) all-reduce(%p, %q), replica_groups=[1,4]<=[4], to_apply=%add
}
"""
    (ar,) = hlo.collectives(text)
    assert ar.buffers == (("f32", (1024,)), ("f32", ()))
    assert ar.payload_bytes == 4100
    assert ar.traffic_bytes() == pytest.approx(2 * 3 / 4 * 4100)
    assert hlo.summarize([ar]) == {"all-reduce": {"ops": 1, "buffers": 2, "payload_bytes": 4100}}


def test_buffer_multiset_sees_through_combining():
    combined = """
ENTRY %main (a: f32[8], b: f32[]) -> f32[8] {
  %a = f32[8]{0} parameter(0)
  %b = f32[] parameter(1)
  ROOT %ar = (f32[8]{0}, f32[]) all-reduce(%a, %b), replica_groups={{0,1}}, to_apply=%add
}
"""
    separate = """
ENTRY %main (a: f32[8]) -> f32[8] {
  %a = f32[8]{0} parameter(0)
  ROOT %ar = f32[8]{0} all-reduce(%a), replica_groups={{0,1}}, to_apply=%add
}
"""
    extra = hlo.buffer_multiset(hlo.collectives(combined)) - hlo.buffer_multiset(
        hlo.collectives(separate)
    )
    assert extra == Counter({("all-reduce", False, "f32", ()): 1})


def test_parser_on_a_real_compiled_program():
    """A one-device program has no collectives; the parser must not invent any."""
    import jax
    import jax.numpy as jnp

    text = hlo.compiled_text(jax.jit(lambda x: jnp.sum(x * x)).lower(jnp.ones(8)).compile())
    assert "ENTRY" in text
    assert hlo.collectives(text) == []


# ----------------------------------------------------------------------------
# PROFIT vs Adam on an 8-device FSDP mesh (subprocess).

CONFIGS = ("profit", "profit_auto", "profit_per_tensor")
DEPTH = 3
MAX_SCALAR_BYTES = 64


@pytest.fixture(scope="module")
def fsdp_counts(tmp_path_factory):
    from benchmarks import collectives

    out = tmp_path_factory.mktemp("collectives") / "counts.json"
    # Runs in a child process on 8 simulated CPU devices (this one has fewer).
    collectives.main(
        [
            "--devices=8",
            "--width=64",
            f"--depth={DEPTH}",
            "--configs=" + ",".join(("adam", *CONFIGS)),
            f"--json={out}",
        ]
    )
    return json.loads(out.read_text())


AXIS_TYPES = ("Explicit", "Auto")


@pytest.mark.multidevice
@pytest.mark.slow
@pytest.mark.parametrize("axis_type", AXIS_TYPES)
def test_adam_baseline_is_fsdp(fsdp_counts, axis_type):
    """Guards the comparison: the counter sees FSDP's parameter-sized collectives."""
    adam = fsdp_counts["results"][axis_type]["adam"]
    assert "error" not in adam
    summary = adam["dynamic"]["summary"]
    assert summary["all-gather"]["ops"] >= DEPTH  # every sharded weight gathered
    n_bytes = 4 * fsdp_counts["n_params"]
    gathered_or_reduced = sum(v["payload_bytes"] for v in summary.values())
    assert gathered_or_reduced >= n_bytes  # weights gathered, gradients reduced


@pytest.mark.multidevice
@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("axis_type", AXIS_TYPES)
def test_profit_adds_only_scalar_all_reduces(fsdp_counts, axis_type, config):
    res = fsdp_counts["results"][axis_type][config]
    assert "error" not in res, res.get("error")
    n_leaves = fsdp_counts["n_leaves"]
    # ‖g‖² per leaf on reference calls; ⟨g,Δ⟩, ‖Δ‖², ‖g‖² (+ ‖u‖²) per leaf on main calls.
    per_leaf = {"reference": 1, "main": 4 if config == "profit_auto" else 3}
    for phase in ("dynamic", "reference", "main"):
        r = res[phase]
        assert r["missing_buffers"] == [], (phase, r["missing_buffers"])
        sizes = [
            math.prod(dims) * hlo.dtype_bytes(dtype) for _, _, dtype, dims, _ in r["extra_buffers"]
        ]
        offending = [
            b
            for b, size in zip(r["extra_buffers"], sizes, strict=True)
            if b[0] != "all-reduce" or size > MAX_SCALAR_BYTES
        ]
        assert offending == [], (phase, "PROFIT adds collectives beyond scalar all-reduces")
        n_extra = sum(b[-1] for b in r["extra_buffers"])
        bound = n_leaves * (per_leaf["reference"] + per_leaf["main"])
        assert n_extra <= (bound if phase == "dynamic" else n_leaves * per_leaf[phase]), (
            phase,
            n_extra,
        )
    # The program that runs: at most one extra all-reduce per conditional branch
    # (reference ‖g‖², main-phase sums; ‖u‖² for the automatic reference step).
    extra_ops = res["dynamic"]["extra_ops"]
    assert set(extra_ops) <= {"all-reduce"}, extra_ops
    assert extra_ops.get("all-reduce", 0) <= (3 if config == "profit_auto" else 2), extra_ops
