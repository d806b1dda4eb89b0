"""Settings per use, in one place: what the reference runs with in supervised fine-tuning (SFT),
reinforcement learning (RL) and evaluation (SPEC §3 and §5). `RolloutConfig.for_eval()` and
`.for_rl()` are built from these values; a data pipeline or trainer takes its image size from
`Use.SFT.max_pixels` (or `Use.RL.max_pixels`).

| setting                         | eval                | RL                       | SFT                  |
|---------------------------------|---------------------|--------------------------|----------------------|
| image size (max pixels)         | 448*28*28 = 351,232 | 256*28*28 = 200,704      | 1280*28*28 = 1,003,520 |
| image cap (inputs counted)      | 45                  | 42                       | -                    |
| model turns (mazes)             | 10 (20)             | 10 (20)                  | -                    |
| tokens per model turn           | 16,384              | 1,024                    | -                    |
| response tokens in all          | no limit            | 13,312                   | -                    |
| images in the response budget   | -                   | a flat 256 tokens each   | -                    |
| sampling                        | T 0.75, top-p 0.9   | T 1.0                    | -                    |
| bad tool calls                  | the reference's tolerance (drawing_ops.turn); an out-of-range index ends the trajectory ("IndexError") in both -- the reference's evaluator instead re-samples such a turn silently |

Images in the RL budget: the reference counts every image of a feedback turn as a flat 256 tokens
(`ImageTokens.FLAT`), which is what `for_rl()` does, so RL response budgets stop where the
reference's stop. At the RL image size no image has more than 256 tokens, so the flat count is
also an upper bound on the real length. `ImageTokens.REAL` counts each image's real tokens (the
sequence length a trainer actually holds) and is the default elsewhere.
"""

from __future__ import annotations

import enum

from drawing_ops.protocol import MAX_IMAGES_EVAL, MAX_IMAGES_RL

PIXELS_PER_TOKEN = 28 * 28   # one merged image token covers 28x28 px


class Use(str, enum.Enum):
    """What a model run is for."""

    SFT = "sft"
    RL = "rl"
    EVAL = "eval"

    def __str__(self) -> str:
        return self.value

    @property
    def max_pixels(self) -> int:
        """The largest image (in pixels, after the resize) the reference shows the model in this use."""
        return MAX_PIXELS[self]


MAX_PIXELS = {Use.SFT: 1280 * PIXELS_PER_TOKEN, Use.RL: 256 * PIXELS_PER_TOKEN, Use.EVAL: 448 * PIXELS_PER_TOKEN}
MAX_IMAGES = {Use.RL: MAX_IMAGES_RL, Use.EVAL: MAX_IMAGES_EVAL}
TURN_TOKENS = {Use.RL: 1024, Use.EVAL: 16384}
RESPONSE_TOKENS = {Use.RL: 13312, Use.EVAL: None}
MAX_TURNS, MAX_TURNS_MAZE = 10, 20
TEMPERATURE = {Use.RL: 1.0, Use.EVAL: 0.75}
TOP_P = {Use.RL: 1.0, Use.EVAL: 0.9}
SFT_MAX_TOKENS = 18432       # SFT sequences are cut at this length (SPEC §5)
REFERENCE_IMAGE_TOKENS = 256  # what the reference's RL budget counts per image


class ImageTokens(str, enum.Enum):
    """How the response-token budget counts an image of a feedback turn."""

    REAL = "real"   # its real number of tokens
    FLAT = "flat"   # a flat 256 tokens, as the reference's RL rollout counts it

    def __str__(self) -> str:
        return self.value
