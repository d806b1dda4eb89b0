"""Build the tiny built-in tokenizer (`vilasr/processing/assets/tiny_tokenizer.json`).

    python -m vilasr.processing.tokenizer_build            # rewrite the shipped asset
    python -m vilasr.processing.tokenizer_build --out X    # write somewhere else
    python -m vilasr.processing.tokenizer_build --check    # exit 1 if the asset is not what this script makes

The tokenizer has the same pipeline as Qwen2/Qwen2.5-VL's `tokenizer.json` (NFC normaliser, the
Qwen2 split regex, byte-level pre-tokenizer and decoder, BPE without an unknown token); only the
vocabulary differs. The BPE part is trained on a deterministic corpus of ViLaSR-style text (think /
action / JSON tool-call / answer turns, tool feedback, spatial questions) to 2032 entries; the 256
byte symbols are always in it, so every string is encodable. Digits are split one per pre-token,
so every number tokenizes as its digits. Ids 2032..2047 are the added (special) tokens, at the fixed
ids the tiny model config relies on:

    <|endoftext|> 2032  <|im_start|> 2033  <|im_end|> 2034  <|vision_start|> 2035
    <|vision_end|> 2036  <|image_pad|> 2037  <|video_pad|> 2038
    then <|object_ref_start|> <|object_ref_end|> <|box_start|> <|box_end|> <|quad_start|>
    <|quad_end|> <|vision_pad|> <tool_call> </tool_call> (2039..2047; the last two not special,
    as in Qwen2.5-VL).

The build is byte-for-byte reproducible: the corpus comes from a seeded `random.Random`, and the
tokenizers BPE trainer breaks ties by pair ids, which only depend on the corpus.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from pathlib import Path

from drawing_ops.protocol import ANSWER_ACTION, BOX_TOOL, TOOL_NAMES

VOCAB_SIZE = 2048
BPE_SIZE = 2032

# Qwen2's pre-tokenization pattern (a fact of the format): contractions, letter runs with an
# optional leading non-letter, single digits, punctuation runs, newlines, other whitespace.
QWEN2_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# (content, special) in id order starting at BPE_SIZE.
ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
)

ASSET_PATH = Path(__file__).resolve().parent / "assets" / "tiny_tokenizer.json"

# ----------------------------------------------------------------------------------------------
# Corpus
# ----------------------------------------------------------------------------------------------

OBJECTS = (
    "chair table sofa bed lamp door window cabinet shelf desk monitor keyboard mouse laptop tv "
    "television refrigerator fridge oven microwave sink toilet bathtub shower mirror pillow "
    "blanket curtain picture painting plant vase clock book backpack bag box basket trash can "
    "bin stool bench couch ottoman dresser nightstand wardrobe closet counter stove kettle cup "
    "mug bottle bowl plate fan heater radiator printer phone towel rug carpet stairs ceiling "
    "floor wall car truck bus bicycle person dog cat tree building sign pole cone ball cube "
    "sphere cylinder pyramid star arrow marker robot cart suitcase umbrella piano guitar"
).split()
COLORS = "red green blue yellow orange pink purple brown gray black white beige cyan".split()
SPATIAL = (
    "left right above below behind front near far closest farthest nearest between next to "
    "under over on top of inside outside beside opposite center corner edge middle north south "
    "east west up down forward backward clockwise counterclockwise diagonal horizontal vertical "
    "parallel perpendicular adjacent across along toward away distance length width height depth "
    "size area volume direction angle orientation position location route path trajectory "
    "viewpoint perspective camera frame view scene room kitchen bedroom bathroom office hallway "
    "living meters centimeters feet inches degrees approximately roughly about exactly count "
    "number how many which what where larger smaller taller shorter longer bigger wider closer"
).split()
WORDS = (
    "the a an of in to and is are was were be been this that these those it its there here "
    "first second third then next finally now again also however because therefore so since "
    "if when while after before image images frame frames object objects box boxes line lines "
    "label labels point points start end mark marked draw drawn drawing auxiliary bounding "
    "coordinate coordinates pixel pixels grid cell cells row column maze wall walls open "
    "blocked move moves step steps turn turns reach goal entrance exit answer question option "
    "options correct incorrect check verify reflect refine adjust update previous current new "
    "located locate find found identify see shows appears seems looks consider compare estimate "
    "measure calculate result results should would could need needs must can cannot might let "
    "me my i we our us look closely carefully based given using use each every all both other "
    "another same different only more less most least not no yes true false same one two three "
    "four five six seven eight nine ten times relative absolute scale reference known typical "
    "standard assume assuming around into onto from with without by for at as or than about "
    "video sequence multi single observe observed observation tool action result continue "
    "critically examine whether accurate accurately wrong mistake slightly partially fully "
    "visible hidden occluded overlap overlapping contains containing covers aligned alignment"
).split()
THINK_OPENERS = (
    "Let me first locate",
    "I need to find",
    "To answer this, I will mark",
    "First, I identify",
    "Looking at image {i}, I can see",
    "The previous box for the {o} was slightly off, so I refine",
    "Now I draw a line from",
    "Comparing the two views,",
    "The drawn path shows",
    "Checking the auxiliary line,",
    "Based on the marked boxes,",
    "I should verify whether",
)
ENGLISH = """\
Spatial reasoning is the ability to understand where things are, how they relate to each other,
and how that relation changes when we move. A model that reasons by drawing writes a short
thought, marks the objects it cares about with boxes, traces paths with lines, looks at the result,
and corrects itself when the drawing does not fit the picture. The picture is the evidence; the
drawing is a note on top of it. When the note is wrong, the model says so and draws again.
In a maze, the agent starts at the entrance and must reach the goal without crossing a wall. Each
cell has four neighbours: up, down, left and right. Counting the right turns along the route, or
the number of cells between two marks, is easy once the path is drawn. In a room, the distance
between a chair and a table is estimated from known sizes: a door is about two meters tall, a
chair seat is about half a meter high. Video frames and multiple views show the same scene from
different positions; the camera may move forward, turn left, or rotate up, and the answer depends
on which object is closest to the viewer in the last frame.
The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs! How vexingly
quick daft zebras jump; sphinx of black quartz, judge my vow. Numbers like 3.14, 2.5 m, 120 cm,
45 degrees, 1,024 tokens, (12, 34) and [0, 0, 616, 616] appear often; so do symbols: + - * / = < >
% & | ^ ~ @ # $ _ ` ' " ; : ? ! { } ( ) [ ] \\ and the arrows -> <- => as well as tabs\tand
line breaks.
"""
UNICODE_LINES = (
    "Café, naïve, façade, résumé, Zürich, São Paulo, Kraków, Ångström, Øresund, Dvořák.",
    "空间推理：左边、右边、上面、下面、前面、后面、距离、物体、房间、图片。",
    "空間認識：左、右、上、下、前、後ろ、距離。Пространство: слева, справа, сверху.",
    "Το δωμάτιο έχει ένα τραπέζι. الغرفة فيها كرسي. कमरे में एक मेज़ है। 방 안에 의자가 있다.",
    "Symbols: ° ± × ÷ ≈ ≤ ≥ ≠ → ← ↑ ↓ • … “quoted” ‘single’ — – € £ ¥ © ™ µm ½ ¼ ²³ ✓ ✗ 🙂 🚗 🪑",
)


def _bbox(rng: random.Random, w: int = 616, h: int = 616) -> list[int]:
    x1, y1 = rng.randrange(0, w - 20), rng.randrange(0, h - 20)
    return [x1, y1, rng.randrange(x1 + 8, w), rng.randrange(y1 + 8, h)]


def _point(rng: random.Random, w: int = 616, h: int = 616) -> list[int]:
    return [rng.randrange(0, w), rng.randrange(0, h)]


def _label(rng: random.Random) -> str:
    r = rng.random()
    o = rng.choice(OBJECTS)
    if r < 0.3:
        return f"{rng.choice(COLORS)} {o}"
    if r < 0.45:
        return f"{o} {rng.randrange(1, 6)}"
    if r < 0.6:
        return f"path {rng.randrange(1, 4)}"
    return o


def _json_block(rng: random.Random, tool: str, n_images: int) -> str:
    items = []
    for _ in range(rng.randrange(1, 4)):
        idx = rng.randrange(1, n_images + 1)
        if tool == BOX_TOOL:
            items.append(f'{{"index": {idx}, "bbox_2d": {_bbox(rng)}, "label": "{_label(rng)}"}}')
        else:
            items.append(
                f'{{"index": {idx}, "start_point_2d": {_point(rng)}, '
                f'"end_point_2d": {_point(rng)}, "label": "{_label(rng)}"}}'
            )
    sep = ",\n    " if rng.random() < 0.5 else ", "
    body = "[\n    " + sep.join(items) + "\n]" if sep.startswith(",\n") else "[" + sep.join(items) + "]"
    return "```json\n" + body + "\n```"


def _sentence(rng: random.Random, n_images: int) -> str:
    opener = rng.choice(THINK_OPENERS).format(i=rng.randrange(1, n_images + 1), o=rng.choice(OBJECTS))
    words = [rng.choice(WORDS if rng.random() < 0.6 else SPATIAL) for _ in range(rng.randrange(5, 16))]
    obj = rng.choice(OBJECTS)
    tail = rng.choice((
        f" the {obj}",
        f" the {rng.choice(COLORS)} {obj}",
        f" the {obj} at ({rng.randrange(0, 616)}, {rng.randrange(0, 616)})",
        f" about {rng.randrange(1, 10)}.{rng.randrange(0, 10)} meters",
        f" {rng.randrange(2, 90)} degrees",
    ))
    return opener + " " + " ".join(words) + tail + "."


def _question(rng: random.Random) -> str:
    a, b = rng.choice(OBJECTS), rng.choice(OBJECTS)
    q = rng.choice((
        f"How many {a}s are in the room?",
        f"What is the distance between the {a} and the {b} in meters?",
        f"Is the {a} to the left or to the right of the {b}?",
        f"Which object is closest to the {a}: the {b}, the {rng.choice(OBJECTS)} or the {rng.choice(OBJECTS)}?",
        f"What is the length of the longest dimension of the {a}, in centimeters?",
        f"If I stand by the {a} facing the {b}, is the {rng.choice(OBJECTS)} to my left, right or behind me?",
        f"The maze is a {rng.randrange(3, 9)}x{rng.randrange(3, 9)} grid. How many right turns does the path from S to E make?",
        "How did the camera move between the first and the last frame?",
        "What is the size of the room in square meters?",
        f"Which direction should I turn to face the {a} after walking to the {b}?",
    ))
    if rng.random() < 0.6:
        letters = "ABCD"
        opts = [f"{letters[k]}. {rng.choice((rng.choice(OBJECTS), rng.choice(SPATIAL), str(rng.randrange(0, 20))))}"
                for k in range(rng.randrange(2, 5))]
        q += "\nOptions:\n" + "\n".join(opts)
    return q


def _answer(rng: random.Random) -> str:
    return rng.choice((
        rng.choice("ABCD"),
        f"{rng.randrange(0, 20)}",
        f"{rng.randrange(0, 10)}.{rng.randrange(0, 100)}",
        f"move_right:{rng.randrange(0, 3)}.{rng.randrange(0, 10)},rotate_left:{rng.randrange(0, 90)},"
        f"move_forward:{rng.randrange(0, 3)}.{rng.randrange(0, 10)},rotate_up:{rng.randrange(0, 30)}",
        rng.choice(("left", "right", "front", "behind", "yes", "no")),
    ))


def _feedback(rng: random.Random, first_new: int, n_new: int, last: bool) -> str:
    parts = []
    for k in range(first_new, first_new + n_new):
        w, h = rng.choice(((616, 616), (640, 480), (448, 336), (1024, 768), (504, 392)))
        parts.append(f"Here is image {k}, with width {w} and height {h}: <|vision_start|><|image_pad|><|vision_end|>")
    tail = (
        "You can no longer use tools. Give your final answer now inside <answer> </answer>."
        if last else
        "Continue your reasoning. Critically check whether the drawing is correct before the next step."
    )
    return "\n".join(parts) + "\n" + tail


def _trajectory(rng: random.Random) -> str:
    n_images = rng.randrange(1, 5)
    out = ["<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"]
    out.append("".join("<|vision_start|><|image_pad|><|vision_end|>" for _ in range(n_images)))
    out.append(_question(rng) + "<|im_end|>\n")
    turns = rng.randrange(1, 5)
    for t in range(turns):
        think = " ".join(_sentence(rng, n_images) for _ in range(rng.randrange(1, 4)))
        out.append("<|im_start|>assistant\n<think>" + think + "</think>")
        if t == turns - 1:
            out.append(f" Action: {ANSWER_ACTION}\n<answer>{_answer(rng)}</answer><|im_end|>\n")
            break
        tool = rng.choice(TOOL_NAMES)
        out.append(f" Action: {tool}\n{_json_block(rng, tool, n_images)}<|im_end|>\n")
        n_new = rng.randrange(1, 3)
        out.append("<|im_start|>user\n" + _feedback(rng, n_images + 1, n_new, t == turns - 2) + "<|im_end|>\n")
        n_images += n_new
    return "".join(out)


def corpus(n_trajectories: int = 1500, seed: int = 0) -> list[str]:
    """The training corpus: a deterministic list of text pieces.

    Special-token strings are cut out (each piece is the text between two of them), because at
    encode time they are matched whole as added tokens and never reach the BPE model.
    """
    rng = random.Random(seed)
    docs = [_trajectory(rng) for _ in range(n_trajectories)]
    docs += [ENGLISH] * 8 + list(UNICODE_LINES) * 4
    # Every word in two casings, so all of them can merge with and without a capital.
    vocab_words = sorted(set(OBJECTS + COLORS + SPATIAL + WORDS))
    docs.append(" ".join(vocab_words + [w.capitalize() for w in vocab_words]))
    special = re.compile("|".join(re.escape(t) for t, is_special in ADDED_TOKENS if is_special))
    return [piece for doc in docs for piece in special.split(doc) if piece]


# ----------------------------------------------------------------------------------------------
# Build
# ----------------------------------------------------------------------------------------------


def qwen2_pipeline(model):
    """A `tokenizers.Tokenizer` around `model` with Qwen2's normaliser, pre-tokenizer and decoder."""
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors

    tok = Tokenizer(model)
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def add_qwen_tokens(tok, tokens=ADDED_TOKENS) -> None:
    from tokenizers import AddedToken

    for content, special in tokens:
        added = AddedToken(content, single_word=False, lstrip=False, rstrip=False, normalized=False, special=special)
        if special:
            tok.add_special_tokens([added])
        else:
            tok.add_tokens([added])


def build() -> str:
    """Train the tiny tokenizer and return its JSON text."""
    from tokenizers import models, pre_tokenizers, trainers

    tok = qwen2_pipeline(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_SIZE,
        min_frequency=2,
        show_progress=False,
        special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    if tok.get_vocab_size(with_added_tokens=False) != BPE_SIZE:
        raise RuntimeError(
            f"BPE training gave {tok.get_vocab_size(with_added_tokens=False)} entries, expected {BPE_SIZE}:"
            " make the corpus richer (more distinct words)."
        )
    add_qwen_tokens(tok)
    if tok.get_vocab_size(with_added_tokens=True) != VOCAB_SIZE:
        raise RuntimeError(f"tiny tokenizer has {tok.get_vocab_size(with_added_tokens=True)} ids, expected {VOCAB_SIZE}")
    for k, (content, _) in enumerate(ADDED_TOKENS):
        if tok.token_to_id(content) != BPE_SIZE + k:
            raise RuntimeError(f"{content} got id {tok.token_to_id(content)}, expected {BPE_SIZE + k}")
    return tok.to_str(pretty=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ASSET_PATH, help="where to write the tokenizer.json")
    ap.add_argument("--check", action="store_true", help="only compare with the file at --out")
    args = ap.parse_args(argv)
    text = build()
    if args.check:
        same = args.out.exists() and args.out.read_text(encoding="utf-8") == text
        print(f"{args.out}: {'up to date' if same else 'DIFFERS from a fresh build'}")
        return 0 if same else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out} ({len(text)} chars, vocab {VOCAB_SIZE})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
