"""Qwen2.5-VL in Flax NNX.

    config.py     frozen config dataclasses, presets, Hugging Face config.json both layouts
    layers.py     parameters with logical axis names, Dense, RMSNorm, gated MLP, rotary helpers,
                  stacked layers and the scan over them (with a `Remat` policy)
    vision.py     the vision tower (window attention via a host-side `VisionPlan`)
    rope.py       multimodal rotary positions (M-RoPE)
    attention.py  decoder attention, with and without the KV cache (`KVCache`)
    qwen25vl.py   the model (`Qwen25VL`) and its call contract
    hf.py         Hugging Face safetensors import and export, as plain functions
"""

from vilasr.model.attention import CACHE_BLOCK, KVCache, cached_attention, grouped_attention, keep_layers_apart
from vilasr.model.config import Qwen25VLConfig, Remat, TextConfig, VisionConfig
from vilasr.model.qwen25vl import Qwen25VL, prepare_inputs
from vilasr.model.rope import get_rope_index, mrope_cos_sin
from vilasr.model.vision import VisionPlan, vision_plan

__all__ = ["CACHE_BLOCK", "KVCache", "Qwen25VL", "Qwen25VLConfig", "Remat", "TextConfig", "VisionConfig", "VisionPlan",
           "cached_attention", "get_rope_index", "grouped_attention", "keep_layers_apart", "mrope_cos_sin",
           "prepare_inputs", "vision_plan"]
