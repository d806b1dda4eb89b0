"""The Qwen2.5-VL processor: chat template, image preprocessing and tokenization in one object.

    proc = Processor.tiny()                                  # built-in tokenizer, small images
    proc = Processor.from_pretrained("/path/to/Qwen2.5-VL-7B-Instruct", max_pixels=256 * 28 * 28)
    prompt = proc.apply_chat_template([{"role": "user", "content": "<image>\\nWhere is the cup?"}])
    batch = proc(prompt, images=[image])      # input_ids, attention_mask, pixel_values, image_grid_thw

Matches Hugging Face's `Qwen2_5_VLProcessor` (with the slow PIL image processor): every
`<|image_pad|>` in the text becomes grid_t*grid_h*grid_w / merge_size**2 copies of itself (images
taken in order across the whole batch), then the text is tokenized without extra special tokens.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from drawing_ops.protocol import IMAGE_PLACEHOLDER, SHAREGPT_ROLES, VIDEO_PLACEHOLDER
from vilasr.errors import ConfigError
from vilasr.processing.image import ImageProcessor, _as_list
from vilasr.processing.tokenizer import IMAGE_PAD, VIDEO_PAD, Tokenizer

# Qwen2.5-VL's chat template (the processor's chat_template.json), a fact of the format: ChatML
# turns, a default system prompt when the first message is not a system message, and each image /
# video as <|vision_start|><|image_pad|><|vision_end|> (or <|video_pad|>), optionally numbered
# with `add_vision_id=True`.
QWEN2_5_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}"
    "{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n"
    "{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}"
    "{{ content['text'] }}"
    "{% endif %}"
    "{% endfor %}"
    "<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."

# The tiny preset's image budget: a still image becomes at most 224*224 px = 16x16 patches = 64
# merged LM tokens (more only for aspect ratios beyond ~64:1, where the short side is held at 28).
TINY_MIN_PIXELS = 56 * 56
TINY_MAX_PIXELS = 224 * 224

_PLACEHOLDER = re.compile(re.escape(IMAGE_PLACEHOLDER) + "|" + re.escape(VIDEO_PLACEHOLDER))


# ----------------------------------------------------------------------------------------------
# Chat template rendering (jinja2, sandboxed, same environment options as transformers)
# ----------------------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _compile_template(template: str):
    try:
        import jinja2
        from jinja2.ext import Extension, loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError as e:  # pragma: no cover - jinja2 comes with torch/transformers
        raise ConfigError("rendering chat templates needs jinja2: `pip install jinja2`") from e

    class _Generation(Extension):
        """Accept `{% generation %}...{% endgeneration %}` blocks (rendered as their body)."""

        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

        def _body(self, caller):
            return caller()

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        from datetime import datetime

        return datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[_Generation, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(template)


def _plain(value):
    """Only JSON-like data enters the template sandbox; images and arrays become "<TypeName>"."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, Mapping):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return f"<{type(value).__name__}>"


def sharegpt_to_messages(conversation: Sequence[Mapping]) -> list[dict]:
    """LLaMA-Factory sharegpt turns -> structured chat messages.

    Accepts `{"role", "content"}` or `{"from", "value"}` turns (human/gpt/system); `<image>` and
    `<video>` placeholders in the text become `{"type": "image"}` / `{"type": "video"}` parts.
    Messages that are already structured (content is a list) pass through unchanged.
    """
    out = []
    for turn in conversation:
        if "role" in turn:
            role, content = turn["role"], turn.get("content")
        elif "from" in turn:
            role, content = str(SHAREGPT_ROLES.get(turn["from"], turn["from"])), turn.get("value")
        else:
            raise ValueError(f"a chat turn needs 'role'/'content' (or 'from'/'value'); got keys {sorted(turn)}")
        if isinstance(content, str) and _PLACEHOLDER.search(content):
            parts: list[dict] = []
            pos = 0
            for m in _PLACEHOLDER.finditer(content):
                if m.start() > pos:
                    parts.append({"type": "text", "text": content[pos : m.start()]})
                parts.append({"type": "image" if m.group() == IMAGE_PLACEHOLDER else "video"})
                pos = m.end()
            if pos < len(content):
                parts.append({"type": "text", "text": content[pos:]})
            content = parts
        out.append({**{k: v for k, v in turn.items() if k not in ("from", "value")}, "role": role, "content": content})
    return out


# ----------------------------------------------------------------------------------------------
# Processor
# ----------------------------------------------------------------------------------------------


class Processor:
    """Tokenizer + image preprocessing + chat template of a Qwen2.5-VL model."""

    def __init__(self, tokenizer: Tokenizer, image_processor: ImageProcessor | None = None, chat_template: str | None = None):
        self.tokenizer = tokenizer
        self.image_processor = image_processor if image_processor is not None else ImageProcessor()
        self.chat_template = chat_template if chat_template is not None else QWEN2_5_VL_CHAT_TEMPLATE
        # "assistant\n" after <|im_start|> (the assistant header), used by assistant_token_mask.
        self._assistant_role_ids = tuple(tokenizer.encode("assistant"))
        self._newline_ids = tuple(tokenizer.encode("\n"))

    # ------------------------------------------------------------------------------------------
    # construction
    # ------------------------------------------------------------------------------------------

    @classmethod
    def tiny(cls, *, min_pixels: int = TINY_MIN_PIXELS, max_pixels: int = TINY_MAX_PIXELS) -> "Processor":
        """Built-in tiny tokenizer (vocab 2048) and a 224*224 px image budget (<= 64 image tokens)."""
        return cls(Tokenizer.tiny(), ImageProcessor(min_pixels=min_pixels, max_pixels=max_pixels))

    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, min_pixels: int | None = None, max_pixels: int | None = None
    ) -> "Processor":
        """Read a Hugging Face Qwen2.5-VL folder: tokenizer files, preprocessor_config.json and the
        chat template (chat_template.jinja, chat_template.json, tokenizer_config.json's, else ours).

        `min_pixels` / `max_pixels` override the folder's values (ViLaSR trains with
        max_pixels=256*28*28)."""
        folder = Path(path)
        tokenizer = Tokenizer.from_pretrained(folder)
        pre = folder / "preprocessor_config.json"
        config = {}
        if pre.exists():
            try:
                config = json.loads(pre.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise ConfigError(f"cannot read {pre}: {e}") from e
        try:
            image_processor = ImageProcessor.from_config(config, min_pixels=min_pixels, max_pixels=max_pixels)
        except ValueError as e:
            raise ConfigError(f"{pre}: {e}") from e
        return cls(tokenizer, image_processor, _read_chat_template(folder, tokenizer))

    def save_pretrained(self, path: str | Path) -> None:
        """Write tokenizer.json, tokenizer_config.json, preprocessor_config.json and chat_template.json."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(folder)
        (folder / "preprocessor_config.json").write_text(json.dumps(self.image_processor.to_config(), indent=2) + "\n")
        (folder / "chat_template.json").write_text(
            json.dumps({"chat_template": self.chat_template}, indent=2, ensure_ascii=False) + "\n"
        )

    # ------------------------------------------------------------------------------------------
    # chat template
    # ------------------------------------------------------------------------------------------

    def apply_chat_template(self, messages: Sequence[Mapping], add_generation_prompt: bool = True, **kwargs) -> str:
        """Render one conversation to the prompt string.

        `messages` may be sharegpt turns (string content with `<image>` placeholders) or Hugging
        Face structured messages (content lists of `{"type": "image"}` / `{"type": "text", ...}`).
        Extra keyword arguments reach the template (e.g. `add_vision_id=True`).
        """
        if isinstance(messages, Mapping) and "conversations" in messages:
            messages = messages["conversations"]
        chat = _plain(sharegpt_to_messages(messages))
        variables = {
            "eos_token": self.tokenizer.eos_token,
            "pad_token": self.tokenizer.pad_token,
            **_plain(kwargs),
        }
        variables.setdefault("tools", None)
        variables.setdefault("documents", None)
        return _compile_template(self.chat_template).render(
            messages=chat, add_generation_prompt=add_generation_prompt, **variables
        )

    # ------------------------------------------------------------------------------------------
    # encoding
    # ------------------------------------------------------------------------------------------

    def __call__(
        self,
        text: str | Sequence[str],
        images=None,
        videos=None,
        *,
        padding: bool | str = True,
        padding_side: str = "right",
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        return_tensors: str = "np",
        video_fps: float = 2.0,
    ) -> dict:
        """Tokenize prompts and preprocess their images.

        Each `<|image_pad|>` (`<|video_pad|>`) in `text` is taken by the next image (video), in order
        across the batch, and expanded to that image's number of merged patches. Returns a dict of
        NumPy arrays: `input_ids` and `attention_mask` (B, L) int32; with images `pixel_values`
        (N, 3*2*14*14) float32 and `image_grid_thw` (n, 3) int32; with videos
        `pixel_values_videos`, `video_grid_thw` and `second_per_grid_ts` (temporal_patch_size /
        `video_fps` per video).

        padding: True/"longest" pads to the longest row, "max_length" to `max_length`, False needs
        equal lengths; `pad_to_multiple_of` rounds the padded length up. `return_tensors`: "np",
        or "jax" for jax arrays.
        """
        texts = [text] if isinstance(text, str) else list(text)
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        image_list = _as_list(images) if images is not None else []
        video_list = _video_list(videos) if videos is not None else []
        n_image_slots = sum(t.count(IMAGE_PAD) for t in texts)
        n_video_slots = sum(t.count(VIDEO_PAD) for t in texts)
        if n_image_slots != len(image_list):
            raise ValueError(
                f"the text has {n_image_slots} {IMAGE_PAD} placeholders but {len(image_list)} images were given;"
                " render prompts with apply_chat_template (one placeholder per image)"
            )
        if n_video_slots != len(video_list):
            raise ValueError(
                f"the text has {n_video_slots} {VIDEO_PAD} placeholders but {len(video_list)} videos were given"
            )

        out: dict = {}
        merge = self.image_processor.merge_size**2
        image_counts: list[int] = []
        video_counts: list[int] = []
        if image_list:
            vis = self.image_processor(image_list)
            out.update(vis)
            image_counts = [int(np.prod(g)) // merge for g in vis["image_grid_thw"]]
        if video_list:
            vid = self.image_processor.videos(video_list)
            out.update(vid)
            video_counts = [int(np.prod(g)) // merge for g in vid["video_grid_thw"]]
            out["second_per_grid_ts"] = np.full(
                len(video_list), self.image_processor.temporal_patch_size / video_fps, dtype=np.float32
            )

        expanded = expand_placeholders(texts, image_counts, video_counts)
        rows = self.tokenizer.encode_batch(expanded)
        ids, mask = _pad(
            rows, self.tokenizer.pad_id, padding, padding_side, max_length, pad_to_multiple_of
        )
        out = {"input_ids": ids, "attention_mask": mask, **out}
        if return_tensors == "jax":
            import jax.numpy as jnp

            out = {k: jnp.asarray(v) for k, v in out.items()}
        elif return_tensors != "np":
            raise ValueError(f"return_tensors must be 'np' or 'jax', got {return_tensors!r}")
        return out

    def num_image_tokens(self, height: int, width: int) -> int:
        """How many `<|image_pad|>` tokens an image of this size expands to."""
        return self.image_processor.num_tokens(height, width)

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def batch_decode(self, batch: Iterable[Iterable[int]], skip_special_tokens: bool = False) -> list[str]:
        return self.tokenizer.batch_decode(batch, skip_special_tokens=skip_special_tokens)

    # ------------------------------------------------------------------------------------------
    # loss masks
    # ------------------------------------------------------------------------------------------

    def assistant_token_mask(self, input_ids, include_trailing_newline: bool = False) -> np.ndarray:
        """Boolean mask of the tokens the assistant wrote (the SFT loss targets).

        For each `<|im_start|>` followed by the tokens of "assistant" and a newline token, the mask
        covers everything after that header up to and including the next `<|im_end|>` (or to the
        end of the row when the turn is unterminated). The header itself is not covered. If the
        assistant text itself begins with newlines that the tokenizer merged into the header's
        newline token, that token is covered (it carries assistant text).
        `include_trailing_newline=True` also covers the "\\n" token after `<|im_end|>`, as
        LLaMA-Factory's qwen2_vl template does. Works on (L,) or (B, L) arrays; padding is never
        covered.
        """
        arr = np.asarray(input_ids)
        if arr.ndim == 1:
            return self._assistant_mask_row(arr, include_trailing_newline)
        if arr.ndim != 2:
            raise ValueError(f"input_ids must be (L,) or (B, L), got shape {arr.shape}")
        return np.stack([self._assistant_mask_row(r, include_trailing_newline) for r in arr])

    def _assistant_mask_row(self, row: np.ndarray, include_trailing_newline: bool) -> np.ndarray:
        tok = self.tokenizer
        ids = row.tolist()
        n = len(ids)
        mask = np.zeros(n, dtype=bool)
        role, newline = self._assistant_role_ids, self._newline_ids
        i = 0
        while i < n:
            if ids[i] != tok.im_start_id:
                i += 1
                continue
            j = i + 1
            if tuple(ids[j : j + len(role)]) != role:
                i += 1
                continue
            j += len(role)
            if tuple(ids[j : j + len(newline)]) == newline:
                j += len(newline)
            elif j < n and ids[j] not in (tok.im_end_id, tok.im_start_id) and tok.decode([ids[j]]).startswith("\n"):
                pass  # "\n" merged with newlines of the assistant text: the token holds assistant text
            else:
                i += 1
                continue  # e.g. "<|im_start|>assistants" -- not an assistant header
            end = j
            while end < n and ids[end] != tok.im_end_id:
                end += 1
            stop = min(end + 1, n)  # include <|im_end|>
            if include_trailing_newline and end < n and tuple(ids[stop : stop + len(newline)]) == newline:
                stop += len(newline)
            mask[j:stop] = True
            i = stop
        return mask


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def _read_chat_template(folder: Path, tokenizer: Tokenizer) -> str:
    if (folder / "chat_template.jinja").exists():
        return (folder / "chat_template.jinja").read_text(encoding="utf-8")
    if (folder / "chat_template.json").exists():
        try:
            data = json.loads((folder / "chat_template.json").read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ConfigError(f"cannot read {folder / 'chat_template.json'}: {e}") from e
        template = data.get("chat_template") if isinstance(data, dict) else None
        if not isinstance(template, str):
            raise ConfigError(f"{folder / 'chat_template.json'} has no 'chat_template' string")
        return template
    if tokenizer.chat_template:
        return tokenizer.chat_template
    return QWEN2_5_VL_CHAT_TEMPLATE


def _video_list(videos) -> list:
    """A video is a sequence of frames (a list of images, or a (T, H, W, C) array)."""
    if isinstance(videos, np.ndarray):
        return [videos] if videos.ndim == 4 else list(videos)
    videos = list(videos)
    if videos and not isinstance(videos[0], (list, tuple, np.ndarray)):
        return [videos]  # one video given as a flat list of PIL frames
    if videos and isinstance(videos[0], np.ndarray) and videos[0].ndim == 3:
        return [videos]  # one video as a list of (H, W, C) frames
    return videos


def expand_placeholders(texts: list[str], image_counts: list[int], video_counts: list[int]) -> list[str]:
    """Each image (video) pad token, in order across `texts`, repeated to its number of tokens."""
    if not image_counts and not video_counts:
        return texts
    pattern = re.compile(f"{re.escape(IMAGE_PAD)}|{re.escape(VIDEO_PAD)}")
    images, videos = iter(image_counts), iter(video_counts)

    def repl(m: re.Match) -> str:
        if m.group() == IMAGE_PAD:
            return IMAGE_PAD * next(images)
        return VIDEO_PAD * next(videos)

    return [pattern.sub(repl, t) for t in texts]


def _pad(rows, pad_id, padding, side, max_length, multiple) -> tuple[np.ndarray, np.ndarray]:
    lengths = [len(r) for r in rows]
    longest = max(lengths, default=0)
    if padding is True or padding == "longest":
        target = longest
    elif padding == "max_length":
        if max_length is None:
            raise ValueError("padding='max_length' needs max_length")
        if longest > max_length:
            raise ValueError(f"a row has {longest} tokens, more than max_length={max_length}; truncate the prompt")
        target = max_length
    elif padding is False or padding == "do_not_pad":
        if len(set(lengths)) > 1:
            raise ValueError(f"rows have different lengths {sorted(set(lengths))}; pass padding=True")
        target = longest
    else:
        raise ValueError(f"padding must be True, False, 'longest' or 'max_length', got {padding!r}")
    if multiple:
        target = -(-target // multiple) * multiple
    ids = np.full((len(rows), target), pad_id, dtype=np.int32)
    mask = np.zeros((len(rows), target), dtype=np.int32)
    for b, r in enumerate(rows):
        if side == "right":
            ids[b, : len(r)] = r
            mask[b, : len(r)] = 1
        else:
            ids[b, target - len(r) :] = r
            mask[b, target - len(r) :] = 1
    return ids, mask


__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "QWEN2_5_VL_CHAT_TEMPLATE",
    "Processor",
    "TINY_MAX_PIXELS",
    "TINY_MIN_PIXELS",
    "sharegpt_to_messages",
]
