"""Every trajectory follows the protocol: it parses with no errors, has the format the reward
checks, at least 3 steps, the right answer, images that replay exactly, and reflective ones are
reflective by docs/method.md §4."""

from __future__ import annotations

import re

import numpy as np
import pytest

from drawing_ops import (VisualContext, assistant_turns, final_answer, is_reflective, parse_tool_calls,
                         trajectory_reflective_labels)
from synth.records import dataset_digest

from synth_helpers import cached_samples, small_config

TURN_FORMAT = re.compile(r"<think>(.*?)</think>\s*Action:\s*(.*?)(?=\n|$)", re.DOTALL)


@pytest.mark.parametrize("kind", ["cold", "reflective"])
def test_trajectories_follow_the_protocol(family, kind):
    for sample in cached_samples(family, kind):
        conv = sample.conversation
        assert conv[0]["role"] == "system" and conv[1]["role"] == "user"
        turns = sample.assistant_turns()
        assert len(turns) >= 3
        placeholders = sum(m["content"].count("<image>") for m in conv if m["role"] == "user")
        assert placeholders == len(sample.all_images)
        num_images = len(sample.images)
        for k, text in enumerate(turns):
            parsed = parse_tool_calls(text, num_images=num_images)
            assert parsed.errors == [], (sample.id, k, parsed.errors)
            assert TURN_FORMAT.match(text), text[:200]
            last = k == len(turns) - 1
            assert (parsed.answer is not None) == last
            if not last:
                assert parsed.action in ("Object Mapper", "Path Tracer") and parsed.actions
                num_images += len({a.index for a in parsed.actions})
            else:
                assert parsed.action == "Answer" and parsed.answer == sample.answer
        assert num_images == len(sample.all_images)
        turns = assistant_turns(conv)
        assert final_answer(turns) == sample.answer
        assert is_reflective(turns) == (kind == "reflective")
        if kind == "reflective":
            labels = trajectory_reflective_labels(turns)
            assert labels == {sample.meta["mistake"]["label"]}
            if sample.meta["mistake"]["kind"] == "box":
                assert is_reflective(turns, boxes_only=True)


@pytest.mark.parametrize("kind", ["cold", "reflective"])
def test_drawn_images_replay_exactly(family, kind):
    for sample in cached_samples(family, kind)[:3]:
        ctx = VisualContext(sample.images)
        for text in sample.assistant_turns()[:-1]:
            ctx.apply(parse_tool_calls(text, num_images=len(ctx)).actions)
        assert len(ctx.images) == len(sample.all_images)
        for a, b in zip(ctx.images, sample.all_images):
            assert np.array_equal(a, b)


def test_reflective_correction_reads_the_feedback(family):
    for sample in cached_samples(family, "reflective"):
        step = sample.meta["mistake"]["step"]
        correction = parse_tool_calls(sample.assistant_turns()[step])
        assert sample.meta["mistake"]["label"] in correction.think
        # the correcting turn names the image that showed the mistake
        produced = re.findall(r"Image (\d+)", [m for m in sample.conversation if m["role"] == "user"][step]["content"])
        assert any(f"image {k}" in correction.think.lower() for k in produced)


def test_same_seed_same_bytes_different_seed_different_bytes(family):
    config = small_config(family)
    from synth import families

    def run(seed):
        return dataset_digest(families.iter_samples(family, 3, seed, config=config, trajectory="reflective"))

    assert run(5) == run(5)
    assert run(5) != run(6)
    # sample i does not depend on how many samples are made
    one = families.make_sample(family, 5, 2, config=config, trajectory="reflective")
    assert one.digest() == list(families.iter_samples(family, 3, 5, config=config, trajectory="reflective"))[2].digest()


def test_trajectory_kind_does_not_change_the_task(family):
    config = small_config(family)
    from synth import families

    base = families.make_sample(family, 9, 1, config=config)
    for kind in ("cold", "reflective"):
        s = families.make_sample(family, 9, 1, config=config, trajectory=kind)
        assert (s.question, s.options, s.answer) == (base.question, base.options, base.answer)
        assert all(np.array_equal(a, b) for a, b in zip(s.images, base.images))


@pytest.mark.parametrize("family", ["maze", "multiview", "static"])
def test_brief_thinking_keeps_the_drawings_and_the_answer(family):
    from synth.families import make_sample
    from synth.trajectory import ThinkStyle

    for kind in ("cold", "reflective"):
        full = make_sample(family, 5, 2, trajectory=kind)
        brief = make_sample(family, 5, 2, trajectory=kind, think=ThinkStyle.BRIEF)
        turns_full, turns_brief = full.assistant_turns(), brief.assistant_turns()
        assert len(turns_full) == len(turns_brief)
        assert sum(map(len, turns_brief)) < sum(map(len, turns_full))
        for a, b in zip(turns_full, turns_brief):
            pa, pb = parse_tool_calls(a), parse_tool_calls(b)
            assert not pb.errors and pa.actions == pb.actions and pa.answer == pb.answer
        assert all(np.array_equal(x, y) for x, y in zip(full.drawn_images, brief.drawn_images))
