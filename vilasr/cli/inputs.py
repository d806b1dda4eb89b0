"""Reading what the command line is given: images and turn text. Every problem is an InputError
whose message names the file and says what to do."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from vilasr.errors import InputError

MAX_TEXT_BYTES = 16 << 20  # a model turn is a few KB; this bounds the parser's work
MAX_IMAGE_SIDE = 8192  # the drawing backends' limit (drawing_ops.render_geometry.MAX_SIDE)


def read_text(spec: str, flag: str = "--calls") -> str:
    """The UTF-8 text of file `spec`, or of standard input for '-'."""
    if spec == "-":
        data, where = sys.stdin.buffer.read(MAX_TEXT_BYTES + 1), "standard input"
    else:
        path = Path(spec)
        if not _exists(path):
            hint = (" (it takes a file path or '-', not the text itself: save the turn to a file, or pipe it "
                    "in with --calls -)" if any(c in spec for c in "\n<`[{") else "")
            raise InputError(f"{flag} {spec}: no such file{hint}; e.g. {flag} examples/turn.txt")
        if path.is_dir():
            raise InputError(f"{flag} {spec} is a folder; give the file holding the model's turn")
        with path.open("rb") as f:
            data = f.read(MAX_TEXT_BYTES + 1)
        where = str(path)
    if len(data) > MAX_TEXT_BYTES:
        raise InputError(f"{where} is larger than {MAX_TEXT_BYTES >> 20} MB; a model turn is a few KB of text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{where} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
                         "save it as UTF-8") from None


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # e.g. a name too long to be a path: the turn's text given inline
        return False


def read_image(path: Path) -> np.ndarray:
    """An image file as a uint8 (H, W, 3) array, within the drawing backends' size limit."""
    from PIL import Image

    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a folder, not an image file")
    try:
        with Image.open(path) as im:
            w, h = im.size
            if max(w, h) > MAX_IMAGE_SIDE:
                raise InputError(f"{path} is {w}x{h} px; drawing works on images up to {MAX_IMAGE_SIDE} px a "
                                 "side: resize it first")
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such image file") from None
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise InputError(f"cannot read image {path} ({e}); give a PNG or JPEG file") from None
