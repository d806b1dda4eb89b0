"""`vilasr plan --preset tiny`: through libtpu for a TPU topology (the `test` extra installs it)
and through simulated CPU devices; bad requests fail with one line (exit 2)."""

import pytest

from stages.plan import PlanConfig, PlanStage, choose_mesh, make_plan
from tpu import topology
from vilasr.cli.main import main


def test_plan_on_simulated_cpu_devices_says_so(capsys):
    assert main(["plan", "--preset", "tiny", "--stage", "decode", "--cpu-devices", "8", "--seq", "128",
                 "--batch", "8"]) == 0
    out = capsys.readouterr().out
    assert "8 simulated CPU devices" in out and "mesh {'data': 8, 'fsdp': 1, 'tensor': 1}" in out
    assert "no estimate" in out and "arguments" in out and "decode step: 8 sequences" in out


def test_plan_without_libtpu_stands_in_simulated_devices(monkeypatch):
    monkeypatch.setattr(topology, "libtpu_available", lambda: False)
    plan = make_plan(PlanConfig(preset="tiny", stage=PlanStage.DECODE, topology="v5p-8", batch=4, seq=128))
    assert plan.target.topology is None and "libtpu is not installed" in plan.target.note
    assert plan.target.chips == 4 and plan.seconds is None and plan.estimate.argument_bytes > 0


@pytest.mark.skipif(not topology.libtpu_available(), reason="libtpu is in the `test` extra: pip install -e '.[test]'")
def test_plan_compiles_for_a_tpu_topology_through_libtpu(capsys):
    assert main(["plan", "--preset", "tiny", "--stage", "rl", "--topology", "v5p-16", "--seq", "64",
                 "--image", "56"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "TPU compiler (libtpu) for v5p-16 (v5p:2x2x2, 8 chips)" in out
    assert "fits" in out and "estimated MFU" in out and "not measurements" in out
    assert "INVALID_ARGUMENT" not in captured.err and "InitGoogle" not in captured.err   # libtpu kept quiet
    plan = make_plan(PlanConfig(preset="tiny", stage=PlanStage.DECODE, topology="v6e-8", batch=8, seq=128))
    assert plan.target.topology.chip.generation == "v6e" and plan.fits
    assert plan.seconds > 0 and plan.tokens_per_second_per_chip > 0 and plan.cache_seconds > 0


def test_decode_mesh_splits_weights_only_when_they_crowd_a_chip():
    config = PlanConfig(preset="7b", stage=PlanStage.DECODE)
    weights = 16_600_000_000
    assert choose_mesh(config, 8, weights, 95 * 10**9).tensor == 1    # v5p: whole model on each chip
    assert choose_mesh(config, 16, weights, 16 * 10**9).tensor == 8   # v5e
    assert choose_mesh(config, 16, weights, 16 * 10**9, kv_heads=4).tensor == 4   # the cache splits by heads
    assert choose_mesh(PlanConfig(stage=PlanStage.SFT), 8, weights, None).fsdp == -1


@pytest.mark.parametrize("args, message", [
    (["--topology", "v9-8"], "unknown TPU generation"),
    (["--topology", "v5p-16", "--mesh", "3,3,1"], "needs 9 devices"),
    (["--stage", "sft", "--batch", "3"], "does not split"),
    (["--preset", "13b"], "unknown preset"),
])
def test_bad_plans_fail_with_one_line(capsys, args, message):
    assert main(["plan", "--preset", "tiny", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_bad_flag_value_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["plan", "--stage", "warp"])
    assert stop.value.code == 2 and "--stage" in capsys.readouterr().err


def test_scaled_estimate_counts_every_trip_of_a_scanned_stack():
    from stages.plan import Loop, scale_loops
    from tpu.aot import Estimate

    seen = Estimate(0, 0, 0, 0, 0, flops=10.0, bytes_accessed=100.0, seconds=1.0)   # outside 4 + one layer 6
    loops = (Loop(trips=28, flops=6.0, bytes=50.0),)
    assert scale_loops(seen, loops, memory_bound=False) == (10.0 + 27 * 6.0, (10.0 + 27 * 6.0) / 10.0)
    assert scale_loops(seen, loops, memory_bound=True)[1] == (100.0 + 27 * 50.0) / 100.0
    assert scale_loops(Estimate(0, 0, 0, 0, 0, 10.0, 100.0, None), loops, memory_bound=False)[1] is None
