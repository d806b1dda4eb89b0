"""Cold-start data and rollouts can never drift apart: a synthetic trajectory, tokenized as the SFT
data is (chat template + processor), equals token for token -- and image for image -- what the
rollout produces when it is driven by the same assistant turns."""

from __future__ import annotations

import numpy as np
from flax import nnx

from synth import families
from vilasr.model import Qwen25VL, Qwen25VLConfig
from vilasr.processing import Processor
from vilasr.rollout import RolloutConfig, RolloutTask, SamplingConfig, rollout


def test_synth_trajectory_equals_the_rollout_driven_by_its_turns():
    processor = Processor.tiny()
    # 224 px images: the tiny processor shows them as they are, so the drawn coordinates stay valid
    sample = families.make_sample("static", seed=3, index=0, config=families.default_config("static", 224),
                                  trajectory="reflective")
    text = processor.apply_chat_template(sample.conversation, add_generation_prompt=False)
    sft_ids = processor(text, images=sample.all_images)["input_ids"][0].tolist()
    prompt_text = processor.apply_chat_template(sample.conversation[:2], add_generation_prompt=True)
    prompt_ids = processor(prompt_text, images=sample.images)["input_ids"][0].tolist()

    model = Qwen25VL(Qwen25VLConfig.preset("tiny"), rngs=nnx.Rngs(0))
    task = RolloutTask(images=sample.images, question=sample.question, options=sample.options,
                       problem_type=sample.problem_type, data_type=sample.data_type)
    config = RolloutConfig(max_turn_tokens=512, sampling=SamplingConfig(greedy=True))
    traj, = rollout(model, processor, [task], config, forced_turns=[sample.assistant_turns()])

    assert traj.finish_reason == "answer" and traj.answer == sample.answer
    assert traj.token_ids[:traj.prompt_len].tolist() == prompt_ids
    # the chat template closes the last turn with "<|im_end|>\n"; the rollout stops at <|im_end|>
    assert traj.token_ids.tolist() == sft_ids[:len(traj.token_ids)]
    assert processor.tokenizer.decode(sft_ids[len(traj.token_ids):]) == "\n"
    assert len(traj.images) == len(sample.all_images)
    for ours, theirs in zip(traj.images, sample.all_images):
        np.testing.assert_array_equal(ours, theirs)


def test_a_rollouts_conversation_tokenizes_back_to_its_tokens():
    """What stage 2 writes (the trajectory's sharegpt conversation and images) is what it sampled."""
    processor = Processor.tiny()
    sample = families.make_sample("static", seed=5, index=1, config=families.default_config("static", 224),
                                  trajectory="cold")
    model = Qwen25VL(Qwen25VLConfig.preset("tiny"), rngs=nnx.Rngs(0))
    task = RolloutTask(images=sample.images, question=sample.question, options=sample.options,
                       problem_type=sample.problem_type)
    traj, = rollout(model, processor, [task], RolloutConfig(max_turn_tokens=512, sampling=SamplingConfig(greedy=True)),
                    forced_turns=[sample.assistant_turns()])
    assert [m["role"] for m in traj.messages][:3] == ["system", "user", "assistant"]
    text = processor.apply_chat_template(traj.messages, add_generation_prompt=False)
    ids = processor(text, images=traj.images)["input_ids"][0].tolist()
    assert ids[:len(traj.token_ids)] == traj.token_ids.tolist()
    assert traj.messages == sample.conversation
