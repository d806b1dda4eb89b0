"""Small NumPy raster helpers shared by the 2D generators: masks for shapes, filled rectangles,
disks and polygons, and a 5x7 bitmap font for the few letters the images carry.

Everything works on integer pixel grids with pixel centres at (x + 0.5, y + 0.5), so a shape
covers the same pixels on every machine. No matplotlib, no OpenCV, no font files.
"""

from __future__ import annotations

import numpy as np

Color = tuple[int, int, int]

# Largest image side the generators draw: a trajectory holds several images of this size plus a
# contact sheet, and the drawing backends stop at 8192 px; 4096 keeps a sample near 1 GB at most.
MAX_SIDE = 4096


def check_side(what: str, *sides: int) -> None:
    """ValueError if an image side exceeds MAX_SIDE."""
    if max(sides) > MAX_SIDE:
        raise ValueError(f"{what} of {'x'.join(map(str, sides))} px is larger than the {MAX_SIDE} px a side "
                         f"synth draws; use a size <= {MAX_SIDE}")

# 5x7 glyphs, '#' = ink. Only the characters the generators write.
_GLYPHS = {
    "A": [".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"],
    "B": ["####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."],
    "C": [".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."],
    "D": ["####.", "#...#", "#...#", "#...#", "#...#", "#...#", "####."],
    "E": ["#####", "#....", "#....", "####.", "#....", "#....", "#####"],
    "F": ["#####", "#....", "#....", "####.", "#....", "#....", "#...."],
    "G": [".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".###."],
    "S": [".####", "#....", "#....", ".###.", "....#", "....#", "####."],
    "0": [".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."],
    "1": ["..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."],
    "2": [".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"],
    "3": ["####.", "....#", "....#", ".###.", "....#", "....#", "####."],
    "4": ["...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."],
    "5": ["#####", "#....", "####.", "....#", "....#", "#...#", ".###."],
    "6": [".###.", "#....", "#....", "####.", "#...#", "#...#", ".###."],
    "7": ["#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."],
    "8": [".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."],
    "9": [".###.", "#...#", "#...#", ".####", "....#", "....#", ".###."],
    " ": [".....", ".....", ".....", ".....", ".....", ".....", "....."],
}
GLYPH_W, GLYPH_H = 5, 7


def canvas(height: int, width: int, color: Color) -> np.ndarray:
    image = np.empty((height, width, 3), np.uint8)
    image[:, :] = color
    return image


def pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (ys, xs) as broadcastable float arrays."""
    ys = np.arange(height, dtype=np.float64)[:, None] + 0.5
    xs = np.arange(width, dtype=np.float64)[None, :] + 0.5
    return ys, xs


def rect_mask(height: int, width: int, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    ys, xs = pixel_grid(height, width)
    return (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)


def disk_mask(height: int, width: int, cx: float, cy: float, r: float) -> np.ndarray:
    ys, xs = pixel_grid(height, width)
    return (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r


def polygon_mask(height: int, width: int, points) -> np.ndarray:
    """Pixels whose centre lies inside the polygon (even-odd rule, any simple polygon)."""
    pts = np.asarray(points, dtype=np.float64)
    ys, xs = pixel_grid(height, width)
    inside = np.zeros((height, width), dtype=bool)
    for (xa, ya), (xb, yb) in zip(pts, np.roll(pts, -1, axis=0)):
        if ya == yb:
            continue
        crosses = (ya > ys) != (yb > ys)
        x_at = xa + (ys - ya) * (xb - xa) / (yb - ya)
        inside ^= crosses & (xs < x_at)
    return inside


def fill(image: np.ndarray, mask: np.ndarray, color: Color) -> None:
    image[mask] = color


def fill_rect(image: np.ndarray, x0: int, y0: int, x1: int, y1: int, color: Color) -> None:
    """Fill the integer pixel rectangle [x0, x1) x [y0, y1), clipped to the image."""
    h, w = image.shape[:2]
    x0, x1 = max(0, int(x0)), min(w, int(x1))
    y0, y1 = max(0, int(y0)), min(h, int(y1))
    if x0 < x1 and y0 < y1:
        image[y0:y1, x0:x1] = color


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight inclusive pixel bounds (x_min, y_min, x_max, y_max) of a mask, None when empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def text_size(text: str, scale: int) -> tuple[int, int]:
    """(width, height) in pixels of `text` drawn with `draw_text` at `scale`."""
    n = len(text)
    return (n * (GLYPH_W + 1) - 1) * scale, GLYPH_H * scale


def draw_text(image: np.ndarray, text: str, x: int, y: int, scale: int, color: Color) -> None:
    """Draw `text` with its top-left corner at (x, y), each font pixel a scale x scale square."""
    for k, char in enumerate(text.upper()):
        glyph = _GLYPHS[char]
        gx = x + k * (GLYPH_W + 1) * scale
        for row, bits in enumerate(glyph):
            for col, bit in enumerate(bits):
                if bit == "#":
                    fill_rect(image, gx + col * scale, y + row * scale,
                              gx + (col + 1) * scale, y + (row + 1) * scale, color)


def draw_text_centered(image: np.ndarray, text: str, cx: float, cy: float, scale: int, color: Color) -> None:
    w, h = text_size(text, scale)
    draw_text(image, text, int(round(cx - w / 2)), int(round(cy - h / 2)), scale, color)


def contact_sheet(images, columns: int | None = None, gap: int = 6, background: Color = (255, 255, 255)) -> np.ndarray:
    """Tile images left to right, top to bottom (each cell as large as the largest image)."""
    images = list(images)
    if not images:
        raise ValueError("contact_sheet needs at least one image")
    columns = columns or len(images)
    rows = -(-len(images) // columns)
    cell_h = max(im.shape[0] for im in images)
    cell_w = max(im.shape[1] for im in images)
    sheet = canvas(rows * cell_h + (rows - 1) * gap, columns * cell_w + (columns - 1) * gap, background)
    for k, im in enumerate(images):
        r, c = divmod(k, columns)
        y, x = r * (cell_h + gap), c * (cell_w + gap)
        sheet[y:y + im.shape[0], x:x + im.shape[1]] = im
    return sheet
