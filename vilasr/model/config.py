"""Qwen2.5-VL configuration: frozen dataclasses, presets, and the Hugging Face config.json layout.

`Qwen25VLConfig.from_hf_dict` reads both layouts transformers has used for Qwen2.5-VL:

* the flat legacy layout of the released checkpoints (text fields at the top level,
  `rope_scaling = {"type": "mrope", "mrope_section": [...]}`, a nested `vision_config`), and
* the nested layout of newer transformers (`text_config` with `rope_parameters`).

`to_hf_dict()` writes the flat layout by default (what the released checkpoints use and what
every transformers version since 4.49 loads); `to_hf_dict(layout="nested")` writes the newer one.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from vilasr.errors import ConfigError

_SUPPORTED_ROPE_TYPES = ("default", "mrope")


class Remat(str, enum.Enum):
    """What each scanned layer keeps for the backward pass (the rest is recomputed).

    NONE keeps every activation; FULL keeps only the layer's input (least memory, one more
    forward); DOTS keeps the outputs of the weight matmuls and recomputes the rest (attention
    scores included, whose size grows with the square of the sequence).
    """

    NONE = "none"
    FULL = "full"
    DOTS = "dots"

    @classmethod
    def of(cls, value: "Remat | str | bool | None") -> "Remat":
        """Accept a Remat, its name ('none', 'full', 'dots') or a bool (True = 'full')."""
        if isinstance(value, cls):
            return value
        if value is None or isinstance(value, bool):
            return cls.FULL if value else cls.NONE
        try:
            return cls(str(value).lower())
        except ValueError:
            raise ConfigError(f"unknown remat policy {value!r}; choose one of "
                              f"{[m.value for m in cls]} (or True/False)") from None


@dataclasses.dataclass(frozen=True)
class VisionConfig:
    """The vision tower (ViT with window attention and a 2x2 patch merger)."""

    depth: int = 32
    hidden_size: int = 1280
    intermediate_size: int = 3420
    num_heads: int = 16
    out_hidden_size: int = 3584
    patch_size: int = 14
    temporal_patch_size: int = 2
    spatial_merge_size: int = 2
    in_channels: int = 3
    window_size: int = 112
    fullatt_block_indexes: tuple[int, ...] = (7, 15, 23, 31)
    tokens_per_second: int = 2
    rope_theta: float = 10000.0
    hidden_act: str = "silu"
    initializer_range: float = 0.02
    # transformers hard-codes eps=1e-6 for every vision RMSNorm (blocks and merger).
    rms_norm_eps: float = 1e-6

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def patch_dim(self) -> int:
        """Length of one flattened input patch: channels x temporal x patch x patch."""
        return self.in_channels * self.temporal_patch_size * self.patch_size**2

    @property
    def merge_unit(self) -> int:
        """Number of patches merged into one LM token (4 for a 2x2 merge)."""
        return self.spatial_merge_size**2

    @property
    def merged_hidden_size(self) -> int:
        return self.hidden_size * self.merge_unit

    @property
    def window_merged(self) -> int:
        """Side of an attention window in merged tokens (112 px / 14 px / 2 = 4)."""
        return self.window_size // self.spatial_merge_size // self.patch_size

    def validate(self) -> None:
        _positive(self, "depth", "hidden_size", "intermediate_size", "num_heads", "out_hidden_size",
                  "patch_size", "temporal_patch_size", "spatial_merge_size", "in_channels", "window_size")
        if self.hidden_size % self.num_heads:
            raise ConfigError(
                f"vision hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.head_dim % 4:
            raise ConfigError(
                f"vision head_dim {self.head_dim} must be a multiple of 4 for the 2D rotary embedding "
                "(height and width each rotate a quarter-frequency band); change hidden_size or num_heads")
        unit = self.patch_size * self.spatial_merge_size
        if self.window_size % unit:
            raise ConfigError(
                f"vision window_size {self.window_size} must be a multiple of patch_size x "
                f"spatial_merge_size = {unit}")
        bad = [i for i in self.fullatt_block_indexes if not 0 <= i < self.depth]
        if bad:
            raise ConfigError(
                f"vision fullatt_block_indexes {bad} are outside 0..{self.depth - 1} (depth {self.depth})")
        if self.hidden_act != "silu":
            raise ConfigError(f"vision hidden_act {self.hidden_act!r} is not supported (Qwen2.5-VL uses 'silu')")


@dataclasses.dataclass(frozen=True)
class TextConfig:
    """The Qwen2 decoder with multimodal rotary embedding."""

    vocab_size: int = 152064
    hidden_size: int = 3584
    intermediate_size: int = 18944
    num_hidden_layers: int = 28
    num_attention_heads: int = 28
    num_key_value_heads: int = 4
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1_000_000.0
    mrope_section: tuple[int, int, int] = (16, 24, 24)
    max_position_embeddings: int = 128000
    hidden_act: str = "silu"
    initializer_range: float = 0.02

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def num_groups(self) -> int:
        """Query heads per key/value head (GQA ratio)."""
        return self.num_attention_heads // self.num_key_value_heads

    def validate(self) -> None:
        _positive(self, "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                  "num_attention_heads", "num_key_value_heads", "max_position_embeddings")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"text hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                f"{self.num_attention_heads}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(
                f"text num_attention_heads {self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads {self.num_key_value_heads}")
        if self.head_dim % 2:
            raise ConfigError(f"text head_dim {self.head_dim} must be even for rotary embedding")
        if len(self.mrope_section) != 3 or any(s <= 0 for s in self.mrope_section):
            raise ConfigError(
                f"mrope_section {list(self.mrope_section)} must hold 3 positive sizes "
                "(temporal, height, width)")
        if 2 * sum(self.mrope_section) != self.head_dim:
            raise ConfigError(
                f"mrope_section {list(self.mrope_section)} sums to {sum(self.mrope_section)} but must sum "
                f"to head_dim/2 = {self.head_dim // 2} (head_dim {self.head_dim})")
        if self.hidden_act != "silu":
            raise ConfigError(f"text hidden_act {self.hidden_act!r} is not supported (Qwen2.5-VL uses 'silu')")


@dataclasses.dataclass(frozen=True)
class Qwen25VLConfig:
    """The whole model: vision tower + decoder + special token ids + runtime options.

    `remat` (what the backward pass keeps of each layer, decoder and vision tower: a `Remat`
    policy; True/False read as 'full'/'none') is a runtime option and is not written to
    config.json.
    """

    vision: VisionConfig = dataclasses.field(default_factory=VisionConfig)
    text: TextConfig = dataclasses.field(default_factory=TextConfig)
    image_token_id: int = 151655
    video_token_id: int = 151656
    vision_start_token_id: int = 151652
    vision_end_token_id: int = 151653
    bos_token_id: int | None = 151643
    eos_token_ids: tuple[int, ...] = (151645, 151643)
    pad_token_id: int | None = 151643
    tie_word_embeddings: bool = False
    remat: Remat = Remat.NONE

    def __post_init__(self):
        # Accept lists for tuple fields (e.g. from JSON) and keep the dataclass hashable.
        object.__setattr__(self, "eos_token_ids", tuple(int(t) for t in self.eos_token_ids))
        object.__setattr__(self, "remat", Remat.of(self.remat))
        if not isinstance(self.vision.fullatt_block_indexes, tuple) or not isinstance(
                self.text.mrope_section, tuple):
            raise ConfigError("fullatt_block_indexes and mrope_section must be tuples; "
                              "build configs with Qwen25VLConfig.from_hf_dict or the presets")
        self.validate()

    @property
    def placeholder_ids(self) -> tuple[int, ...]:
        """Tokens that mark where an image or video goes. Only the processor writes them: the
        sampler never picks one (a model-written placeholder would claim image features that do not
        exist when the trajectory is run again), and scoring a trajectory bans them alike."""
        return (self.vision_start_token_id, self.vision_end_token_id, self.image_token_id, self.video_token_id)

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        self.vision.validate()
        self.text.validate()
        if self.vision.out_hidden_size != self.text.hidden_size:
            raise ConfigError(
                f"vision out_hidden_size {self.vision.out_hidden_size} must equal text hidden_size "
                f"{self.text.hidden_size} (image features replace token embeddings)")
        ids = {
            "image_token_id": self.image_token_id,
            "video_token_id": self.video_token_id,
            "vision_start_token_id": self.vision_start_token_id,
            "vision_end_token_id": self.vision_end_token_id,
        }
        if self.bos_token_id is not None:
            ids["bos_token_id"] = self.bos_token_id
        if self.pad_token_id is not None:
            ids["pad_token_id"] = self.pad_token_id
        for i, e in enumerate(self.eos_token_ids):
            ids[f"eos_token_ids[{i}]"] = e
        for name, value in ids.items():
            if not 0 <= value < self.text.vocab_size:
                raise ConfigError(f"{name} {value} is outside the vocabulary (vocab_size {self.text.vocab_size})")
        if not self.eos_token_ids:
            raise ConfigError("eos_token_ids is empty; give at least one end-of-sequence id")

    def replace(self, **changes) -> "Qwen25VLConfig":
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ presets
    @classmethod
    def preset(cls, name: str, **overrides) -> "Qwen25VLConfig":
        """`tiny` (a few million parameters, trains on a laptop CPU), `3b` or `7b` (the released dims)."""
        if name == "7b":
            cfg = cls(
                vision=VisionConfig(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16,
                                    out_hidden_size=3584, fullatt_block_indexes=(7, 15, 23, 31),
                                    window_size=112, tokens_per_second=2),
                text=TextConfig(vocab_size=152064, hidden_size=3584, intermediate_size=18944,
                                num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                                rope_theta=1_000_000.0, mrope_section=(16, 24, 24), rms_norm_eps=1e-6,
                                max_position_embeddings=128000),
                tie_word_embeddings=False,
            )
        elif name == "3b":
            cfg = cls(
                vision=VisionConfig(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16,
                                    out_hidden_size=2048, fullatt_block_indexes=(7, 15, 23, 31),
                                    window_size=112, tokens_per_second=2),
                text=TextConfig(vocab_size=151936, hidden_size=2048, intermediate_size=11008,
                                num_hidden_layers=36, num_attention_heads=16, num_key_value_heads=2,
                                rope_theta=1_000_000.0, mrope_section=(16, 24, 24), rms_norm_eps=1e-6,
                                max_position_embeddings=128000),
                tie_word_embeddings=True,
            )
        elif name == "tiny":
            # Special ids are fixed: the tiny built-in tokenizer (vilasr/processing/tokenizer.py) uses exactly these.
            cfg = cls(
                vision=VisionConfig(depth=4, hidden_size=64, intermediate_size=128, num_heads=4,
                                    out_hidden_size=128, fullatt_block_indexes=(1, 3), window_size=112,
                                    tokens_per_second=2),
                text=TextConfig(vocab_size=2048, hidden_size=128, intermediate_size=384,
                                num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                                rope_theta=1_000_000.0, mrope_section=(4, 6, 6), rms_norm_eps=1e-6,
                                max_position_embeddings=32768),
                image_token_id=2037,
                video_token_id=2038,
                vision_start_token_id=2035,
                vision_end_token_id=2036,
                bos_token_id=2032,
                eos_token_ids=(2034, 2032),
                pad_token_id=2032,
                tie_word_embeddings=False,
            )
        else:
            raise ConfigError(f"unknown preset {name!r}; choose one of 'tiny', '3b', '7b'")
        return cfg.replace(**overrides) if overrides else cfg

    # ------------------------------------------------------------------ HF config.json
    @classmethod
    def from_hf_dict(cls, d: dict[str, Any]) -> "Qwen25VLConfig":
        """Build from a transformers `Qwen2_5_VLConfig` json dict (flat legacy or nested layout)."""
        if not isinstance(d, dict):
            raise ConfigError(f"config must be a dict, got {type(d).__name__}")
        model_type = d.get("model_type", "qwen2_5_vl")
        if model_type != "qwen2_5_vl":
            raise ConfigError(
                f"config.json model_type is {model_type!r}; only 'qwen2_5_vl' (Qwen2.5-VL) is supported")
        text_d = dict(d["text_config"]) if isinstance(d.get("text_config"), dict) else dict(d)
        vis_d = d.get("vision_config")
        if not isinstance(vis_d, dict):
            raise ConfigError("config.json has no 'vision_config' section; is this a Qwen2.5-VL checkpoint?")

        def pick(key, *sources, default=None):
            for src in sources:
                if key in src and src[key] is not None:
                    return src[key]
            return default

        # --- rope: rope_parameters (new) or rope_scaling (legacy) + rope_theta
        rope = text_d.get("rope_parameters") or text_d.get("rope_scaling") or d.get("rope_scaling") or {}
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type not in _SUPPORTED_ROPE_TYPES:
            raise ConfigError(
                f"unsupported rope type {rope_type!r}; only the default multimodal rope ('mrope'/'default') "
                "of Qwen2.5-VL is implemented")
        if rope.get("mrope_interleaved"):
            raise ConfigError("interleaved mrope (Qwen3-VL style) is not supported by this Qwen2.5-VL model")
        if rope.get("factor") not in (None, 1, 1.0):
            raise ConfigError(f"rope scaling factor {rope['factor']} is not supported (only unscaled mrope)")
        rope_theta = float(pick("rope_theta", rope, text_d, d, default=1_000_000.0))
        mrope_section = tuple(int(s) for s in rope.get("mrope_section", (16, 24, 24)))
        if pick("use_sliding_window", text_d, d, default=False):
            raise ConfigError("use_sliding_window=true is not supported (Qwen2.5-VL checkpoints use full attention)")

        try:
            hidden = int(text_d["hidden_size"])
            heads = int(text_d["num_attention_heads"])
            text = TextConfig(
                vocab_size=int(text_d["vocab_size"]),
                hidden_size=hidden,
                intermediate_size=int(text_d["intermediate_size"]),
                num_hidden_layers=int(text_d["num_hidden_layers"]),
                num_attention_heads=heads,
                num_key_value_heads=int(pick("num_key_value_heads", text_d, default=heads)),
                rms_norm_eps=float(pick("rms_norm_eps", text_d, default=1e-6)),
                rope_theta=rope_theta,
                mrope_section=mrope_section,
                max_position_embeddings=int(pick("max_position_embeddings", text_d, default=128000)),
                hidden_act=str(pick("hidden_act", text_d, default="silu")),
                initializer_range=float(pick("initializer_range", text_d, default=0.02)),
            )
            head_dim = text_d.get("head_dim")
            if head_dim is not None and int(head_dim) != hidden // heads:
                raise ConfigError(
                    f"text head_dim {head_dim} differs from hidden_size/num_attention_heads = {hidden // heads}; "
                    "Qwen2.5-VL derives head_dim from the width")
            vis_rope = vis_d.get("rope_parameters") or {}
            vis_rope_type = vis_rope.get("rope_type", "axial")
            if vis_rope_type not in ("axial", "default"):
                raise ConfigError(f"unsupported vision rope type {vis_rope_type!r}; expected 'axial'")
            vision = VisionConfig(
                depth=int(vis_d["depth"]),
                hidden_size=int(vis_d.get("hidden_size", 1280)),
                intermediate_size=int(vis_d["intermediate_size"]),
                num_heads=int(vis_d["num_heads"]),
                out_hidden_size=int(vis_d.get("out_hidden_size", hidden)),
                patch_size=int(pick("patch_size", vis_d, default=14)),
                temporal_patch_size=int(pick("temporal_patch_size", vis_d, default=2)),
                spatial_merge_size=int(pick("spatial_merge_size", vis_d, default=2)),
                in_channels=int(pick("in_channels", vis_d, default=pick("in_chans", vis_d, default=3))),
                window_size=int(pick("window_size", vis_d, default=112)),
                fullatt_block_indexes=tuple(int(i) for i in pick(
                    "fullatt_block_indexes", vis_d, default=(7, 15, 23, 31))),
                tokens_per_second=int(pick("tokens_per_second", vis_d, default=2)),
                rope_theta=float(pick("rope_theta", vis_rope, vis_d, default=10000.0)),
                hidden_act=str(pick("hidden_act", vis_d, default="silu")),
                initializer_range=float(pick("initializer_range", vis_d, default=0.02)),
            )
        except KeyError as e:
            raise ConfigError(f"config.json is missing the required field {e.args[0]!r}") from None
        except (TypeError, ValueError) as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"config.json has a malformed value: {e}") from None

        eos = pick("eos_token_id", d, text_d, default=151645)
        eos_ids = tuple(int(x) for x in eos) if isinstance(eos, (list, tuple)) else (int(eos),)
        tie = bool(d.get("tie_word_embeddings", False) or text_d.get("tie_word_embeddings", False))
        return cls(
            vision=vision,
            text=text,
            image_token_id=int(pick("image_token_id", d, text_d, default=151655)),
            video_token_id=int(pick("video_token_id", d, text_d, default=151656)),
            vision_start_token_id=int(pick("vision_start_token_id", d, text_d, default=151652)),
            vision_end_token_id=int(pick("vision_end_token_id", d, text_d, default=151653)),
            bos_token_id=pick("bos_token_id", d, text_d),
            eos_token_ids=eos_ids,
            pad_token_id=pick("pad_token_id", d, text_d),
            tie_word_embeddings=tie,
        )

    def to_hf_dict(self, layout: str = "flat", torch_dtype: str = "float32") -> dict[str, Any]:
        """The transformers `Qwen2_5_VLConfig` json dict ("flat": released-checkpoint layout; "nested")."""
        t, v = self.text, self.vision
        vision = {
            "model_type": "qwen2_5_vl_vision",
            "depth": v.depth,
            "hidden_size": v.hidden_size,
            "hidden_act": v.hidden_act,
            "intermediate_size": v.intermediate_size,
            "num_heads": v.num_heads,
            "in_channels": v.in_channels,
            "in_chans": v.in_channels,
            "out_hidden_size": v.out_hidden_size,
            "patch_size": v.patch_size,
            "spatial_merge_size": v.spatial_merge_size,
            "spatial_patch_size": v.patch_size,
            "temporal_patch_size": v.temporal_patch_size,
            "window_size": v.window_size,
            "fullatt_block_indexes": list(v.fullatt_block_indexes),
            "tokens_per_second": v.tokens_per_second,
            "initializer_range": v.initializer_range,
        }
        if v.rope_theta != 10000.0:
            vision["rope_parameters"] = {"rope_type": "axial", "rope_theta": v.rope_theta}
        eos = self.eos_token_ids[0] if len(self.eos_token_ids) == 1 else list(self.eos_token_ids)
        text = {
            "vocab_size": t.vocab_size,
            "hidden_size": t.hidden_size,
            "intermediate_size": t.intermediate_size,
            "num_hidden_layers": t.num_hidden_layers,
            "num_attention_heads": t.num_attention_heads,
            "num_key_value_heads": t.num_key_value_heads,
            "hidden_act": t.hidden_act,
            "max_position_embeddings": t.max_position_embeddings,
            "rms_norm_eps": t.rms_norm_eps,
            "initializer_range": t.initializer_range,
            "use_sliding_window": False,
            "sliding_window": None,
            "max_window_layers": t.num_hidden_layers,
            "attention_dropout": 0.0,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": eos,
            "pad_token_id": self.pad_token_id,
        }
        ids = {
            "image_token_id": self.image_token_id,
            "video_token_id": self.video_token_id,
            "vision_start_token_id": self.vision_start_token_id,
            "vision_end_token_id": self.vision_end_token_id,
        }
        out: dict[str, Any] = {
            "architectures": ["Qwen2_5_VLForConditionalGeneration"],
            "model_type": "qwen2_5_vl",
            "torch_dtype": torch_dtype,
            "tie_word_embeddings": self.tie_word_embeddings,
        }
        if layout == "flat":
            out.update(text)
            out["rope_theta"] = t.rope_theta
            out["rope_scaling"] = {"type": "mrope", "mrope_section": list(t.mrope_section)}
            out.update(ids)
            out["vision_config"] = vision
        elif layout == "nested":
            text["model_type"] = "qwen2_5_vl_text"
            text["rope_parameters"] = {"rope_type": "default", "rope_theta": t.rope_theta,
                                       "mrope_section": list(t.mrope_section)}
            text["tie_word_embeddings"] = self.tie_word_embeddings
            out["text_config"] = text
            out["vision_config"] = vision
            out.update(ids)
            out["eos_token_id"] = eos
            out["bos_token_id"] = self.bos_token_id
        else:
            raise ConfigError(f"unknown config layout {layout!r}; use 'flat' or 'nested'")
        return out


def _positive(obj, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{type(obj).__name__}.{name} must be a positive integer, got {value!r}")
