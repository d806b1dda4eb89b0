"""Turning text and images into model inputs, as Qwen2.5-VL's Hugging Face processor does.

    image.py            resize, normalise, patchify (bit-identical to transformers' PIL path)
    tokenizer.py        Qwen2 tokenizers: a local HF folder's, or the built-in tiny one (assets/)
    processor.py        chat template + images + tokenizer in one `Processor`
    tokenizer_build.py  how the tiny tokenizer asset was made
"""

from vilasr.processing.image import ImageProcessor
from vilasr.processing.processor import Processor, sharegpt_to_messages
from vilasr.processing.tokenizer import Tokenizer

__all__ = ["ImageProcessor", "Processor", "Tokenizer", "sharegpt_to_messages"]
