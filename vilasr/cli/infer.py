"""`vilasr infer`: one multi-turn drawing rollout on your images, printed turn by turn, with every
image of the trajectory written as a PNG. `--use eval|rl` picks the reference's settings for that
use (`RolloutConfig.for_eval()` / `.for_rl()`, vilasr/uses.py); the rollout and sampling flags
(made from `RolloutConfig` and `SamplingConfig` by vilasr/cli/flags.py) override single values.
`--prompt-template FILE` replaces our prompt wording (`PromptTemplate.from_file`). Inputs and the
output folder are checked before the model loads; errors go through vilasr/cli/main.py's one
error path."""

from __future__ import annotations

import re
from pathlib import Path

from drawing_ops.protocol import ProblemType, PromptTemplate
from synth.cli import non_negative_int
from vilasr.cli.flags import HelpFormatter, add_config_flags, config_from_args
from vilasr.uses import Use

OUT_FILES = ("image_*.png",)
ROLLOUT_FLAGS = ("max_turns", "max_turns_maze", "max_images", "max_turn_tokens", "max_response_tokens",
                 "image_tokens", "max_pixels", "strict")
SAMPLING_FLAGS = ("temperature", "top_p", "top_k", "greedy")
USES = (Use.EVAL, Use.RL)


def add_parser(sub) -> None:
    from vilasr.rollout import RolloutConfig, RolloutTask, SamplingConfig

    infer = sub.add_parser("infer", help="run a multi-turn drawing rollout on images and print it",
                           formatter_class=HelpFormatter)
    source = infer.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, help="a local Hugging Face Qwen2.5-VL folder")
    source.add_argument("--preset", choices=["tiny"], help="a randomly initialised built-in model")
    infer.add_argument("--image", type=Path, action="append", required=True,
                       help="input image, e.g. examples/room.png (repeat for more)")
    infer.add_argument("--question", required=True, help="the question")
    infer.add_argument("--option", action="append", default=[], metavar="TEXT",
                       help="an answer option, e.g. 'A. left' (repeat for more); multiple-choice questions then "
                            "ask for the option's letter")
    infer.add_argument("--problem-type", default=str(RolloutTask.problem_type), choices=[str(p) for p in ProblemType],
                       help="how the answer is asked for")
    infer.add_argument("--data-type", default=RolloutTask.data_type,
                       help="kind of input; 'maze' allows --max-turns-maze turns instead of --max-turns")
    infer.add_argument("--use", type=Use, choices=USES, default=Use.EVAL,
                       help="the reference's settings for evaluation or RL (budgets, sampling, image size, cap); "
                            "the flags below override single values")
    infer.add_argument("--prompt-template", type=Path, default=None,
                       help="a JSON or TOML prompt template (PromptTemplate fields); default: our wording")
    presets = {str(use): RolloutConfig.for_use(use) for use in USES}
    add_config_flags(infer, RolloutConfig, ROLLOUT_FLAGS, presets=presets)
    add_config_flags(infer, SamplingConfig, SAMPLING_FLAGS, presets=presets, pick=lambda cfg: cfg.sampling)
    infer.add_argument("--seed", type=non_negative_int, default=0, help="sampling seed (and the tiny preset's weights)")
    infer.add_argument("--out", type=Path, default=Path("out/infer"),
                       help="folder for the trajectory's images: new, empty, or one an earlier infer wrote (its "
                            "old images are cleared)")
    infer.set_defaults(func=run)


def load_model_and_processor(model_dir: Path | None, preset: str | None, seed: int = 0):
    """A local Hugging Face folder, or a randomly initialised preset (for trying the pipeline)."""
    from flax import nnx

    from vilasr.errors import ConfigError
    from vilasr.model import Qwen25VL, Qwen25VLConfig
    from vilasr.processing import Processor

    if model_dir is not None:
        return Qwen25VL.from_pretrained(model_dir), Processor.from_pretrained(model_dir)
    if preset != "tiny":
        raise ConfigError(f"--preset {preset} has no built-in tokenizer or weights; pass --model DIR "
                          "(a local Hugging Face folder) or use --preset tiny")
    return Qwen25VL(Qwen25VLConfig.preset("tiny"), rngs=nnx.Rngs(seed)), Processor.tiny()


def check_budgets(config, max_positions: int) -> None:
    """ConfigError if a token budget exceeds what the model can attend to (the cache is sized by it)."""
    from vilasr.errors import ConfigError

    for flag, value in (("--max-turn-tokens", config.max_turn_tokens),
                        ("--max-response-tokens", config.max_response_tokens)):
        if value is not None and value > max_positions:
            raise ConfigError(f"{flag} {value} is more than the {max_positions} positions the model handles; "
                              f"use at most {max_positions}")


def format_trajectory(traj, tokenizer) -> str:
    """The conversation as text: prompt, then alternating model turns and tool feedback."""
    pieces, start = [], 0
    mask = traj.model_mask
    for i in range(1, len(mask) + 1):
        if i == len(mask) or mask[i] != mask[start]:
            who = "model" if mask[start] else ("prompt" if start == 0 else "feedback")
            text = tokenizer.decode(traj.token_ids[start:i].tolist())
            text = _collapse_image_pads(text)
            pieces.append(f"--- {who} ---\n{text.strip()}")
            start = i
    pieces.append(f"--- finish: {traj.finish_reason}; answer: {traj.answer!r}; "
                  f"{traj.response_len} response tokens, {len(traj.images)} images, "
                  f"{traj.num_dropped} tool item(s) dropped or left undrawn ---")
    for turn, dropped in traj.dropped:
        pieces.append(f"    turn {turn}: {type(dropped.error).__name__}: {dropped.error}")
    return "\n\n".join(pieces)


def _collapse_image_pads(text: str) -> str:
    return re.sub(r"<\|vision_start\|>(<\|image_pad\|>)+<\|vision_end\|>",
                  lambda m: f"<image: {m.group(0).count('<|image_pad|>')} tokens>", text)


def rollout_config_from_args(args):
    """The `--use` preset with the flags given on the command line (and the prompt template)."""
    from vilasr.rollout import RolloutConfig, SamplingConfig

    base = RolloutConfig.for_use(args.use)
    sampling = config_from_args(SamplingConfig, args, SAMPLING_FLAGS, base=base.sampling)
    more = {"template": PromptTemplate.from_file(args.prompt_template)} if args.prompt_template else {}
    return config_from_args(RolloutConfig, args, ROLLOUT_FLAGS, base=base, sampling=sampling, **more)


def run(args) -> int:
    from vilasr.cli.inputs import read_image
    from vilasr.cli.outputs import check_run_folder, prepare_run_folder, write_png
    from vilasr.rollout import RolloutTask, rollout

    images = [read_image(p) for p in args.image]
    config = rollout_config_from_args(args)
    task = RolloutTask(images=images, question=args.question, options=tuple(args.option),
                       problem_type=args.problem_type, data_type=args.data_type)
    check_run_folder(args.out)  # before the model loads: fail early
    model, processor = load_model_and_processor(args.model, args.preset, args.seed)
    check_budgets(config, model.config.text.max_position_embeddings)
    traj, = rollout(model, processor, [task], config, seed=args.seed, progress=True)
    print(format_trajectory(traj, processor.tokenizer))
    out = prepare_run_folder(args.out, "infer", OUT_FILES)  # an earlier run's images go now
    for k, image in enumerate(traj.images, start=1):
        path = out / f"image_{k}.png"
        write_png(image, path)
        print(f"image {k}: {path}")
    return 0
