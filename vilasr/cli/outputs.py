"""Where commands write: checked before the work starts, written so that an interrupted command
never leaves a half-written file, and never replacing what vilasr did not write.

* A PNG target (`vilasr draw --out`) must end in .png; an existing file is replaced only with
  --overwrite; the image is written to a temporary name beside it and renamed into place.
* A run folder (`vilasr demo --out`, `vilasr infer --out`) must be new, empty, or one a vilasr
  command filled before: that one holds `VILASR_OUTPUT.json`, which names the file patterns the
  command writes, and only files matching them are cleared (an earlier run's images do not linger).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from vilasr.errors import InputError

MARKER = "VILASR_OUTPUT.json"


def check_writable(folder: Path, flag: str = "--out") -> None:
    """Prove a file can be written in `folder`, or in the nearest folder that exists on its way
    (where it would be created); leaves nothing behind."""
    probe_in = Path(os.path.abspath(folder))
    while not probe_in.exists() and probe_in != probe_in.parent:
        probe_in = probe_in.parent
    if not probe_in.is_dir():
        raise InputError(f"{flag}: {probe_in} is in the way (a file where a folder is needed); choose another "
                         "path")
    try:
        fd, probe = tempfile.mkstemp(prefix=".vilasr-probe-", dir=probe_in)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise InputError(f"{flag}: cannot write in {probe_in} ({e.strerror}); choose a folder you can write "
                         "to") from None


def check_png_target(path: Path, *, overwrite: bool, inputs=(), flag: str = "--out") -> Path:
    """`path` if a PNG may be written there; InputError saying why not otherwise."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{flag} {path} is a folder; give a file name ending in .png")
    if path.suffix.lower() != ".png":
        raise InputError(f"{flag} {path}: the drawing is written as PNG; give a file name ending in .png")
    if any(path.resolve() == Path(p).resolve() for p in inputs):
        raise InputError(f"{flag} {path} is an input image; write the drawing to a new file")
    if path.exists() and not overwrite:
        raise InputError(f"{flag} {path} exists; pass --overwrite to replace it, or choose another name")
    check_writable(path.parent, flag)
    return path


def write_png(image: np.ndarray, path: Path) -> None:
    """Write `image` as PNG at `path` via a temporary file in the same folder (an interrupt leaves
    either the old file or the new one, never half of one)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            Image.fromarray(np.asarray(image, np.uint8)).save(f, format="PNG")
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_output_folder(folder: Path, flag: str = "--out") -> Path:
    """`folder` if it is a folder (or can be created) that we can write in; InputError otherwise.
    For commands that keep their own record of what the folder holds (demo, pretrain-base)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{flag} {folder} is a file; give a folder (it is created if missing)")
    check_writable(folder, flag)
    return folder


def check_run_folder(folder: Path, flag: str = "--out") -> Path:
    """`folder` if a command may fill it (new, empty, or one a vilasr command filled); InputError
    otherwise. Changes nothing."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{flag} {folder} is a file; give a folder (it is created if missing)")
    if folder.is_dir():
        entries = [p.name for p in folder.iterdir()]
        if entries and MARKER not in entries:
            raise InputError(f"{flag} {folder} holds files vilasr did not write; choose a new or empty folder")
        if MARKER in entries:
            _read_marker(folder)
    check_writable(folder, flag)
    return folder


def prepare_run_folder(folder: Path, command: str, patterns: tuple[str, ...], flag: str = "--out") -> Path:
    """`check_run_folder`, then create `folder`, or clear the files an earlier vilasr run wrote in it
    (only names matching its marker's patterns), and mark it as `command`'s (files named by glob
    `patterns`)."""
    folder = check_run_folder(folder, flag)
    folder.mkdir(parents=True, exist_ok=True)
    if (folder / MARKER).exists():
        for pattern in (*_read_marker(folder), ".*.tmp"):  # .tmp: a PNG whose writer was killed
            for p in folder.glob(pattern):
                if p.is_file():
                    p.unlink()
    (folder / MARKER).write_text(json.dumps({"command": command, "writes": list(patterns)}, indent=1) + "\n",
                                 encoding="utf-8")
    return folder


def _read_marker(folder: Path) -> tuple[str, ...]:
    try:
        patterns = json.loads((folder / MARKER).read_text(encoding="utf-8"))["writes"]
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(f"{folder / MARKER} is damaged; remove it (and the folder's old outputs) or choose "
                         "another folder") from None
    # only plain file-name patterns: a marker can never make us delete outside the folder
    return tuple(p for p in patterns if isinstance(p, str) and "/" not in p and not p.startswith(".."))
