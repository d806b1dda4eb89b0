"""`vilasr synth`: write a synthetic dataset (or a gallery of examples).

    vilasr synth {maze,static,multiview} --n N --seed S --out DIR
                 [--format tfds|sharegpt|benchmark] [--trajectories none|cold|reflective]
                 [--n-test M] [--size PX] [--loops F] [--backend numpy|jax|pil] [--overwrite]
                 [--prompt-template FILE]
    vilasr synth gallery --out DIR [--seed S] [--n K]

Writes are atomic: everything goes into a hidden temporary directory beside OUT, the manifest
`SYNTH_COMPLETE.json` is written last, and only then is the directory renamed to OUT. A run that
fails or is interrupted removes its temporary directory, and never leaves an OUT that looks
complete. An existing OUT is replaced only with --overwrite (after the new one is finished).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from drawing_ops.protocol import DEFAULT_TEMPLATE, PromptTemplate
from synth import families
from synth.records import FAMILIES, TRAJECTORY_KINDS

FORMATS = ("tfds", "sharegpt", "benchmark")
EXIT_BAD_INPUT = 2


def add_synth_command(subparsers) -> argparse.ArgumentParser:
    """Add the `synth` sub-command to an argparse subparsers object."""
    p = subparsers.add_parser("synth", help="generate synthetic spatial tasks with drawing trajectories",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    configure_parser(p)
    return p


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("family", choices=[*FAMILIES, "gallery"], help="task family, or 'gallery' for example PNGs")
    p.add_argument("--out", type=Path, required=True, help="output directory (created atomically)")
    p.add_argument("--n", type=int, default=None, help="samples in the train split (gallery: per family, default 3)")
    p.add_argument("--n-test", type=int, default=0, help="samples in the test split (default 0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--format", choices=FORMATS, default="tfds",
                   help="tfds: ArrayRecord via TFDS (needs tensorflow-cpu to write); sharegpt: LLaMA-Factory JSON; "
                        "benchmark: ViLaSR-eval JSON (questions and input images only)")
    p.add_argument("--trajectories", choices=TRAJECTORY_KINDS, default="cold")
    p.add_argument("--size", type=int, default=None,
                   help="image size in px (maze: side, default 616; static: side, default 448; multiview: width, "
                        "default 448, height 3/4 of it)")
    p.add_argument("--loops", type=float, default=None, help="maze only: share of leftover walls removed (0..1)")
    p.add_argument("--backend", choices=["numpy", "jax", "pil"], default="numpy", help="drawing backend")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT once the new data is complete")
    p.add_argument("--prompt-template", type=Path, default=None,
                   help="a JSON or TOML prompt template (PromptTemplate fields) for the prompts and feedback turns; "
                        "default: our wording")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vilasr synth", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    configure_parser(parser)
    args = parser.parse_args(argv)
    return args.func(args)


def run(args) -> int:
    if args.family == "gallery":
        from synth.gallery import write_gallery

        paths = _atomic(args.out, args.overwrite, lambda tmp: write_gallery(tmp, seed=args.seed, per_family=args.n or 3,
                                                                            backend=args.backend))
        if paths is None:
            return EXIT_BAD_INPUT
        print(f"gallery: {len(paths)} PNG(s) in {args.out}")
        return 0
    if args.n is None or args.n < 0 or args.n_test < 0 or args.n + args.n_test == 0:
        print("error: give --n N (and/or --n-test M) with a positive total", file=sys.stderr)
        return EXIT_BAD_INPUT
    overrides = {}
    if args.loops is not None:
        if args.family != "maze":
            print("error: --loops applies to mazes only", file=sys.stderr)
            return EXIT_BAD_INPUT
        overrides["loop_fraction"] = args.loops
    try:
        config = families.default_config(args.family, args.size, **overrides)
        args.template = PromptTemplate.from_file(args.prompt_template) if args.prompt_template else DEFAULT_TEMPLATE
    except (ValueError, TypeError) as exc:   # (TemplateError is a ValueError)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    splits = {name: n for name, n in (("train", args.n), ("test", args.n_test)) if n > 0}
    if args.format == "tfds":
        try:
            import tensorflow  # noqa: F401 -- TFDS encodes images through it
        except ImportError:
            print("error: --format tfds needs TensorFlow to write (pip install tensorflow-cpu); reading needs "
                  "only tensorflow-datasets, array-record and grain. Or use --format sharegpt.", file=sys.stderr)
            return EXIT_BAD_INPUT
    result = _atomic(args.out, args.overwrite, lambda tmp: write_dataset(tmp, args.family, splits, config, args))
    if result is None:
        return EXIT_BAD_INPUT
    print(f"wrote {sum(splits.values())} {args.family} sample(s) ({args.format}, trajectories={args.trajectories}) "
          f"to {args.out}; digest {result['digest'][:16]}")
    return 0


def write_dataset(tmp: Path, family: str, splits: dict[str, int], config, args) -> dict:
    """Write the dataset into `tmp` and return its manifest (also written, last, as SYNTH_COMPLETE.json)."""
    import hashlib

    from tqdm import tqdm

    from synth import io

    bar = tqdm(total=sum(splits.values()), desc=f"synth {family}", unit="sample", disable=args.no_progress,
               file=sys.stderr)
    hashes = {split: hashlib.sha256() for split in splits}
    template = getattr(args, "template", DEFAULT_TEMPLATE)

    def seen(sample, split):        # the same digest as records.dataset_digest, computed on the fly
        hashes[split].update(sample.digest().encode())
        bar.update(1)

    manifest = {"family": family, "format": args.format, "seed": args.seed, "splits": splits,
                "trajectories": args.trajectories, "backend": args.backend,
                "config": families.config_to_json(config)}
    if template != DEFAULT_TEMPLATE:
        manifest["prompt_template"] = template.to_dict()
    try:
        if args.format == "tfds":
            from synth import tfds_builders

            name = tfds_builders.build(family, tmp, seed=args.seed, splits=splits, trajectory=args.trajectories,
                                       config=config, backend=args.backend, progress=seen, template=template)
            shutil.rmtree(tmp / ".downloads", ignore_errors=True)
            manifest["tfds_name"] = name
        else:
            for split, n in splits.items():
                stream = _tap(families.iter_samples(family, n, args.seed, config=config, trajectory=args.trajectories,
                                                    split=split, backend=args.backend, template=template),
                              seen, split)
                path = (io.export_sharegpt(stream, tmp, name=split, template=template)
                        if args.format == "sharegpt" else io.export_benchmark(stream, tmp, name=split))
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


def _atomic(out: Path, overwrite: bool, write):
    """Run `write(tmp)` in a fresh directory beside `out`, then rename it to `out`."""
    out = Path(out)
    if out.exists() and not overwrite:
        print(f"error: {out} exists; pass --overwrite to replace it", file=sys.stderr)
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)   # mkdtemp makes it private; OUT gets the usual permissions
        result = write(tmp)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
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
