"""Continuous batching (vilasr.rollout.loop.rollout_stream): a task's trajectory does not depend on
which slot it got or when, and the number of compiled programs does not grow with the records."""

import numpy as np
import pytest
from flax import nnx

from vilasr.compiled import CompileLog
from vilasr.model import Qwen25VL, Qwen25VLConfig
from vilasr.processing import Processor
from vilasr.rollout import RolloutConfig, RolloutTask, SamplingConfig, rollout
from vilasr.rollout.loop import rollout_stream, row_bucket, two_per_octave

SIZES = [(112, 140), (84, 112)]   # the images' sizes (each size compiles the vision tower once)


@pytest.fixture(scope="module")
def model():
    return Qwen25VL(Qwen25VLConfig.preset("tiny"), rngs=nnx.Rngs(5))


@pytest.fixture(scope="module")
def processor():
    return Processor.tiny()


def draw(k: int) -> str:
    x = 8 + 6 * k
    return (f'<think>box {k}</think> Action: Object Mapper\n```json\n[{{"index": 1, "bbox_2d": [{x}, 10, {x + 30}, 40], '
            f'"label": "b{k}"}}]\n```')


def tasks_and_scripts(n: int, start: int = 0):
    """Tasks of two image sizes and question lengths; task i draws (i % 4) scripted turns, then samples."""
    tasks, scripts = [], []
    for i in range(start, start + n):
        h, w = SIZES[i % len(SIZES)]
        image = np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8)
        tasks.append(RolloutTask(images=[image], question="Where is the cup? " + "Look closely. " * (i % 5),
                                 options=("A. left", "B. right"), seed=1000 + i))
        scripts.append([draw(k) for k in range(i % 4)])
    return tasks, scripts


def config(sampling):
    # a response budget that keeps every trajectory within the smallest cache size
    return RolloutConfig(max_turn_tokens=80, max_response_tokens=400, max_turns=6, sampling=sampling)


def by_task(model, processor, tasks, scripts, cfg, slots):
    out = {}
    for i, traj in rollout_stream(model, processor, tasks, cfg, slots=slots, forced_turns=scripts):
        out[tasks[i].seed] = traj
    return out


def test_shuffled_tasks_through_the_same_slots_give_identical_sampled_trajectories(model, processor):
    tasks, scripts = tasks_and_scripts(7)
    cfg = config(SamplingConfig(temperature=1.0))
    first = by_task(model, processor, tasks, scripts, cfg, slots=3)
    order = np.random.default_rng(0).permutation(len(tasks))
    second = by_task(model, processor, [tasks[i] for i in order], [scripts[i] for i in order], cfg, slots=3)
    assert sorted(first) == sorted(second)
    turns = [len(t.turns) for t in first.values()]
    assert max(turns) >= 4 and min(turns) <= 2   # rows of different lengths share the slots
    for seed, traj in first.items():
        np.testing.assert_array_equal(traj.token_ids, second[seed].token_ids)
        np.testing.assert_allclose(traj.logprobs, second[seed].logprobs, atol=1e-6)
        assert traj.finish_reason == second[seed].finish_reason


def test_three_and_eight_slots_give_the_same_greedy_trajectories(model, processor):
    tasks, scripts = tasks_and_scripts(8)
    cfg = config(SamplingConfig(greedy=True))
    three = by_task(model, processor, tasks, scripts, cfg, slots=3)
    eight = by_task(model, processor, tasks, scripts, cfg, slots=8)
    for seed, traj in three.items():
        np.testing.assert_array_equal(traj.token_ids, eight[seed].token_ids)
        assert len(traj.images) == len(eight[seed].images)
    # and `rollout` (one slot per task) returns the same, in task order
    ordered = rollout(model, processor, tasks, cfg, forced_turns=scripts)
    for task, traj in zip(tasks, ordered):
        np.testing.assert_array_equal(traj.token_ids, three[task.seed].token_ids)


def test_compilations_do_not_grow_with_the_number_of_records(model, processor):
    cfg = config(SamplingConfig(temperature=1.0))
    tasks, scripts = tasks_and_scripts(10)
    with CompileLog() as first:
        list(rollout_stream(model, processor, tasks, cfg, slots=4, forced_turns=scripts))
    more, more_scripts = tasks_and_scripts(30, start=10)   # three times as many new records, same kinds
    with CompileLog() as second:
        list(rollout_stream(model, processor, more, cfg, slots=4, forced_turns=more_scripts))
    last, last_scripts = tasks_and_scripts(30, start=40)
    with CompileLog() as third:
        list(rollout_stream(model, processor, last, cfg, slots=4, forced_turns=last_scripts))
    print(f"programs: {first.count} for 10 records, {second.count} more for 30 new ones, {third.count} for 30 more")
    assert 0 < first.count <= 60, first.count
    # the new records meet at most a few (row, width) prefill buckets the first ten did not...
    assert second.count <= 8, f"{second.count} new programs for records of the same kinds"
    # ...and then none: the set is bounded by the buckets, not by the records (one cache size: the budget)
    assert third.count == 0, f"{third.count} new programs after 40 records of the same kinds"


def test_the_buckets():
    assert [two_per_octave(n, 64) for n in (1, 64, 65, 96, 97, 129, 200, 300)] == [64, 64, 96, 96, 128, 192, 256, 384]
    assert [row_bucket(n, 8) for n in (1, 2, 3, 5, 8)] == [1, 2, 4, 8, 8]
