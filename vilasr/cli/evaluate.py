"""`vilasr eval`: run a benchmark, write results.jsonl and the reports; `vilasr compare`: several
runs side by side.

    vilasr eval --benchmark maze --data maze.json --images DIR --model DIR --out runs/maze
    vilasr eval --benchmark synth-maze --preset tiny --out runs/tiny   # built-in: no --data needed
    vilasr compare runs/maze runs/other

`--use eval` (the default) takes the reference's evaluation settings (vilasr/uses.py); the
rollout and sampling flags override single values. The built-in benchmarks are made by `synth`
into OUT/data unless --data is given. An interrupted run (Ctrl-C, SIGTERM, a crash) resumes when
the same command runs again: finished records are not redone.
"""

from __future__ import annotations

import json
from pathlib import Path

from synth.cli import non_negative_int
from vilasr.cli.flags import HelpFormatter, add_config_flags
from vilasr.cli.infer import ROLLOUT_FLAGS, SAMPLING_FLAGS, USES
from vilasr.eval.benchmarks import DEFAULT_FRAMES, Benchmark
from vilasr.uses import Use

RUN_FILE = "run.json"   # what the run is (benchmark, data, model): a resume must match it
DATA_DIR = "data"


def positive_int(text: str) -> int:
    import argparse

    value = non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def add_parser(sub) -> None:
    from vilasr.rollout import RolloutConfig

    p = sub.add_parser("eval", help="run a benchmark and write results, tables, plots and a gallery",
                       description="Run a benchmark (a record file, or a built-in synth-* set) and write "
                                   "results.jsonl, summary.md, plots and gallery.html into --out. Running the "
                                   "same command again resumes an interrupted run.",
                       formatter_class=HelpFormatter)
    p.add_argument("--benchmark", type=Benchmark, choices=list(Benchmark), required=True,
                   help="which benchmark (sets the aggregate and the paper's reference number)")
    p.add_argument("--data", type=Path, default=None,
                   help="the benchmark's record file (JSON list or JSON lines, SPEC §6); optional for the "
                        "built-in synth-* benchmarks, which are written to OUT/data")
    p.add_argument("--images", type=Path, default=None,
                   help="folder the records' image paths start from (default: the data file's folder)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, help="a local Hugging Face Qwen2.5-VL folder")
    source.add_argument("--preset", choices=["tiny"], help="a randomly initialised built-in model")
    p.add_argument("--out", type=Path, required=True,
                   help="run folder: new, empty, or an earlier eval run of the same benchmark and data (resumed)")
    p.add_argument("--use", type=Use, choices=USES, default=Use.EVAL,
                   help="the reference's settings for evaluation or RL; the flags below override single values")
    p.add_argument("--prompt-template", type=Path, default=None,
                   help="a JSON or TOML prompt template (PromptTemplate fields); default: our wording. A run "
                        "that compares a released checkpoint with the paper needs the reference's wording")
    presets = {str(use): RolloutConfig.for_use(use) for use in USES}
    add_config_flags(p, RolloutConfig, ROLLOUT_FLAGS, presets=presets)
    from vilasr.rollout import SamplingConfig

    add_config_flags(p, SamplingConfig, SAMPLING_FLAGS, presets=presets, pick=lambda cfg: cfg.sampling)
    p.add_argument("--frames", type=positive_int, default=DEFAULT_FRAMES,
                   help="frames sampled from a record's video file (round(linspace(0, n-1, FRAMES)))")
    p.add_argument("--batch-size", type=positive_int, default=8,
                   help="slots: records rolling out at once (continuous batching: a finished record's slot takes the next)")
    p.add_argument("--limit", type=positive_int, default=None, help="run only the first LIMIT usable records")
    p.add_argument("--n", type=positive_int, default=None,
                   help="records of a built-in benchmark made without --data (default 200)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="sampling seed (and the tiny preset's weights)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)

    c = sub.add_parser("compare", help="print several eval runs side by side", formatter_class=HelpFormatter)
    c.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="run folders written by `vilasr eval`")
    c.set_defaults(func=run_compare)


def run_identity(args, data: Path | None, config) -> dict:
    """What a resumed run must share with the folder's first run (`settings`: a digest of the
    rollout and sampling settings and the prompt template, so results of other settings never mix)."""
    import hashlib

    return {"benchmark": str(args.benchmark), "data": str(Path(data).resolve()) if data else None,
            "images": str(args.images.resolve()) if args.images else None,
            "model": str(args.model.resolve()) if args.model else f"preset:{args.preset}", "seed": args.seed,
            "frames": args.frames, "settings": hashlib.sha1(repr(config).encode()).hexdigest()[:12]}


def _difference(key: str, before, now) -> str:
    if key == "settings":
        return "the rollout/sampling flags or the prompt template differ"
    return f"{key} was {before}, now {now}"


def prepare_out(out: Path, identity: dict) -> bool:
    """Check and create the run folder; True when it resumes an earlier run. InputError if the folder
    holds something else."""
    from vilasr.cli.outputs import check_run_folder, prepare_run_folder
    from vilasr.errors import InputError
    from vilasr.eval.report import REPORT_FILES
    from vilasr.eval.runner import IMAGES, RESULTS

    check_run_folder(out)
    run_file = out / RUN_FILE
    if run_file.is_file():
        try:
            earlier = json.loads(run_file.read_text(encoding="utf-8"))
        except ValueError:
            raise InputError(f"{run_file} is damaged; remove the folder or choose another --out") from None
        different = {k: (earlier.get(k), v) for k, v in identity.items() if k != "data" and earlier.get(k) != v}
        if identity["data"] and earlier.get("data") and earlier["data"] != identity["data"]:
            different["data"] = (earlier["data"], identity["data"])
        if different:
            what = "; ".join(_difference(k, a, b) for k, (a, b) in different.items())
            raise InputError(f"--out {out} holds another eval run ({what}); choose another --out to start a new "
                             "run, or repeat the earlier command to resume it")
        return True
    patterns = (RESULTS, RUN_FILE, *REPORT_FILES)
    prepare_run_folder(out, "eval", patterns)
    (out / IMAGES).mkdir(exist_ok=True)
    return False


def builtin_data(args) -> Path:
    """The built-in benchmark's record file: --data, or one written by synth into OUT/data."""
    from synth.benchmarks import DEFAULT_COUNT, write_builtin

    print(f"writing the built-in benchmark {args.benchmark} into {args.out / DATA_DIR}")
    return write_builtin(str(args.benchmark), args.out / DATA_DIR, n=args.n or DEFAULT_COUNT)


def run(args) -> int:
    from vilasr.cli.infer import check_budgets, load_model_and_processor, rollout_config_from_args
    from vilasr.cli.interrupts import Stopped, stop_requests
    from vilasr.errors import InputError
    from vilasr.eval.benchmarks import check_frames, load_records
    from vilasr.eval.report import write_reports
    from vilasr.eval.report import template_note as note_for
    from vilasr.eval.runner import RESULTS, model_generate, read_results, run_eval, summarize

    check_frames(args.frames)
    if args.data is None and not args.benchmark.builtin:
        raise InputError(f"--benchmark {args.benchmark} needs --data FILE (its record file); only the built-in "
                         "synth-* benchmarks are made without one")
    if args.n is not None and (args.data is not None or not args.benchmark.builtin):
        raise InputError("--n sets the size of a built-in benchmark made without --data; drop it (use --limit to "
                         "run fewer records)")
    config = rollout_config_from_args(args)
    if args.data is not None:
        loaded = load_records(args.data, args.images)  # read before the folder is touched: fail early
    resumed = prepare_out(args.out, run_identity(args, args.data, config))
    data = args.data if args.data is not None else builtin_data(args)
    if args.data is None:
        loaded = load_records(data, args.images)
    identity = run_identity(args, data, config)
    if not resumed:
        (args.out / RUN_FILE).write_text(json.dumps(identity, indent=1) + "\n", encoding="utf-8")
    records = loaded.records[: args.limit] if args.limit else loaded.records
    if not records:
        raise InputError(f"{data} holds no usable record ({len(loaded.skipped)} skipped, e.g. "
                         f"{loaded.skipped[0].reason if loaded.skipped else 'an empty list'}); check the file")
    done = {line["id"] for line in read_results(args.out / RESULTS)}
    todo = sum(1 for r in records if r.id not in done)
    print(f"{args.benchmark}: {len(records)} record(s), {len(records) - todo} already done, "
          f"{len(loaded.skipped)} skipped while loading")
    generate = None
    if todo:
        model, processor = load_model_and_processor(args.model, args.preset, args.seed)
        check_budgets(config, model.config.text.max_position_embeddings)
        generate = model_generate(model, processor, config, seed=args.seed)
    note = note_for(str(args.prompt_template) if args.prompt_template else None)
    wanted = {r.id for r in records}
    try:
        with stop_requests() as stop:
            summary = run_eval(records, generate, args.out, benchmark=args.benchmark, batch_size=args.batch_size,
                               frames=args.frames, skipped=loaded.skipped, progress=not args.no_progress,
                               stop=stop, template_note=note)
    except Stopped:  # the reports of what is finished so far; the next run completes them
        lines = [line for line in read_results(args.out / RESULTS) if line["id"] in wanted]
        write_reports(args.out, summarize(lines, args.benchmark, loaded.skipped, template_note=note), lines)
        raise
    lines = [line for line in read_results(args.out / RESULTS) if line["id"] in wanted]
    write_reports(args.out, summary, lines)
    iv = summary.overall_interval
    print(f"{args.benchmark}: overall {100 * summary.overall:.1f}" if summary.overall is not None
          else f"{args.benchmark}: no record counts towards the overall score", end="")
    print(f" [95 % {100 * iv.low:.1f}, {100 * iv.high:.1f}]" if iv else "", end="")
    print(f" over {summary.scored} record(s); {len(summary.skipped)} skipped; reports in {args.out} "
          "(summary.md, gallery.html)")
    return 0


def run_compare(args) -> int:
    from vilasr.eval.report import compare_table, read_summary

    runs = [(str(path), read_summary(path)) for path in args.runs]
    print(compare_table(runs), end="")
    return 0
