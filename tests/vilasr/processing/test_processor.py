"""Image preprocessing, chat template and the processor, against Hugging Face transformers.

The references are built locally: transformers' slow (PIL) Qwen2-VL image processor
(`Qwen2VLImageProcessorPil` in transformers 5.x, `Qwen2VLImageProcessor(use_fast=False)` before)
and `Qwen2_5_VLProcessor` around our tiny tokenizer saved as a Hugging Face folder.
"""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from vilasr.processing import Processor, sharegpt_to_messages
from vilasr.processing.image import ImageProcessor, patchify, preprocess_images, preprocess_video, smart_resize
from vilasr.processing.processor import QWEN2_5_VL_CHAT_TEMPLATE

transformers = pytest.importorskip("transformers")


def _hf_slow_image_processor(**kw):
    cls = getattr(transformers, "Qwen2VLImageProcessorPil", None)
    if cls is not None:
        return cls(**kw)
    return transformers.Qwen2VLImageProcessor(**kw)  # transformers 4.x: this class is the slow one


def _hf_smart_resize():
    try:  # transformers 5.x: the PIL processor's module imports without torchvision
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as hf_smart_resize
    except ImportError:  # transformers 4.x
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as hf_smart_resize
    return hf_smart_resize


def _random_image(rng, h, w, mode="RGB"):
    if mode == "L":
        return Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), mode="L")
    if mode == "RGBA":
        return Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), mode="RGBA")
    if mode == "P":
        return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert("P")
    # smooth content plus noise, so bicubic over/undershoot and clipping are exercised
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x * 255 // max(w - 1, 1)), (y * 255 // max(h - 1, 1)), ((x + y) % 256)], -1)
    noise = rng.integers(-60, 60, (h, w, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


SIZES = [
    (1, 1), (10, 10), (27, 29), (28, 28), (100, 37), (37, 100), (57, 85),   # tiny / non-multiples
    (224, 224), (480, 640), (616, 616), (333, 517),                          # ordinary
    (30, 2000), (2000, 30), (20, 3000),                                      # very wide / tall
    (1000, 1000), (2300, 1700),                                              # clamped by max_pixels
]
PIXEL_BUDGETS = [(56 * 56, 28 * 28 * 1280), (56 * 56, 256 * 28 * 28), (56 * 56, 224 * 224), (200 * 200, 300 * 300)]


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(1234)


# ----------------------------------------------------------------------------------------------
# image preprocessing
# ----------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    h=st.integers(1, 5000),
    w=st.integers(1, 5000),
    min_px=st.sampled_from([56 * 56, 4 * 28 * 28, 128 * 28 * 28]),
    max_px=st.sampled_from([224 * 224, 256 * 28 * 28, 28 * 28 * 1280, 16384 * 28 * 28]),
)
def test_smart_resize_matches_hf(h, w, min_px, max_px):
    hf = _hf_smart_resize()
    try:
        expected = hf(h, w, factor=28, min_pixels=min_px, max_pixels=max_px)
    except ValueError:
        with pytest.raises(ValueError):
            smart_resize(h, w, 28, min_px, max_px)
        return
    got = smart_resize(h, w, 28, min_px, max_px)
    assert got == tuple(expected)
    assert got[0] % 28 == 0 and got[1] % 28 == 0


@pytest.mark.parametrize("budget", PIXEL_BUDGETS, ids=lambda b: f"{b[0]}-{b[1]}")
def test_pixel_values_identical_to_hf_slow_processor(rng, budget):
    min_px, max_px = budget
    hf = _hf_slow_image_processor(min_pixels=min_px, max_pixels=max_px)
    ours = ImageProcessor(min_pixels=min_px, max_pixels=max_px)
    for h, w in SIZES:
        if max(h, w) / min(h, w) > 200:
            continue
        image = _random_image(rng, h, w)
        ref = hf(images=[image], return_tensors="np")
        got = ours([image])
        assert got["image_grid_thw"].tolist() == ref["image_grid_thw"].tolist(), (h, w)
        assert got["pixel_values"].dtype == np.float32
        assert got["pixel_values"].shape == ref["pixel_values"].shape
        np.testing.assert_array_equal(got["pixel_values"], ref["pixel_values"], err_msg=f"{h}x{w}")


def test_several_images_at_once_and_modes(rng):
    images = [
        _random_image(rng, 300, 200),
        _random_image(rng, 64, 640, "L"),
        _random_image(rng, 150, 150, "RGBA"),
        _random_image(rng, 90, 120, "P"),
        np.asarray(_random_image(rng, 77, 333)),  # HWC uint8 array
    ]
    hf = _hf_slow_image_processor(min_pixels=56 * 56, max_pixels=256 * 28 * 28)
    ref = hf(images=images, return_tensors="np")
    got = ImageProcessor(max_pixels=256 * 28 * 28)(images)
    assert got["image_grid_thw"].tolist() == ref["image_grid_thw"].tolist()
    np.testing.assert_array_equal(got["pixel_values"], ref["pixel_values"])
    pv, grid = preprocess_images(images, max_pixels=256 * 28 * 28)
    np.testing.assert_array_equal(pv, ref["pixel_values"])
    assert grid.tolist() == ref["image_grid_thw"].tolist()
    # patches = sum of t*h*w
    assert pv.shape == (int(np.prod(grid, axis=1).sum()), 3 * 2 * 14 * 14)


def test_pixel_clamps():
    proc = ImageProcessor(min_pixels=56 * 56, max_pixels=224 * 224)
    assert proc.target_size(1, 1) == (56, 56)
    assert proc.target_size(2240, 2240) == (224, 224)
    assert proc.target_size(10000, 10000) == (196, 196)  # floor(10000 / (10000/224) / 28) = floor(7.999..)
    assert proc.num_tokens(616, 616) == 64
    for h, w in [(616, 616), (480, 640), (100, 3000), (5, 7)]:
        th, tw = proc.target_size(h, w)
        assert 56 * 56 <= th * tw <= 224 * 224
    # beyond ~64:1 the short side stays at one merge unit (28 px), so the budget can be exceeded
    assert proc.target_size(30, 2000) == (28, 1820)
    with pytest.raises(ValueError):
        smart_resize(1, 201)


def test_patch_order_groups_merge_windows():
    """Patch k of a merge window w is at row 4*w + k; features are (channel, time, y, x)."""
    h, w = 56, 84  # 4 x 6 patches, 2 x 3 merge windows
    frame = np.arange(3 * h * w, dtype=np.float32).reshape(1, 3, h, w)
    patches, grid = patchify(frame)
    assert grid == (1, 4, 6)
    feats = patches.reshape(-1, 3, 2, 14, 14)
    for wy in range(2):
        for wx in range(3):
            for k in range(4):
                py, px = 2 * wy + k // 2, 2 * wx + k % 2
                row = (wy * 3 + wx) * 4 + k
                expect = frame[0, :, py * 14 : (py + 1) * 14, px * 14 : (px + 1) * 14]
                np.testing.assert_array_equal(feats[row, :, 0], expect)
                np.testing.assert_array_equal(feats[row, :, 1], expect)  # still image: repeated in time


def test_video_frames(rng):
    frames = [_random_image(rng, 120, 160) for _ in range(5)]
    proc = ImageProcessor(max_pixels=224 * 224)
    pv, grid = proc.video(frames)
    th, tw = proc.target_size(120, 160)
    assert grid.tolist() == [3, th // 14, tw // 14]  # 5 frames -> padded to 6 -> t = 3
    per_t = (th // 14) * (tw // 14)
    feats = pv.reshape(3, per_t, 3, 2, 14, 14)
    singles = [proc([f])["pixel_values"].reshape(per_t, 3, 2, 14, 14)[:, :, 0] for f in frames]
    for t in range(3):
        np.testing.assert_array_equal(feats[t, :, :, 0], singles[2 * t])
        np.testing.assert_array_equal(feats[t, :, :, 1], singles[min(2 * t + 1, 4)])  # last frame repeated
    # a one-frame video is the still image
    one, g1 = proc.video(frames[:1])
    np.testing.assert_array_equal(one, proc(frames[:1])["pixel_values"])
    assert g1.tolist() == [1, th // 14, tw // 14]
    pv2, grid2 = preprocess_video(frames, max_pixels=224 * 224)
    np.testing.assert_array_equal(pv2, pv)
    assert grid2.tolist() == [grid.tolist()]


def test_from_config_reads_size_and_overrides():
    cfg = {"min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
           "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
    p = ImageProcessor.from_config(cfg)
    assert (p.min_pixels, p.max_pixels, p.image_mean) == (3136, 12845056, (0.5, 0.5, 0.5))
    p = ImageProcessor.from_config({"size": {"shortest_edge": 100, "longest_edge": 200000}}, max_pixels=256 * 28 * 28)
    assert (p.min_pixels, p.max_pixels) == (100, 256 * 28 * 28)
    assert ImageProcessor.from_config(p.to_config()) == p


# ----------------------------------------------------------------------------------------------
# processor vs transformers' Qwen2_5_VLProcessor
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ours():
    return Processor.tiny()


@pytest.fixture(scope="module")
def hf_processor(ours, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf_tiny")
    ours.save_pretrained(folder)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    image_processor = _hf_slow_image_processor(
        min_pixels=ours.image_processor.min_pixels, max_pixels=ours.image_processor.max_pixels
    )

    class _NoVideoProcessor(transformers.Qwen2_5_VLProcessor):
        # transformers' Qwen2-VL video processor needs torchvision, which this environment lacks;
        # skip the type check of the absent video processor (images and text are untouched).
        def check_argument_for_proper_class(self, name, arg):
            if arg is None:
                return None
            return super().check_argument_for_proper_class(name, arg)

    return _NoVideoProcessor(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=None, chat_template=QWEN2_5_VL_CHAT_TEMPLATE
    )


CONVERSATIONS = [
    [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}],
    [
        {"role": "system", "content": "You reason by drawing."},
        {"role": "user", "content": [{"type": "text", "text": "Compare "}, {"type": "image"}, {"type": "text", "text": " and "},
                                     {"type": "image"}, {"type": "text", "text": ". Which is closer?"}]},
        {"role": "assistant", "content": '<think>Mark both.</think> Action: Object Mapper\n```json\n'
                                         '[{"index": 1, "bbox_2d": [1, 2, 30, 40], "label": "cup"}]\n```'},
        {"role": "user", "content": [{"type": "text", "text": "Here is image 3, with width 224 and height 224: "},
                                     {"type": "image"}, {"type": "text", "text": "\nContinue."}]},
        {"role": "assistant", "content": "<think>Done.</think> Action: Answer\n<answer>B</answer>"},
    ],
    [{"role": "user", "content": "plain text only, café 🙂"}, {"role": "assistant", "content": "\n\nleading newlines"}],
]


@pytest.mark.parametrize("conv", range(len(CONVERSATIONS)))
@pytest.mark.parametrize("gen", [True, False])
def test_chat_template_matches_hf(ours, hf_processor, conv, gen):
    messages = CONVERSATIONS[conv]
    assert ours.apply_chat_template(messages, add_generation_prompt=gen) == hf_processor.apply_chat_template(
        messages, add_generation_prompt=gen
    )
    assert ours.apply_chat_template(messages, add_generation_prompt=gen, add_vision_id=True) == (
        hf_processor.apply_chat_template(messages, add_generation_prompt=gen, add_vision_id=True)
    )


def test_sharegpt_messages_render_like_structured(ours, hf_processor):
    sharegpt = [
        {"role": "user", "content": "<image>\n<image>Which object is closer to the camera?"},
        {"role": "assistant", "content": "<think>...</think> Action: Answer\n<answer>A</answer>"},
    ]
    structured = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "\n"}, {"type": "image"},
                                     {"type": "text", "text": "Which object is closer to the camera?"}]},
        sharegpt[1],
    ]
    assert sharegpt_to_messages(sharegpt) == structured
    text = ours.apply_chat_template(sharegpt, add_generation_prompt=False)
    assert text == hf_processor.apply_chat_template(structured, add_generation_prompt=False)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>\n"
        "<|vision_start|><|image_pad|><|vision_end|>Which object is closer to the camera?<|im_end|>\n"
        "<|im_start|>assistant\n<think>...</think> Action: Answer\n<answer>A</answer><|im_end|>\n"
    )
    # from/value turns and a whole sharegpt record
    legacy = [{"from": "human", "value": "<image>hi"}, {"from": "gpt", "value": "yo"}]
    assert ours.apply_chat_template(legacy) == ours.apply_chat_template(
        {"conversations": [{"role": "user", "content": "<image>hi"}, {"role": "assistant", "content": "yo"}]}
    )


@pytest.mark.parametrize("side", ["right", "left"])
def test_call_matches_hf_on_a_batch_with_several_images(ours, hf_processor, rng, side):
    texts = [
        ours.apply_chat_template(CONVERSATIONS[1], add_generation_prompt=False),
        ours.apply_chat_template(CONVERSATIONS[0]),
        ours.apply_chat_template(CONVERSATIONS[2]),
    ]
    images = [_random_image(rng, h, w) for h, w in [(300, 200), (616, 616), (40, 900), (224, 224)]]
    ref = hf_processor(text=texts, images=images, padding=True, padding_side=side, return_tensors="np")
    got = ours(texts, images=images, padding=True, padding_side=side)
    np.testing.assert_array_equal(got["input_ids"], ref["input_ids"])
    np.testing.assert_array_equal(got["attention_mask"], ref["attention_mask"])
    np.testing.assert_array_equal(got["pixel_values"], ref["pixel_values"])
    np.testing.assert_array_equal(got["image_grid_thw"], ref["image_grid_thw"])
    assert got["input_ids"].dtype == np.int32
    # each image contributed t*h*w/4 placeholder tokens
    n_pad = int((got["input_ids"] == ours.tokenizer.image_pad_id).sum())
    assert n_pad == int(np.prod(got["image_grid_thw"], axis=1).sum()) // 4


def test_call_single_text_and_padding_options(ours, rng):
    image = _random_image(rng, 616, 616)
    prompt = ours.apply_chat_template([{"role": "user", "content": "<image>Where is the exit?"}])
    out = ours(prompt, images=[image], padding="max_length", max_length=200)
    assert out["input_ids"].shape == (1, 200)
    assert int((out["input_ids"] == 2037).sum()) == 64  # tiny preset: 616x616 -> 224x224 -> 64 tokens
    assert out["attention_mask"].sum() == len(ours.tokenizer.encode(prompt)) + 63
    out = ours([prompt, "short"], images=[image], pad_to_multiple_of=64)
    assert out["input_ids"].shape[1] % 64 == 0
    assert out["input_ids"][1, 0] != ours.tokenizer.pad_id and out["input_ids"][1, -1] == ours.tokenizer.pad_id
    with pytest.raises(ValueError):
        ours([prompt, "short"], images=[image], padding=False)
    with pytest.raises(ValueError, match="placeholders"):
        ours(prompt, images=[image, image])
    with pytest.raises(ValueError, match="placeholders"):
        ours(prompt)


def test_call_with_video(ours, rng):
    frames = [_random_image(rng, 112, 112) for _ in range(4)]
    prompt = ours.apply_chat_template([{"role": "user", "content": "<video>What happens?"}])
    assert "<|vision_start|><|video_pad|><|vision_end|>" in prompt
    out = ours(prompt, videos=[frames])
    assert out["video_grid_thw"].tolist() == [[2, 8, 8]]
    assert int((out["input_ids"] == ours.tokenizer.video_pad_id).sum()) == 2 * 8 * 8 // 4
    assert out["pixel_values_videos"].shape == (128, 1176)
    assert out["second_per_grid_ts"].tolist() == [1.0]


def test_decode(ours, hf_processor):
    ids = ours(ours.apply_chat_template(CONVERSATIONS[2], add_generation_prompt=False))["input_ids"]
    for skip in (False, True):
        assert ours.batch_decode(ids, skip_special_tokens=skip) == hf_processor.batch_decode(
            ids.tolist(), skip_special_tokens=skip
        )
    assert ours.decode(ids[0], skip_special_tokens=True).startswith("system\nYou are a helpful assistant.")


# ----------------------------------------------------------------------------------------------
# assistant mask
# ----------------------------------------------------------------------------------------------


def _assistant_texts(messages):
    return [m["content"] for m in messages if m["role"] == "assistant"]


@pytest.mark.parametrize("conv", [1, 2])
def test_assistant_token_mask_covers_assistant_turns_and_im_end(ours, rng, conv):
    messages = CONVERSATIONS[conv]
    text = ours.apply_chat_template(messages, add_generation_prompt=False)
    n_images = text.count("<|image_pad|>")
    images = [_random_image(rng, 64, 64) for _ in range(n_images)]
    batch = ours([text, "x"], images=images or None, padding_side="left")
    mask = ours.assistant_token_mask(batch["input_ids"])
    assert mask.shape == batch["input_ids"].shape
    assert not mask[1].any()
    ids = batch["input_ids"][0]
    # split the masked positions into contiguous spans and decode each
    pos = np.flatnonzero(mask[0])
    spans = np.split(pos, np.flatnonzero(np.diff(pos) > 1) + 1)
    decoded = [ours.decode(ids[s]) for s in spans]
    assert decoded == [t + "<|im_end|>" for t in _assistant_texts(messages)]
    assert all(ids[s[-1]] == ours.tokenizer.im_end_id for s in spans)
    # with the trailing newline after <|im_end|> (LLaMA-Factory style)
    mask_nl = ours.assistant_token_mask(ids, include_trailing_newline=True)
    assert mask_nl.sum() == mask[0].sum() + len(spans)


def test_assistant_token_mask_unterminated_and_generation_prompt(ours):
    text = ours.apply_chat_template(CONVERSATIONS[0]) + "<think>partial"
    ids = np.asarray(ours.tokenizer.encode(text.replace("<|image_pad|>", "")))
    mask = ours.assistant_token_mask(ids)
    assert ours.decode(ids[mask]) == "<think>partial"
    # the header alone (generation prompt) masks nothing
    ids = np.asarray(ours.tokenizer.encode(ours.apply_chat_template([{"role": "user", "content": "hi"}])))
    assert not ours.assistant_token_mask(ids).any()


# ----------------------------------------------------------------------------------------------
# from_pretrained
# ----------------------------------------------------------------------------------------------


def test_from_pretrained_round_trip(ours, rng, tmp_path):
    ours.save_pretrained(tmp_path)
    again = Processor.from_pretrained(tmp_path)
    assert again.image_processor == ours.image_processor
    assert again.chat_template == ours.chat_template
    images = [_random_image(rng, 200, 300)]
    prompt = ours.apply_chat_template([{"role": "user", "content": "<image>hi"}])
    a, b = ours(prompt, images=images), again(prompt, images=images)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    bigger = Processor.from_pretrained(tmp_path, max_pixels=256 * 28 * 28)
    assert bigger.image_processor.max_pixels == 256 * 28 * 28
    assert bigger.num_image_tokens(616, 616) == 256


def test_from_pretrained_chat_template_sources(ours, tmp_path):
    ours.save_pretrained(tmp_path)
    (tmp_path / "chat_template.json").unlink()
    assert Processor.from_pretrained(tmp_path).chat_template == QWEN2_5_VL_CHAT_TEMPLATE  # built-in fallback
    cfg = json.loads((tmp_path / "tokenizer_config.json").read_text())
    cfg["chat_template"] = "{% for m in messages %}[{{ m['role'] }}]{% endfor %}"
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(cfg))
    p = Processor.from_pretrained(tmp_path)
    assert p.apply_chat_template([{"role": "user", "content": "x"}]) == "[user]"
    (tmp_path / "chat_template.jinja").write_text("J{{ messages | length }}")
    assert Processor.from_pretrained(tmp_path).apply_chat_template([{"role": "user", "content": "x"}]) == "J1"
