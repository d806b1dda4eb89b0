"""`vilasr synth`: write a synthetic dataset (or a gallery of examples).

    vilasr synth {maze,static,multiview} --out DIR --n N [--n-test M] [--seed S]
                 [--format sharegpt|benchmark|tfds] [--trajectories none|cold|reflective]
                 [--size PX] [--loops F] [--backend numpy|jax|pil] [--overwrite]
                 [--prompt-template FILE]
    vilasr synth gallery --out DIR [--seed S] [--n K]

Writes are atomic: everything goes into a hidden `.partial` folder beside OUT, the manifest
`SYNTH_COMPLETE.json` is written last, and only then is the folder renamed to OUT. A run that
fails or is interrupted removes its `.partial` folder and never leaves an OUT that looks complete;
one that is killed outright (SIGKILL, power loss) leaves it, and the next run into the same place
reports and removes it. --overwrite replaces only a folder that holds our manifest, or an empty
one (after the new one is finished); anything else at OUT is left alone.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import socket
import sys
import tempfile
import zlib
from pathlib import Path

from drawing_ops.protocol import DEFAULT_TEMPLATE, PromptTemplate
from synth import families
from synth.errors import SynthError
from synth.io import MANIFEST
from synth.records import FAMILIES, TRAJECTORY_KINDS

FORMATS = ("sharegpt", "benchmark", "tfds")
DEFAULT_FORMAT = "sharegpt"  # written with the runtime install alone; tfds needs the `data` extra
MAX_SAMPLES = 1_000_000  # per split: sharegpt records are held in memory until the JSON is written
MAX_GALLERY = 100  # examples per family
EXIT_BAD_INPUT = 2
# Names our temporary folders by machine and process, so a later run can tell a dead run's leftovers
# from a live one's.
HOST_TAG = f"{zlib.crc32(socket.gethostname().encode()):08x}"


def non_negative_int(text: str) -> int:
    """argparse type: a whole number >= 0 (seeds, counts). (vilasr's command line uses it too.)"""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def add_synth_command(subparsers) -> argparse.ArgumentParser:
    """Add the `synth` sub-command to an argparse subparsers object."""
    p = subparsers.add_parser("synth", help="generate synthetic spatial tasks with drawing trajectories",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    configure_parser(p)
    return p


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("family", choices=[*FAMILIES, "gallery"], help="task family, or 'gallery' for example PNGs")
    p.add_argument("--out", type=Path, required=True, help="output folder (created atomically; must not exist "
                   "unless --overwrite)")
    p.add_argument("--n", type=non_negative_int, default=None,
                   help="samples in the train split (default 0 if --n-test is given); gallery: examples per "
                        "family (default 3)")
    p.add_argument("--n-test", type=non_negative_int, default=0, help="samples in the test split (default: 0)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed (>= 0); sample i of a seed is always the same "
                   "(default: 0)")
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="sharegpt: LLaMA-Factory JSON + PNGs (default); benchmark: ViLaSR-eval JSON (questions "
                        "and input images only); tfds: ArrayRecord via TFDS (writing needs the `data` extra, "
                        "i.e. tensorflow-cpu)")
    p.add_argument("--trajectories", choices=TRAJECTORY_KINDS, default=None,
                   help="drawing trajectories to write (default: cold; benchmark files hold none)")
    p.add_argument("--size", type=int, default=None,
                   help="image size in px (maze: side, default 616; static: side, default 448; multiview: width, "
                        "default 448, height 3/4 of it)")
    p.add_argument("--loops", type=float, default=None,
                   help="maze only: share of leftover walls removed, 0..1 (default: 0, a perfect maze)")
    p.add_argument("--backend", choices=["numpy", "jax", "pil"], default="numpy",
                   help="drawing backend (default: numpy)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing OUT that holds a finished synth output (once the new one is complete)")
    p.add_argument("--prompt-template", type=Path, default=None,
                   help="a JSON or TOML prompt template (PromptTemplate fields) for the prompts and feedback turns "
                        "(default: our wording)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def main(argv: list[str] | None = None) -> int:
    """`python -m synth.cli ...`: the same as `vilasr synth ...` (whose error path handles more)."""
    parser = argparse.ArgumentParser(prog="vilasr synth", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    configure_parser(parser)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except SynthError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT


def run(args) -> int:
    """Check everything (flags, sizes, OUT) before the work starts; raise SynthError if it cannot work."""
    if args.family == "gallery":
        return _run_gallery(args)
    from synth.benchmarks import check_train_seed

    check_train_seed(args.seed)  # the held-out benchmarks' seeds never make training data
    splits = _splits(args)
    fmt = args.format or DEFAULT_FORMAT
    if fmt == "benchmark" and args.trajectories not in (None, "none"):
        raise SynthError(f"--format benchmark writes questions and input images only, no trajectories; drop "
                         f"--trajectories {args.trajectories}, or use --format sharegpt")
    trajectories = args.trajectories or ("none" if fmt == "benchmark" else "cold")
    overrides = {}
    if args.loops is not None:
        if args.family != "maze":
            raise SynthError("--loops applies to mazes only; drop it")
        overrides["loop_fraction"] = args.loops
    try:
        config = families.default_config(args.family, args.size, **overrides)
    except (ValueError, TypeError) as exc:
        raise SynthError(f"{args.family}: {exc}") from None
    try:
        template = PromptTemplate.from_file(args.prompt_template) if args.prompt_template else DEFAULT_TEMPLATE
    except ValueError as exc:   # a TemplateError
        raise SynthError(f"--prompt-template: {exc}") from None
    if fmt == "tfds":
        try:
            import tensorflow  # noqa: F401 -- TFDS encodes images through it
        except ImportError:
            raise SynthError("--format tfds needs TensorFlow to write: install the `data` extra (in a clone: "
                             ".venv/bin/pip install -e '.[data]'), or use --format sharegpt") from None
    out = check_out(args.out, args.overwrite)
    options = {"format": fmt, "trajectories": trajectories, "seed": args.seed, "backend": args.backend,
               "progress": not args.no_progress, "template": template}
    result = _atomic(out, lambda tmp: write_dataset(tmp, args.family, splits, config, **options))
    print(f"wrote {sum(splits.values())} {args.family} sample(s) ({fmt}, trajectories={trajectories}) "
          f"to {args.out}; digest {result['digest'][:16]}")
    return 0


def _splits(args) -> dict[str, int]:
    n = args.n if args.n is not None else 0
    if n + args.n_test == 0:
        raise SynthError("give --n N (train samples) and/or --n-test M (test samples), at least one > 0")
    for flag, count in (("--n", n), ("--n-test", args.n_test)):
        if count > MAX_SAMPLES:
            raise SynthError(f"{flag} {count} is more than {MAX_SAMPLES:,} samples in one split; write several "
                             "datasets (a different --seed each)")
    return {name: count for name, count in (("train", n), ("test", args.n_test)) if count > 0}


def _run_gallery(args) -> int:
    from synth.gallery import write_gallery

    ignored = [flag for flag, given in (("--n-test", args.n_test), ("--format", args.format),
                                        ("--trajectories", args.trajectories), ("--size", args.size is not None),
                                        ("--loops", args.loops is not None),
                                        ("--prompt-template", args.prompt_template is not None)) if given]
    if ignored:
        raise SynthError(f"the gallery takes --out, --seed, --n and --backend only; drop {', '.join(ignored)}")
    per_family = 3 if args.n is None else args.n
    if not 1 <= per_family <= MAX_GALLERY:
        raise SynthError(f"--n for the gallery is examples per family, 1..{MAX_GALLERY}; got {per_family}")
    out = check_out(args.out, args.overwrite)

    def write(tmp: Path):
        paths = write_gallery(tmp, seed=args.seed, per_family=per_family, backend=args.backend)
        manifest = {"family": "gallery", "seed": args.seed, "per_family": per_family, "backend": args.backend,
                    "files": [p.name for p in paths]}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
        return paths

    paths = _atomic(out, write)
    print(f"gallery: {len(paths)} PNG(s) in {args.out}")
    return 0


def write_dataset(tmp: Path, family: str, splits: dict[str, int], config, *, format: str, trajectories: str,
                  seed: int, backend: str = "numpy", progress: bool = True,
                  template: PromptTemplate = DEFAULT_TEMPLATE) -> dict:
    """Write the dataset into `tmp` and return its manifest (also written, last, as SYNTH_COMPLETE.json)."""
    import hashlib

    from tqdm import tqdm

    from synth import io

    bar = tqdm(total=sum(splits.values()), desc=f"synth {family}", unit="sample", disable=not progress,
               file=sys.stderr)
    hashes = {split: hashlib.sha256() for split in splits}

    def seen(sample, split):        # the same digest as records.dataset_digest, computed on the fly
        hashes[split].update(sample.digest().encode())
        bar.update(1)

    manifest = {"family": family, "format": format, "seed": seed, "splits": splits,
                "trajectories": trajectories, "backend": backend,
                "config": families.config_to_json(config)}
    if template != DEFAULT_TEMPLATE:
        manifest["prompt_template"] = template.to_dict()
    try:
        if format == "tfds":
            from synth import tfds_builders

            name = tfds_builders.build(family, tmp, seed=seed, splits=splits, trajectory=trajectories,
                                       config=config, backend=backend, progress=seen, template=template)
            shutil.rmtree(tmp / ".downloads", ignore_errors=True)
            manifest["tfds_name"] = name
        else:
            for split, n in splits.items():
                stream = _tap(families.iter_samples(family, n, seed, config=config, trajectory=trajectories,
                                                    split=split, backend=backend, template=template), seen, split)
                path = (io.export_sharegpt(stream, tmp, name=split, template=template)
                        if format == "sharegpt" else io.export_benchmark(stream, tmp, name=split))
                manifest.setdefault("files", {})[split] = path.name
    finally:
        bar.close()
    manifest["split_digests"] = {split: h.hexdigest() for split, h in hashes.items()}
    manifest["digest"] = dataset_digest_of(manifest["split_digests"])
    (tmp / io.MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
    return manifest


def _tap(stream, callback, split):
    for sample in stream:
        callback(sample, split)
        yield sample


def dataset_digest_of(split_digests: dict[str, str]) -> str:
    import hashlib

    h = hashlib.sha256()
    for split in sorted(split_digests):
        h.update(f"{split}={split_digests[split]};".encode())
    return h.hexdigest()


# -- the output folder ------------------------------------------------------------------------------

def check_out(out: Path, overwrite: bool) -> Path:
    """`out` (absolute) if a synth output may be written there; SynthError saying why not otherwise.

    Never replaced: the current folder or one holding it, a file, a folder without our manifest
    that is not empty. Replaced with --overwrite only: a finished synth output, an empty folder."""
    out = Path(os.path.abspath(out))
    here = Path.cwd().resolve()
    if out.resolve() == here or out.resolve() in here.parents:
        raise SynthError(f"--out {out} is the current folder or holds it; name a new folder, e.g. --out data/maze")
    if out.exists() or out.is_symlink():
        if not out.is_dir() or out.is_symlink():
            raise SynthError(f"--out {out} is a file (or a link); give a path for a new folder")
        ours = (out / MANIFEST).is_file()
        if not ours and any(out.iterdir()):
            raise SynthError(f"--out {out} holds files that are not a finished `vilasr synth` output (it has no "
                             f"{MANIFEST}); it is left alone: choose another --out")
        if not overwrite:
            raise SynthError(f"--out {out} exists; pass --overwrite to replace it, or choose another --out")
    return out


def _owner(leftover: Path, out: Path) -> tuple[str, int] | None:
    """(host tag, pid) of the run that made a temporary folder beside `out`, if its name says."""
    tag = leftover.name[len(out.name) + 2:].split(".")[0]
    host, _, pid = tag.partition("-")
    return (host, int(pid)) if pid.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def clean_leftovers(out: Path) -> None:
    """Report and remove the temporary folders a killed run into `out` left beside it (those of a
    run that is still going, or of another machine, are reported and left alone)."""
    for leftover in sorted(out.parent.glob(f".{glob.escape(out.name)}.*")):
        if leftover.suffix not in (".partial", ".old") or not leftover.is_dir() or leftover.is_symlink():
            continue
        owner = _owner(leftover, out)
        if owner and owner[0] == HOST_TAG and owner[1] != os.getpid() and _alive(owner[1]):
            print(f"note: {leftover} belongs to a synth run still going (pid {owner[1]}); left alone",
                  file=sys.stderr)
        elif owner and owner[0] != HOST_TAG:
            print(f"note: {leftover} was left by a run on another machine; remove it once that run is over",
                  file=sys.stderr)
        else:
            print(f"removing {leftover}: left by an interrupted run", file=sys.stderr)
            shutil.rmtree(leftover, ignore_errors=True)


def _atomic(out: Path, write):
    """Run `write(tmp)` in a fresh folder beside `out`, then rename it to `out` (replacing the old
    `out`, which check_out has vetted). The temporary folder goes whatever happens, Ctrl-C included."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        clean_leftovers(out)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.{HOST_TAG}-{os.getpid()}.", suffix=".partial",
                                    dir=out.parent))
    except OSError as e:
        raise SynthError(f"--out {out}: cannot write in {out.parent} ({e.strerror}); choose a folder you can "
                         "write to") from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)   # mkdtemp makes it private; OUT gets the usual permissions
        result = write(tmp)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.{HOST_TAG}-{os.getpid()}.", suffix=".old",
                                        dir=out.parent))
            old.rmdir()
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
        return result
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


if __name__ == "__main__":
    sys.exit(main())
