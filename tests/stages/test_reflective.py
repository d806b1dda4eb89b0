"""Stage 2: the keep filter on scripted trajectories, the written data set, and SFT on it."""

from __future__ import annotations

import json

import numpy as np
from flax import nnx

from drawing_ops import Box
from drawing_ops.protocol import format_answer_turn, format_tool_turn
from stages.data import encode_example, open_source
from stages.reflective import Prompt, judge, load_prompts, report, sample, write_dataset
from vilasr.model import Qwen25VL, Qwen25VLConfig
from vilasr.processing import Processor
from vilasr.rollout import RolloutConfig, RolloutTask, SamplingConfig


def image(seed):
    return np.random.default_rng(seed).integers(0, 256, (56, 56, 3), dtype=np.uint8)


def draw(index, box, label="cup", think="Box the cup."):
    return format_tool_turn(think, [Box(index, box, label)])


REDRAW = [draw(1, (5, 5, 20, 20)), draw(1, (30, 30, 50, 50), think="Wrong place; redraw the cup."),
          format_answer_turn("Done.", "A")]
ONCE = [draw(1, (5, 5, 20, 20)), format_answer_turn("Done.", "A")]
WRONG = [draw(1, (5, 5, 20, 20)), draw(1, (30, 30, 50, 50)), format_answer_turn("Done.", "B")]
NO_THINK = ["Action: Object Mapper\n" + draw(1, (5, 5, 20, 20)).split("\n", 1)[1], REDRAW[1], REDRAW[2]]


def test_the_filter_keeps_exactly_the_correct_well_formed_reflective_ones(tmp_path):
    model = Qwen25VL(Qwen25VLConfig.preset("tiny"), rngs=nnx.Rngs(0))
    processor = Processor.tiny()
    prompts = [Prompt(RolloutTask(images=[image(i)], question=f"Where is the cup? ({i})", options=("A. left", "B. right")),
                      "A", family) for i, family in enumerate(["maze", "static"])]
    scripts = [REDRAW, ONCE, WRONG, NO_THINK]
    config = RolloutConfig(max_turn_tokens=128, sampling=SamplingConfig(greedy=True))
    pairs = sample(model, processor, prompts, k=2, config=config, batch_size=4, forced=scripts, progress=False)
    assert [p.family for p, _ in pairs] == ["maze", "maze", "static", "static"]
    verdicts = [judge(t, p.answer) for p, t in pairs]
    assert [v.kept for v in verdicts] == [True, False, False, False]
    assert [(v.correct, v.well_formed, v.reflective) for v in verdicts[1:]] == [
        (True, True, False), (False, True, True), (True, False, True)]
    summary = report([(p, t, v) for (p, t), v in zip(pairs, verdicts)])
    assert summary["kept"] == 1 and summary["sampled"] == 4 and summary["reflective_rate"] == 0.75
    assert summary["families"] == {"maze": {"sampled": 2, "kept": 1}, "static": {"sampled": 2, "kept": 0}}

    kept = [t for (_, t), v in zip(pairs, verdicts) if v.kept]
    path = write_dataset(kept, tmp_path / "data")
    records = json.loads(path.read_text())
    assert len(records) == 1 and len(records[0]["images"]) == 3
    assert [m["content"] for m in records[0]["conversations"] if m["role"] == "assistant"] == REDRAW
    # the written data is training data: it reads back through the SFT pipeline, as sampled
    example = encode_example(open_source(path)[0], processor, max_seq_len=4096)
    sampled = pairs[0][1].token_ids.tolist()   # the data adds the chat template's newline after the end
    assert example.input_ids.tolist()[:len(sampled)] == sampled and len(example.input_ids) == len(sampled) + 1
    assert example.loss_mask.sum() == pairs[0][1].model_mask.sum()


def test_prompts_from_rl_jsonl(tmp_path):
    from synth.io import png_bytes

    (tmp_path / "a.png").write_bytes(png_bytes(image(0)))
    lines = [{"question": "Which way?", "answer": "B", "image_path": ["a.png"], "question_type": "maze_path",
              "data_type": "maze", "options": ["A. up", "B. down"], "grid_size": 3}]
    path = tmp_path / "rl.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines))
    prompt, = load_prompts(path)
    assert prompt.family == "maze_path" and prompt.answer == "B" and prompt.task.is_maze
    assert prompt.task.options == ("A. up", "B. down") and prompt.task.images[0].shape == (56, 56, 3)
