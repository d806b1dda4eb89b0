"""Short, measured probes of what makes the tiny base model read its images (issue 29, item 1).

A probe trains the tiny preset for `steps` steps on FRESH synthetic examples every step (no
epochs: example k of step s is drawn from its own seed) and scores held-out questions exactly
(every answer token the model's most likely next token, teacher-forced), three ways: with the
real images, with every image replaced by a white one, and with every image replaced by another
held-out example's image. A model that reads its images beats the blank and the swapped images
by a wide margin; one that answers from the text alone scores the same on all three.

    python -m stages.base_probe --task quadrant --steps 300 --log docs/base_probes.jsonl

Tasks (gates of issue 29, in order): `quadrant` (which quadrant holds one big disk; chance 25 %),
`maze3` (which cell holds S on a 3x3 maze; chance 11 %), `mix` (the pretraining mix of
synth.perception). Training streams use seeds PROBE_SEED + k; held-out questions use another
seed; neither is a benchmark seed (synth.rng keys every sample by family and split too).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from stages.data import Record, collate, encode_example
from stages.losses import next_token_loss_sum
from stages.trainer import pad_patches
from synth import maze, perception, raster
from synth.rng import sample_rng
from vilasr.model import Qwen25VL, Qwen25VLConfig
from vilasr.model.qwen25vl import prepare_inputs
from vilasr.model.vision import vision_plan
from vilasr.processing import Processor

TRAIN_SPLIT, HELDOUT_SPLIT = "probe-train", "probe-heldout"
QUADRANTS = ("top left", "top right", "bottom left", "bottom right")


# ----------------------------------------------------------------------------- probe tasks
def quadrant_example(rng: np.random.Generator, size: int = 224) -> perception.Example:
    """One big green disk on white, somewhere inside one quadrant."""
    q = int(rng.integers(4))
    r = int(rng.integers(size // 10, size // 6))
    half = size // 2
    cx = int(rng.integers(r, half - r)) + (q % 2) * half
    cy = int(rng.integers(r, half - r)) + (q // 2) * half
    image = raster.canvas(size, size, (255, 255, 255))
    raster.fill(image, raster.disk_mask(size, size, cx, cy, r), (40, 170, 60))
    qa = [perception.QA("quadrant of the disk", "Which quadrant holds the disk?", QUADRANTS[q])]
    return perception.Example(perception.Family.MAZE, [image], qa, {"quadrant": q})


COLOURS = {"red": (214, 39, 40), "green": (44, 160, 44), "blue": (31, 119, 180), "yellow": (230, 200, 20)}


def colour_example(rng: np.random.Generator, size: int = 112) -> perception.Example:
    """One disk of one of four colours, anywhere (a global property: what a short run learns first)."""
    name = list(COLOURS)[int(rng.integers(len(COLOURS)))]
    r = int(rng.integers(size // 6, size // 3))
    cx, cy = (int(rng.integers(r, size - r)) for _ in range(2))
    image = raster.canvas(size, size, (255, 255, 255))
    raster.fill(image, raster.disk_mask(size, size, cx, cy, r), COLOURS[name])
    qa = [perception.QA("colour of the disk", "What colour is the disk?", name)]
    return perception.Example(perception.Family.MAZE, [image], qa, {"colour": name})


def maze3_example(rng: np.random.Generator) -> perception.Example:
    config = maze.MazeConfig(min_n=3, max_n=3)
    example = perception.maze_example(rng, config)
    start = example.facts["start"]
    qa = [perception.QA("maze: cell of S/G", "Which cell holds S?", perception._cell(start))]
    return dataclasses.replace(example, qa=qa)


def make(task: str, seed: int, split: str, index: int) -> perception.Example:
    if task == "mix":
        rng = sample_rng("perception", seed, split, index)
        return perception.maze_example(rng) if rng.random() < perception.MAZE_SHARE else \
            perception.multiview_example(rng)
    rng = sample_rng(f"probe-{task}", seed, split, index)
    if task == "quadrant-small":   # 112 px: 4x4 image tokens, fast enough for a unit test
        return quadrant_example(rng, size=112)
    return {"quadrant": quadrant_example, "maze3": maze3_example, "colour-small": colour_example}[task](rng)


# ----------------------------------------------------------------------------- settings
@dataclasses.dataclass(frozen=True)
class ProbeSettings:
    task: str = "quadrant"
    steps: int = 300
    batch_size: int = 16
    lr: float = 2e-3               # decoder (and the rest)
    vision_lr: float | None = None  # tower blocks and patch embedding (None: lr; 0: frozen)
    merger_lr: float | None = None  # the patch merger (None: vision_lr)
    warmup: int = 20
    weight_decay: float = 0.01
    rope_theta: float = 1_000_000.0
    mrope_section: tuple[int, int, int] = (4, 6, 6)
    merger_out_scale: float = 1.0   # multiplies the merger's last layer at initialisation
    seed: int = 0
    eval_n: int = 96
    max_seq_len: int = 1024

    def model_config(self) -> Qwen25VLConfig:
        cfg = Qwen25VLConfig.preset("tiny")
        text = dataclasses.replace(cfg.text, rope_theta=self.rope_theta, mrope_section=tuple(self.mrope_section))
        return cfg.replace(text=text)


def _group(path) -> str:
    names = [str(getattr(k, "key", k)) for k in path]
    if names and names[0] == "visual":
        return "merger" if "merger" in names else "tower"
    return "decoder"


def build(settings: ProbeSettings, model: Qwen25VL | None = None):
    """The model (fresh from the seed unless given), its processor and its optimizer."""
    if model is None:
        model = Qwen25VL(settings.model_config(), rngs=nnx.Rngs(settings.seed))
        if settings.merger_out_scale != 1.0:
            fc2 = model.visual.merger.fc2
            for name in ("kernel", "bias"):
                p = getattr(fc2, name, None)
                if p is not None:
                    p.set_value(p.get_value() * settings.merger_out_scale)
    processor = Processor.tiny()
    vision_lr = settings.lr if settings.vision_lr is None else settings.vision_lr
    merger_lr = vision_lr if settings.merger_lr is None else settings.merger_lr
    rates = {"decoder": settings.lr, "tower": vision_lr, "merger": merger_lr}

    def schedule(peak):
        return optax.warmup_cosine_decay_schedule(0.0, peak, min(max(settings.warmup, 1), settings.steps - 1), max(settings.steps, 2),
                                                  end_value=peak * 0.05)

    transforms = {g: (optax.set_to_zero() if lr == 0 else
                      optax.adamw(schedule(lr), b1=0.9, b2=0.98, weight_decay=settings.weight_decay))
                  for g, lr in rates.items()}
    def labels(params):
        return jax.tree_util.tree_map_with_path(lambda p, _: _group(p), params)

    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.multi_transform(transforms, labels))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    return model, processor, optimizer


# ----------------------------------------------------------------------------- batches
def batch_arrays(examples, processor, cfg, max_seq_len: int, images_override=None):
    """Device inputs of `examples` (optionally with other images) plus the encoded examples."""
    encoded = []
    for k, ex in enumerate(examples):
        images = ex.images if images_override is None else images_override[k]
        encoded.append(encode_example(Record(ex.conversation(), images=tuple(images)), processor, max_seq_len))
    batch = collate(encoded, processor.tokenizer.pad_id, len(encoded))
    out = processor.image_processor(list(batch.images))
    pixels, grids = out["pixel_values"], np.asarray(out["image_grid_thw"])
    positions = prepare_inputs(cfg, batch.input_ids, batch.attention_mask, grids)["positions"]
    pixels, padded = pad_patches(pixels, grids)
    plan = vision_plan(padded, cfg.vision)
    return (jnp.asarray(batch.input_ids), jnp.asarray(batch.attention_mask), jnp.asarray(batch.loss_mask),
            jnp.asarray(positions), jnp.asarray(pixels), plan), batch


def _loss(model, ids, attn, loss_mask, positions, pixels, plan):
    hidden = model(ids, attention_mask=attn, positions=positions, pixel_values=pixels, image_plan=plan,
                   return_hidden=True)
    total, count = next_token_loss_sum(hidden, model.logits, ids, loss_mask)
    return total / jnp.maximum(count, 1.0)


@nnx.jit
def train_step(model, optimizer, ids, attn, loss_mask, positions, pixels, plan):
    loss, grads = nnx.value_and_grad(_loss)(model, ids, attn, loss_mask, positions, pixels, plan)
    optimizer.update(model, grads)
    return loss


@nnx.jit
def _predict(model, ids, attn, positions, pixels, plan):
    return model(ids, attention_mask=attn, positions=positions, pixel_values=pixels,
                 image_plan=plan).argmax(-1)


@nnx.jit
def _features(model, pixels, plan):
    return model.visual(pixels, plan)


# ----------------------------------------------------------------------------- scoring
def white_like(images):
    return [np.full_like(im, 255) for im in images]


def ablations(examples) -> dict[str, list]:
    """Per condition, the images each example is scored with: its own, white ones, and those of
    the next example with as many images of the same sizes."""
    other = []
    for k, ex in enumerate(examples):
        shape = [im.shape for im in ex.images]
        for step in range(1, len(examples)):
            cand = examples[(k + step) % len(examples)]
            if [im.shape for im in cand.images] == shape:
                other.append(cand.images)
                break
        else:
            other.append(white_like(ex.images))
    return {"real": [ex.images for ex in examples], "white": [white_like(ex.images) for ex in examples],
            "other": other}


def parse_numbers(text: str) -> list[float]:
    import re

    return [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?", text)]


def iou(a, b) -> float:
    if len(a) != 4 or len(b) != 4:
        return 0.0
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def score(model, processor, examples, *, batch_size: int = 16, max_seq_len: int = 1024,
          conditions=("real", "white", "other")) -> dict:
    """Per condition (real/white/other) and question kind: exact share (teacher-forced argmax),
    and for box answers the share with IoU >= 0.5 of the teacher-forced decoded box."""
    cfg = model.config
    result = {}
    for cond, images in ablations(examples).items():
        if cond not in conditions:
            continue
        hits: dict[str, list[bool]] = {}
        boxes: dict[str, list[bool]] = {}
        for start in range(0, len(examples), batch_size):
            chunk = examples[start:start + batch_size]
            arrays, batch = batch_arrays(chunk, processor, cfg, max_seq_len, images[start:start + batch_size])
            ids, attn, _, positions, pixels, plan = arrays
            predicted = np.asarray(_predict(model, ids, attn, positions, pixels, plan))
            for row, ex in enumerate(chunk):
                mask = batch.loss_mask[row]
                edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))).reshape(-1, 2)
                for qa, (s, e) in zip(ex.qa, edges):
                    gold, pred = batch.input_ids[row, s:e], predicted[row, s - 1:e - 1]
                    hits.setdefault(qa.kind, []).append(bool((gold == pred).all()))
                    if "box" in qa.kind and "in a box" not in qa.kind:
                        text = processor.decode(pred[:-1].tolist())
                        boxes.setdefault(qa.kind, []).append(iou(parse_numbers(text), parse_numbers(qa.answer)) >= 0.5)
        result[cond] = {k: {"exact": round(float(np.mean(v)), 4), "questions": len(v),
                            **({"iou50": round(float(np.mean(boxes[k])), 4)} if k in boxes else {})}
                        for k, v in sorted(hits.items())}
    return result


def diagnose(model, processor, examples) -> dict:
    """Image-feature scale vs text embeddings, token-to-token variation, and how much of a feature
    depends on the image (real vs white)."""
    cfg = model.config
    ex = examples[:8]
    out = {}
    for cond, imgs in (("real", [e.images for e in ex]), ("white", [white_like(e.images) for e in ex])):
        flat = [im for group in imgs for im in group]
        o = processor.image_processor(flat)
        grids = np.asarray(o["image_grid_thw"])
        feats = np.asarray(_features(model, jnp.asarray(o["pixel_values"]), vision_plan(grids, cfg.vision)))
        out[cond] = feats
    real, white = out["real"], out["white"]
    norm = float(np.linalg.norm(real, axis=-1).mean())
    spread = float(np.linalg.norm(real - real.mean(0), axis=-1).mean() / max(norm, 1e-9))
    image_part = float(np.linalg.norm(real - white, axis=-1).mean() / max(norm, 1e-9))
    text_norm = float(np.linalg.norm(np.asarray(model.embed.get_value()), axis=-1).mean())
    return {"feature_norm": round(norm, 4), "text_norm": round(text_norm, 4), "token_spread": round(spread, 4),
            "image_dependent": round(image_part, 4)}


# ----------------------------------------------------------------------------- the probe
def heldout(task: str, n: int, seed: int = 1) -> list:
    return [make(task, seed, HELDOUT_SPLIT, i) for i in range(n)]


def run_probe(settings: ProbeSettings, *, log: Path | None = None, note: str = "", progress: bool = True,
              eval_every: int = 0) -> dict:
    started = time.monotonic()
    model, processor, optimizer = build(settings)
    cfg = model.config
    held = heldout(settings.task, settings.eval_n)
    steps = range(settings.steps)
    bar = None
    if progress:
        from tqdm import tqdm

        steps = bar = tqdm(steps, desc=f"probe {settings.task}", dynamic_ncols=True)
    losses, curve = [], []
    for step in steps:
        examples = [make(settings.task, settings.seed, TRAIN_SPLIT, step * settings.batch_size + k)
                    for k in range(settings.batch_size)]
        arrays, _ = batch_arrays(examples, processor, cfg, settings.max_seq_len)
        losses.append(float(train_step(model, optimizer, *arrays)))
        if bar is not None and step % 10 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-10:]):.3f}")
        if eval_every and (step + 1) % eval_every == 0 and step + 1 < settings.steps:
            s = score(model, processor, held[:48])
            curve.append({"step": step + 1, "loss": round(float(np.mean(losses[-20:])), 4),
                          "real": _mean_exact(s["real"]), "white": _mean_exact(s["white"])})
            if bar is not None:
                bar.write(json.dumps(curve[-1]))
    result = {"note": note, "settings": dataclasses.asdict(settings),
              "final_loss": round(float(np.mean(losses[-20:])), 4), "curve": curve,
              "scores": score(model, processor, held), "diagnosis": diagnose(model, processor, held),
              "minutes": round((time.monotonic() - started) / 60, 2)}
    if log is not None:
        with open(log, "a", encoding="utf-8") as f:
            f.write(json.dumps(result) + "\n")
    return result


def _mean_exact(by_kind: dict) -> float:
    return round(float(np.mean([v["exact"] for v in by_kind.values()])), 4)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for field in dataclasses.fields(ProbeSettings):
        kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "str")
        if "tuple" in str(kind):
            parser.add_argument(f"--{field.name.replace('_', '-')}", type=int, nargs=3, default=field.default)
        elif "float | None" in str(kind):
            parser.add_argument(f"--{field.name.replace('_', '-')}", type=float, default=field.default)
        else:
            cast = {"int": int, "float": float, "str": str}[str(kind)]
            parser.add_argument(f"--{field.name.replace('_', '-')}", type=cast, default=field.default)
    parser.add_argument("--log", type=Path, default=None)
    parser.add_argument("--note", default="")
    parser.add_argument("--eval-every", type=int, default=0)
    args = parser.parse_args(argv)
    settings = ProbeSettings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(ProbeSettings)})
    result = run_probe(settings, log=args.log, note=args.note, eval_every=args.eval_every)
    print(json.dumps({"note": result["note"], "final_loss": result["final_loss"],
                      "real": result["scores"]["real"], "white": result["scores"]["white"],
                      "other": result["scores"]["other"], "diagnosis": result["diagnosis"],
                      "minutes": result["minutes"]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def greedy_box_iou(model, processor, examples, *, max_new: int = 24, batch_size: int = 32) -> dict:
    """Per box kind, the share of held-out box questions whose FREELY generated (greedy) answer
    is a box with IoU >= 0.5 with the true one (earlier turns hold the true answers), and the share
    generated exactly. Full forwards over right-padded rows, one new token per row per forward."""
    from vilasr.processing.image import resize_rgb, to_rgb_array
    from vilasr.processing.processor import expand_placeholders
    from vilasr.rollout.sampler import bucket

    cfg = model.config
    tok = processor.tokenizer
    end = tok.token_to_id("<|im_end|>")
    prompts = []   # (kind, answer, ids, images)
    for ex in examples:
        conv = ex.conversation()
        images = [to_rgb_array(im) for im in ex.images]
        sizes = [processor.image_processor.target_size(*im.shape[:2]) for im in images]
        images = [im if im.shape[:2] == s else resize_rgb(im, *s) for im, s in zip(images, sizes)]
        counts = [processor.num_image_tokens(*im.shape[:2]) for im in images]
        for j, qa in enumerate(ex.qa):
            if "box" not in qa.kind or "in a box" in qa.kind:
                continue
            text = processor.apply_chat_template(conv[:2 * j + 1], add_generation_prompt=True)
            ids = tok.encode(expand_placeholders([text], counts, [])[0])
            prompts.append((qa.kind, qa.answer, np.asarray(ids, np.int32), images))
    hits: dict[str, list[tuple[bool, bool]]] = {}
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        width = bucket(max(len(p[2]) for p in chunk) + max_new, 64)
        ids = np.full((len(chunk), width), tok.pad_id, np.int32)
        attn = np.zeros((len(chunk), width), bool)
        lengths = np.array([len(p[2]) for p in chunk])
        for b, p in enumerate(chunk):
            ids[b, :len(p[2])], attn[b, :len(p[2])] = p[2], True
        flat = [im for p in chunk for im in p[3]]
        out = processor.image_processor(flat)
        grids = np.asarray(out["image_grid_thw"])
        pixels, padded = pad_patches(out["pixel_values"], grids)
        plan = vision_plan(padded, cfg.vision)
        done = np.zeros(len(chunk), bool)
        generated = [[] for _ in chunk]
        for _ in range(max_new):
            positions = prepare_inputs(cfg, ids, attn, grids)["positions"]
            pred = np.asarray(_predict(model, jnp.asarray(ids), jnp.asarray(attn), jnp.asarray(positions),
                                       jnp.asarray(pixels), plan))
            for b in range(len(chunk)):
                if done[b]:
                    continue
                t = int(pred[b, lengths[b] - 1])
                if t == end or lengths[b] >= width:
                    done[b] = True
                    continue
                generated[b].append(t)
                ids[b, lengths[b]], attn[b, lengths[b]] = t, True
                lengths[b] += 1
            if done.all():
                break
        for (kind, answer, _, _), g in zip(chunk, generated):
            text = processor.decode(g)
            hits.setdefault(kind, []).append((iou(parse_numbers(text), parse_numbers(answer)) >= 0.5,
                                              text.strip() == answer))
    return {k: {"iou50": round(float(np.mean([h[0] for h in v])), 4),
                "exact": round(float(np.mean([h[1] for h in v])), 4), "questions": len(v)}
            for k, v in sorted(hits.items())}
