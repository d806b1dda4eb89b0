"""Text tokenizer for Qwen2.5-VL models: a thin wrapper around a `tokenizers.Tokenizer`.

Two ways to get one:

* `Tokenizer.from_pretrained(folder)` reads a Hugging Face folder (`tokenizer.json`, or
  `vocab.json` + `merges.txt`; `tokenizer_config.json` for the eos/pad tokens, extra added tokens
  and the chat template; `generation_config.json` for extra stop ids).
* `Tokenizer.tiny()` loads the built-in 2048-entry tokenizer shipped as
  `vilasr/processing/assets/tiny_tokenizer.json` (made by `python -m vilasr.processing.tokenizer_build`), with the
  special ids the tiny model preset fixes (`<|endoftext|>` 2032 ... `<|video_pad|>` 2038).

Encoding never adds BOS/EOS tokens (Qwen2 has none); special-token strings that appear in the text
are encoded as their single ids, exactly like Hugging Face's fast tokenizer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from vilasr.errors import ConfigError

TINY_TOKENIZER_PATH = Path(__file__).resolve().parent / "assets" / "tiny_tokenizer.json"

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
IMAGE_PAD = "<|image_pad|>"
VIDEO_PAD = "<|video_pad|>"

# The ids of the tiny preset (see vilasr.processing.tokenizer_build); the model config relies on them.
TINY_SPECIAL_IDS = {
    ENDOFTEXT: 2032,
    IM_START: 2033,
    IM_END: 2034,
    VISION_START: 2035,
    VISION_END: 2036,
    IMAGE_PAD: 2037,
    VIDEO_PAD: 2038,
}


def _token_content(value) -> str | None:
    """tokenizer_config stores a token as a string or as an AddedToken dict."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and "content" in value:
        return value["content"]
    raise ConfigError(f"cannot read a token from {value!r}: expected a string or a dict with 'content'")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read {path}: {e}; fix or remove the file") from e


class Tokenizer:
    """Encode/decode text; exposes the Qwen2.5-VL special ids as attributes.

    Attributes: `pad_id`, `eos_id` (the chat end-of-turn token), `eos_ids` (every id that stops
    generation), `endoftext_id`, `im_start_id`, `im_end_id`, `vision_start_id`, `vision_end_id`,
    `image_pad_id`, `video_pad_id`, `vocab_size` (including added tokens), `chat_template`
    (the tokenizer_config template, or None).
    """

    def __init__(
        self,
        backend,
        *,
        eos_token: str = IM_END,
        pad_token: str = ENDOFTEXT,
        extra_eos_ids: Iterable[int] = (),
        chat_template: str | None = None,
    ):
        self.backend = backend
        self.chat_template = chat_template
        self.eos_token = eos_token
        self.pad_token = pad_token

        def need(token: str) -> int:
            i = backend.token_to_id(token)
            if i is None:
                raise ConfigError(
                    f"the tokenizer has no token {token!r}; Qwen2.5-VL needs it (add it to tokenizer.json's added_tokens)"
                )
            return i

        self.endoftext_id = need(ENDOFTEXT)
        self.im_start_id = need(IM_START)
        self.im_end_id = need(IM_END)
        self.vision_start_id = need(VISION_START)
        self.vision_end_id = need(VISION_END)
        self.image_pad_id = need(IMAGE_PAD)
        self.video_pad_id = need(VIDEO_PAD)
        self.eos_id = need(eos_token)
        self.pad_id = need(pad_token)
        eos = [self.eos_id, self.im_end_id, self.endoftext_id, *extra_eos_ids]
        self.eos_ids: tuple[int, ...] = tuple(dict.fromkeys(int(i) for i in eos))
        self.special_ids: frozenset[int] = frozenset(
            i for i, t in backend.get_added_tokens_decoder().items() if t.special
        )

    # ------------------------------------------------------------------------------------------
    # construction
    # ------------------------------------------------------------------------------------------

    @classmethod
    def tiny(cls) -> "Tokenizer":
        """The built-in deterministic 2048-id tokenizer (see `vilasr.processing.tokenizer_build`)."""
        from tokenizers import Tokenizer as _Backend

        if not TINY_TOKENIZER_PATH.exists():
            raise ConfigError(
                f"{TINY_TOKENIZER_PATH} is missing; rebuild it with `python -m vilasr.processing.tokenizer_build`"
            )
        return cls(_Backend.from_file(str(TINY_TOKENIZER_PATH)))

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "Tokenizer":
        """Read a Hugging Face tokenizer folder (e.g. a downloaded Qwen2.5-VL checkpoint)."""
        from tokenizers import AddedToken
        from tokenizers import Tokenizer as _Backend

        folder = Path(path)
        if not folder.is_dir():
            raise ConfigError(f"{folder} is not a folder; pass the checkpoint folder that holds tokenizer.json")
        config = _read_json(folder / "tokenizer_config.json") if (folder / "tokenizer_config.json").exists() else {}

        if (folder / "tokenizer.json").exists():
            try:
                backend = _Backend.from_file(str(folder / "tokenizer.json"))
            except Exception as e:  # tokenizers raises a plain Exception on bad files
                raise ConfigError(f"cannot load {folder / 'tokenizer.json'}: {e}") from e
        elif (folder / "vocab.json").exists() and (folder / "merges.txt").exists():
            from tokenizers import models

            from vilasr.processing.tokenizer_build import qwen2_pipeline

            bpe = models.BPE.from_file(str(folder / "vocab.json"), str(folder / "merges.txt"), unk_token=None)
            backend = qwen2_pipeline(bpe)
        else:
            raise ConfigError(f"{folder} has neither tokenizer.json nor vocab.json + merges.txt")

        # Added tokens declared only in tokenizer_config.json (older folders): add them in id order
        # and check they land on the declared ids.
        declared = config.get("added_tokens_decoder") or {}
        for key in sorted(declared, key=int):
            entry = declared[key]
            content = entry["content"]
            if backend.token_to_id(content) is not None:
                if backend.token_to_id(content) != int(key):
                    raise ConfigError(
                        f"{content!r} has id {backend.token_to_id(content)} in tokenizer.json but {key} in "
                        "tokenizer_config.json; the folder is inconsistent"
                    )
                continue
            tok = AddedToken(
                content,
                single_word=entry.get("single_word", False),
                lstrip=entry.get("lstrip", False),
                rstrip=entry.get("rstrip", False),
                normalized=entry.get("normalized", False),
                special=entry.get("special", True),
            )
            (backend.add_special_tokens if tok.special else backend.add_tokens)([tok])
            if backend.token_to_id(content) != int(key):
                raise ConfigError(
                    f"tokenizer_config.json declares {content!r} at id {key} but it landed at "
                    f"{backend.token_to_id(content)}; add it to tokenizer.json instead"
                )

        template = config.get("chat_template")
        if isinstance(template, list):  # [{"name": ..., "template": ...}, ...]
            by_name = {t.get("name"): t.get("template") for t in template}
            template = by_name.get("default") or next(iter(by_name.values()), None)

        extra_eos: list[int] = []
        if (folder / "generation_config.json").exists():
            gen = _read_json(folder / "generation_config.json").get("eos_token_id")
            if gen is not None:
                extra_eos = [int(i) for i in (gen if isinstance(gen, list) else [gen])]

        return cls(
            backend,
            eos_token=_token_content(config.get("eos_token")) or IM_END,
            pad_token=_token_content(config.get("pad_token")) or ENDOFTEXT,
            extra_eos_ids=extra_eos,
            chat_template=template,
        )

    def save_pretrained(self, path: str | Path, *, chat_template: str | None = None) -> None:
        """Write `tokenizer.json` and a `tokenizer_config.json` that Hugging Face can load."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        self.backend.save(str(folder / "tokenizer.json"))
        added = {
            str(i): {
                "content": t.content,
                "lstrip": t.lstrip,
                "normalized": t.normalized,
                "rstrip": t.rstrip,
                "single_word": t.single_word,
                "special": t.special,
            }
            for i, t in sorted(self.backend.get_added_tokens_decoder().items())
        }
        config = {
            "added_tokens_decoder": added,
            "bos_token": None,
            "clean_up_tokenization_spaces": False,
            "eos_token": self.eos_token,
            "pad_token": self.pad_token,
            "errors": "replace",
            "model_max_length": 131072,
            "split_special_tokens": False,
            "tokenizer_class": "Qwen2Tokenizer",
        }
        template = chat_template if chat_template is not None else self.chat_template
        if template is not None:
            config["chat_template"] = template
        (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")

    # ------------------------------------------------------------------------------------------
    # use
    # ------------------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` (no BOS/EOS added; special-token strings become their ids)."""
        return self.backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.backend.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def batch_decode(self, batch: Iterable[Iterable[int]], skip_special_tokens: bool = False) -> list[str]:
        return [self.decode(ids, skip_special_tokens=skip_special_tokens) for ids in batch]

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def id_to_token(self, i: int) -> str | None:
        return self.backend.id_to_token(int(i))

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, eos_ids={self.eos_ids}, pad_id={self.pad_id})"
