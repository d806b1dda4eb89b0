"""Qwen2.5-VL image preprocessing in NumPy (+ PIL for the resize), equal to Hugging Face's slow
`Qwen2VLImageProcessor` (called `Qwen2VLImageProcessorPil` in transformers 5.x).

Steps, per image:

1. to RGB uint8 (PIL images with transparency are composited on white first);
2. `smart_resize`: the target size has both sides multiples of `patch_size * merge_size` (28) and
   `min_pixels <= h * w <= max_pixels`, keeping the aspect ratio as far as it can;
3. resize in uint8 PIL space with `Image.BICUBIC` (`reducing_gap=None`), like transformers' PIL path;
4. rescale by 1/255 (computed in float64, stored as float32) and normalise with the CLIP mean/std
   in float32 -- done here by a 256-entry lookup table per channel, which gives the same float32
   values as the elementwise arithmetic;
5. repeat a still image `temporal_patch_size` (2) times along time; a video's frame count is
   padded up to a multiple of 2 by repeating its last frame;
6. cut into 14x14 patches, ordered row-major over 2x2 merge windows (the four patches of one
   merge window are consecutive), each flattened as (channel, time, row, column):
   `pixel_values` has shape (sum of t*h*w patches, 3 * 2 * 14 * 14) float32, and `grid_thw` holds
   one row (t, h, w) per image or video, in patches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

DEFAULT_MIN_PIXELS = 56 * 56
DEFAULT_MAX_PIXELS = 28 * 28 * 1280
VILASR_TRAIN_MAX_PIXELS = 256 * 28 * 28  # ViLaSR's RL image size (per use: vilasr/uses.py)

_BICUBIC = 3  # PIL.Image.Resampling.BICUBIC
_MAX_ASPECT = 200


def smart_resize(
    height: int,
    width: int,
    factor: int = 28,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[int, int]:
    """The (height, width) Qwen2.5-VL resizes an image of `height` x `width` to.

    Both results are multiples of `factor`; their product lies in [min_pixels, max_pixels] (when
    the bounds allow it). Raises ValueError for aspect ratios above 200.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    if max(height, width) / min(height, width) > _MAX_ASPECT:
        raise ValueError(
            f"aspect ratio {max(height, width) / min(height, width):.1f} of a {height}x{width} image is above "
            f"{_MAX_ASPECT}; crop or pad the image first"
        )
    # Python's round() (half to even) is part of the behaviour being matched.
    h = round(height / factor) * factor
    w = round(width / factor) * factor
    if h * w > max_pixels:
        shrink = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / shrink / factor) * factor)
        w = max(factor, math.floor(width / shrink / factor) * factor)
    elif h * w < min_pixels:
        grow = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * grow / factor) * factor
        w = math.ceil(width * grow / factor) * factor
    return h, w


def to_rgb_array(image) -> np.ndarray:
    """An (H, W, 3) uint8 array from a PIL image or an array (HWC, CHW or HW; uint8 or integral values).

    Transparent PIL images are composited on a white background (as transformers 5.x does);
    4-channel arrays are blended on white with their alpha channel.
    """
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a dependency
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        if "A" in image.getbands() or image.info.get("transparency") is not None:
            rgba = image.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(white, rgba)
        return np.asarray(image.convert("RGB"), dtype=np.uint8)

    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ValueError(f"an image array must be HW, HWC or CHW; got shape {arr.shape}")
    if arr.shape[-1] not in (1, 3, 4) and arr.shape[0] in (1, 3, 4):
        arr = np.moveaxis(arr, 0, -1)  # CHW -> HWC
    if arr.shape[-1] not in (1, 3, 4):
        raise ValueError(f"cannot find the channel axis of an image of shape {arr.shape}; pass HWC with 1, 3 or 4 channels")
    if arr.dtype != np.uint8:
        if not (np.all(arr >= 0) and np.all(arr <= 255) and np.allclose(arr, np.round(arr))):
            raise ValueError(
                f"image values must be integers in [0, 255] (got dtype {arr.dtype}, range "
                f"[{arr.min()}, {arr.max()}]); pass uint8 pixels"
            )
        arr = np.round(arr).astype(np.uint8)
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    elif arr.shape[-1] == 4:
        alpha = arr[..., 3:4] / 255
        arr = np.round(alpha * arr[..., :3] + (1 - alpha) * 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


def resize_rgb(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bicubic resize of an (H, W, 3) uint8 array with PIL (the same call transformers makes)."""
    from PIL import Image

    out = Image.fromarray(rgb).resize((width, height), resample=_BICUBIC, reducing_gap=None)
    return np.asarray(out, dtype=np.uint8)


def _normalise_table(mean: Sequence[float], std: Sequence[float], rescale: float) -> np.ndarray:
    """(3, 256) float32: the normalised value of each uint8 level per channel.

    Same arithmetic as transformers: float64 multiply by `rescale`, cast to float32, then
    (x - mean) / std in float32.
    """
    levels = (np.arange(256, dtype=np.float64) * rescale).astype(np.float32)
    mean32 = np.asarray(mean, dtype=np.float32)[:, None]
    std32 = np.asarray(std, dtype=np.float32)[:, None]
    return ((levels[None, :] - mean32) / std32).astype(np.float32)


def apply_table(table, rgb, xp=np):
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float32 through a per-channel level table; `xp` is
    NumPy or jax.numpy (the rollout normalises drawn images on the device with the same table)."""
    return xp.stack([table[c][rgb[..., c]] for c in range(3)], axis=-3)


def normalise(rgb: np.ndarray, mean=CLIP_MEAN, std=CLIP_STD, rescale: float = 1 / 255) -> np.ndarray:
    """(H, W, 3) uint8 -> (3, H, W) float32, rescaled and mean/std normalised."""
    return apply_table(_normalise_table(mean, std, rescale), rgb)


def patchify(
    frames: np.ndarray, patch_size: int = 14, temporal_patch_size: int = 2, merge_size: int = 2, xp=np
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """(T, C, H, W) float32 frames -> ((t*h*w, C*tps*p*p) patches, (t, h, w)).

    T is padded up to a multiple of `temporal_patch_size` by repeating the last frame. Patches are
    ordered by time, then merge windows row-major, then the patches inside a window row-major.
    """
    n, c, height, width = frames.shape
    unit = patch_size * merge_size
    if height % unit or width % unit:
        raise ValueError(f"frame size {height}x{width} is not a multiple of {unit}; resize with smart_resize first")
    if pad := -n % temporal_patch_size:
        frames = xp.concatenate([frames, xp.repeat(frames[-1:], pad, axis=0)])
        n += pad
    gt, gh, gw = n // temporal_patch_size, height // patch_size, width // patch_size
    x = frames.reshape(
        gt, temporal_patch_size, c, gh // merge_size, merge_size, patch_size, gw // merge_size, merge_size, patch_size
    )
    # -> (t, window row, window col, row in window, col in window, channel, time in patch, py, px)
    x = x.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    # reshaping the transposed view copies it into C order
    return x.reshape(gt * gh * gw, c * temporal_patch_size * patch_size * patch_size), (gt, gh, gw)


@dataclass(frozen=True)
class ImageProcessor:
    """The preprocessing settings of one model; call it on images, or `.video(frames)`.

    `max_pixels` is the per-image (per-frame) pixel budget: Hugging Face's default 28*28*1280,
    ViLaSR's RL setting `VILASR_TRAIN_MAX_PIXELS` (256*28*28; every use's size is in
    vilasr/uses.py), Qwen2.5-VL's released preprocessor_config 28*28*16384.
    """

    min_pixels: int = DEFAULT_MIN_PIXELS
    max_pixels: int = DEFAULT_MAX_PIXELS
    patch_size: int = 14
    temporal_patch_size: int = 2
    merge_size: int = 2
    image_mean: tuple[float, ...] = CLIP_MEAN
    image_std: tuple[float, ...] = CLIP_STD
    rescale_factor: float = 1 / 255
    _table: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.min_pixels <= 0 or self.max_pixels < self.min_pixels:
            raise ValueError(f"need 0 < min_pixels <= max_pixels, got {self.min_pixels}, {self.max_pixels}")
        if len(self.image_mean) != 3 or len(self.image_std) != 3:
            raise ValueError("image_mean and image_std need 3 values (RGB)")
        object.__setattr__(self, "image_mean", tuple(float(v) for v in self.image_mean))
        object.__setattr__(self, "image_std", tuple(float(v) for v in self.image_std))
        object.__setattr__(self, "_table", _normalise_table(self.image_mean, self.image_std, self.rescale_factor))

    @property
    def table(self) -> np.ndarray:
        """(3, 256) float32: the normalised value of each uint8 level per channel."""
        return self._table

    @classmethod
    def from_config(cls, config: dict, **overrides) -> "ImageProcessor":
        """From a Hugging Face `preprocessor_config.json` dict (`size` or `min_pixels`/`max_pixels`)."""
        size = config.get("size") or {}
        kw = {
            "min_pixels": size.get("shortest_edge", size.get("min_pixels", DEFAULT_MIN_PIXELS)),
            "max_pixels": size.get("longest_edge", size.get("max_pixels", DEFAULT_MAX_PIXELS)),
        }
        for key in ("min_pixels", "max_pixels", "patch_size", "temporal_patch_size", "merge_size", "rescale_factor"):
            if config.get(key) is not None:
                kw[key] = config[key]
        for key in ("image_mean", "image_std"):
            if config.get(key) is not None:
                kw[key] = tuple(config[key])
        for flag in ("do_resize", "do_rescale", "do_normalize"):
            if config.get(flag) is False:
                raise ValueError(f"preprocessor_config sets {flag}=false, which Qwen2.5-VL preprocessing does not support")
        if config.get("resample", _BICUBIC) != _BICUBIC:
            raise ValueError(f"preprocessor_config asks for resample={config['resample']}; only bicubic (3) is supported")
        kw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kw)

    def to_config(self) -> dict:
        """A `preprocessor_config.json` dict Hugging Face's Qwen2.5-VL processor reads back."""
        return {
            "do_convert_rgb": True,
            "do_normalize": True,
            "do_rescale": True,
            "do_resize": True,
            "image_mean": list(self.image_mean),
            "image_std": list(self.image_std),
            "image_processor_type": "Qwen2VLImageProcessor",
            "max_pixels": self.max_pixels,
            "merge_size": self.merge_size,
            "min_pixels": self.min_pixels,
            "patch_size": self.patch_size,
            "processor_class": "Qwen2_5_VLProcessor",
            "resample": _BICUBIC,
            "rescale_factor": self.rescale_factor,
            "size": {"longest_edge": self.max_pixels, "shortest_edge": self.min_pixels},
            "temporal_patch_size": self.temporal_patch_size,
        }

    @property
    def factor(self) -> int:
        return self.patch_size * self.merge_size

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        """The resized (height, width) of an image of this size."""
        return smart_resize(height, width, self.factor, self.min_pixels, self.max_pixels)

    def num_patches(self, height: int, width: int) -> int:
        """Vision-tower patches of one still image (the LM sees num_patches // merge_size**2 tokens)."""
        h, w = self.target_size(height, width)
        return (h // self.patch_size) * (w // self.patch_size)

    def num_tokens(self, height: int, width: int) -> int:
        """`<|image_pad|>` tokens one still image of this size expands to."""
        return self.num_patches(height, width) // self.merge_size**2

    def _frame(self, image, size: tuple[int, int] | None = None) -> np.ndarray:
        rgb = to_rgb_array(image)
        h, w = size if size is not None else self.target_size(*rgb.shape[:2])
        rgb = resize_rgb(rgb, h, w)  # at the same size PIL returns a copy, as in transformers
        return apply_table(self._table, rgb)

    def preprocess_image(self, image) -> tuple[np.ndarray, np.ndarray]:
        """One still image -> ((h*w, D) float32 patches, (3,) int32 grid (1, h, w))."""
        frame = self._frame(image)
        patches, grid = patchify(frame[None], self.patch_size, self.temporal_patch_size, self.merge_size)
        return patches, np.asarray(grid, dtype=np.int32)

    def __call__(self, images) -> dict[str, np.ndarray]:
        """Images (one or a list) -> {"pixel_values": (N, D) float32, "image_grid_thw": (n, 3) int32}."""
        images = _as_list(images)
        if not images:
            raise ValueError("no images given")
        parts = [self.preprocess_image(im) for im in images]
        return {
            "pixel_values": np.concatenate([p for p, _ in parts]),
            "image_grid_thw": np.stack([g for _, g in parts]).astype(np.int32),
        }

    def video(self, frames) -> tuple[np.ndarray, np.ndarray]:
        """A video as a sequence of frames -> ((t*h*w, D) float32, (3,) int32 grid with t = ceil(frames/2)).

        Every frame is resized to the size `smart_resize` gives for the first frame (Qwen's
        processors assume equal-sized frames). An odd frame count repeats the last frame.
        """
        frames = list(frames)
        if not frames:
            raise ValueError("a video needs at least one frame")
        first = to_rgb_array(frames[0])
        size = self.target_size(*first.shape[:2])
        stack = np.stack([self._frame(f if k else first, size) for k, f in enumerate(frames)])
        patches, grid = patchify(stack, self.patch_size, self.temporal_patch_size, self.merge_size)
        return patches, np.asarray(grid, dtype=np.int32)

    def videos(self, videos) -> dict[str, np.ndarray]:
        """A list of videos -> {"pixel_values_videos", "video_grid_thw"}."""
        parts = [self.video(v) for v in videos]
        if not parts:
            raise ValueError("no videos given")
        return {
            "pixel_values_videos": np.concatenate([p for p, _ in parts]),
            "video_grid_thw": np.stack([g for _, g in parts]).astype(np.int32),
        }


def _is_image(x) -> bool:
    if isinstance(x, np.ndarray):
        return x.ndim in (2, 3)
    try:
        from PIL import Image

        return isinstance(x, Image.Image)
    except ImportError:  # pragma: no cover
        return False


def _as_list(images) -> list:
    """One image, a list of images, or a nested list (per sample) -> a flat list."""
    if _is_image(images):
        return [images]
    flat = []
    for item in images:
        flat.extend(_as_list(item) if not _is_image(item) else [item])
    return flat


def preprocess_images(images, **config) -> tuple[np.ndarray, np.ndarray]:
    """Functional form: images -> (pixel_values (N, 3*2*14*14) float32, image_grid_thw (n, 3) int32);
    `config` takes the ImageProcessor fields (min_pixels, max_pixels, ...)."""
    out = ImageProcessor(**config)(images)
    return out["pixel_values"], out["image_grid_thw"]


def preprocess_video(frames, **config) -> tuple[np.ndarray, np.ndarray]:
    """Functional form for one video: frames -> (pixel_values, grid_thw (1, 3) int32)."""
    patches, grid = ImageProcessor(**config).video(frames)
    return patches, grid[None]
