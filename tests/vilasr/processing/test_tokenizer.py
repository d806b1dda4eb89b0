"""The tiny built-in tokenizer and the tokenizer wrapper (vilasr.processing.tokenizer, .tokenizer_build)."""

import json
import os
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vilasr.processing.tokenizer import TINY_SPECIAL_IDS, Tokenizer

REPO = Path(__file__).resolve().parents[3]

SAMPLES = [
    "",
    "hello world",
    "<think>The red chair is left of the table.</think> Action: Object Mapper\n```json\n"
    '[{"index": 1, "bbox_2d": [12, 345, 67, 890], "label": "red chair"}]\n```',
    '```json\n[\n    {"index": 2, "start_point_2d": [0, 616], "end_point_2d": [615, 3], "label": "path 1"}\n]\n```',
    "<answer>move_right:1.2,rotate_left:30</answer>",
    "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>How far?<|im_end|>\n<|im_start|>assistant\n",
    "line one\n\n\nline two\r\n\ttabbed   spaced  ",
    "Zürich Ångström café naïve 空间推理 🙂🪑 Ωμέγα",
    "e\u0301 (decomposed) vs \u00e9 (composed)",
    "<|endoftext|><|im_end|><tool_call>{}</tool_call>",
    "'s 're 've it's THEY'LL 123456789 3.14159 -7e+10",
]


@pytest.fixture(scope="module")
def tiny():
    return Tokenizer.tiny()


def test_special_ids_are_the_fixed_numbers(tiny):
    for token, i in TINY_SPECIAL_IDS.items():
        assert tiny.token_to_id(token) == i
    assert tiny.endoftext_id == 2032
    assert tiny.im_start_id == 2033
    assert tiny.im_end_id == 2034
    assert tiny.vision_start_id == 2035
    assert tiny.vision_end_id == 2036
    assert tiny.image_pad_id == 2037
    assert tiny.video_pad_id == 2038
    assert tiny.pad_id == 2032
    assert tiny.eos_id == 2034
    assert tiny.eos_ids == (2034, 2032)
    assert tiny.vocab_size == len(tiny) == 2048
    # ids 0..2031 are the BPE vocabulary, 2032..2047 the added tokens
    assert sorted(tiny.backend.get_added_tokens_decoder()) == list(range(2032, 2048))
    assert tiny.backend.get_vocab_size(with_added_tokens=False) == 2032


def test_all_256_bytes_are_single_tokens(tiny):
    from tokenizers.pre_tokenizers import ByteLevel

    for symbol in ByteLevel.alphabet():
        assert tiny.token_to_id(symbol) is not None


def test_digits_tokenize_one_per_digit(tiny):
    digit_ids = [tiny.token_to_id(str(d)) for d in range(10)]
    assert None not in digit_ids
    assert tiny.encode("0123456789") == digit_ids
    assert tiny.encode("[616, 40]") == (
        tiny.encode("[") + [digit_ids[6], digit_ids[1], digit_ids[6]] + tiny.encode(",") + tiny.encode(" ")
        + [digit_ids[4], digit_ids[0]] + tiny.encode("]")
    )


def test_special_strings_encode_to_single_ids(tiny):
    ids = tiny.encode("<|im_start|>assistant\n<think>x</think><|im_end|>")
    assert ids[0] == 2033 and ids[-1] == 2034
    assert tiny.decode(ids, skip_special_tokens=True) == "assistant\n<think>x</think>"


def test_samples_round_trip(tiny):
    for s in SAMPLES:
        assert tiny.decode(tiny.encode(s)) == unicodedata.normalize("NFC", s)
    assert tiny.batch_decode(tiny.encode_batch(SAMPLES)) == [unicodedata.normalize("NFC", s) for s in SAMPLES]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_round_trip_arbitrary_unicode(tiny, text):
    """Nothing is out of vocabulary; decode(encode(s)) gives s back (in NFC, the Qwen2 normaliser)."""
    ids = tiny.encode(text)
    assert all(0 <= i < 2048 for i in ids)
    assert tiny.decode(ids) == unicodedata.normalize("NFC", text)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=100).map(lambda s: unicodedata.normalize("NFC", s)))
def test_round_trip_exact_on_nfc_text(tiny, text):
    assert tiny.decode(tiny.encode(text)) == text


def test_build_is_deterministic_and_matches_the_asset(tmp_path):
    """A fresh build in two new processes (different hash seeds) gives the shipped file byte for byte."""
    outs = []
    for seed in ("1", "2"):
        out = tmp_path / f"tok{seed}.json"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run(
            [sys.executable, "-m", "vilasr.processing.tokenizer_build", "--out", str(out)],
            cwd=REPO, env=env, check=True, capture_output=True,
        )
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    shipped = (REPO / "vilasr" / "processing" / "assets" / "tiny_tokenizer.json").read_bytes()
    assert outs[0] == shipped, "the shipped tokenizer is stale: run `python -m vilasr.processing.tokenizer_build`"


def test_save_and_from_pretrained_round_trip(tiny, tmp_path):
    tiny.save_pretrained(tmp_path)
    again = Tokenizer.from_pretrained(tmp_path)
    for s in SAMPLES:
        assert again.encode(s) == tiny.encode(s)
    assert (again.pad_id, again.eos_id, again.eos_ids) == (tiny.pad_id, tiny.eos_id, tiny.eos_ids)
    assert again.vocab_size == 2048


def test_from_pretrained_reads_config_and_generation_config(tiny, tmp_path):
    tiny.save_pretrained(tmp_path, chat_template="{{ messages }}")
    cfg = json.loads((tmp_path / "tokenizer_config.json").read_text())
    cfg["eos_token"] = {"content": "<|endoftext|>", "special": True}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(cfg))
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": [2034, 2032, 2039]}))
    tok = Tokenizer.from_pretrained(tmp_path)
    assert tok.eos_id == 2032
    assert tok.eos_ids == (2032, 2034, 2039)
    assert tok.chat_template == "{{ messages }}"


def test_from_pretrained_vocab_and_merges_only(tiny, tmp_path):
    """Folders without tokenizer.json: vocab.json + merges.txt + added tokens from tokenizer_config."""
    tiny.save_pretrained(tmp_path)
    tiny.backend.model.save(str(tmp_path))  # vocab.json, merges.txt
    (tmp_path / "tokenizer.json").unlink()
    tok = Tokenizer.from_pretrained(tmp_path)
    for token, i in TINY_SPECIAL_IDS.items():
        assert tok.token_to_id(token) == i
    for s in SAMPLES:
        assert tok.encode(s) == tiny.encode(s)


def test_from_pretrained_errors(tmp_path):
    from vilasr.errors import ConfigError

    with pytest.raises(ConfigError):
        Tokenizer.from_pretrained(tmp_path / "missing")
    with pytest.raises(ConfigError):
        Tokenizer.from_pretrained(tmp_path)


def test_matches_hugging_face_fast_tokenizer(tiny, tmp_path):
    """Our folder loads in transformers and encodes/decodes identically."""
    transformers = pytest.importorskip("transformers")
    tiny.save_pretrained(tmp_path)
    hf_auto = transformers.AutoTokenizer.from_pretrained(tmp_path)
    hf_file = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    for hf in (hf_auto, hf_file):
        for s in SAMPLES:
            ids = hf(s, add_special_tokens=False)["input_ids"]
            assert ids == tiny.encode(s), s
            for skip in (False, True):
                assert hf.decode(ids, skip_special_tokens=skip) == tiny.decode(ids, skip_special_tokens=skip)
    assert hf_auto.convert_tokens_to_ids("<|image_pad|>") == 2037
    assert hf_auto.pad_token_id == tiny.pad_id and hf_auto.eos_token_id == tiny.eos_id
