"""The whole ViLaSR pipeline on the built-in default, on a laptop CPU: synthetic maze and multi-view
data -> the shipped base model (stages.base) -> stage 1 cold start -> stage 2 reflective rejection
sampling -> stage 3 GRPO, with every model evaluated on the built-in held-out benchmarks, ending in
`report.html` and `summary.md` (vilasr.eval.pipeline_report). `vilasr demo` runs it.

    run_demo("out/demo", DemoPlan.full())     # about 30 min on 2 cores; DemoPlan.quick(): a few

Layout of the output folder (a rerun into it resumes every part that is not finished):

    DEMO.json               the plan (a rerun with another plan is refused)
    data/                   cold-start trajectories, reflective and RL prompts, the two benchmarks
    cold/ reflective/ rl/   each stage's run folder (checkpoints, metrics.jsonl, tensorboard/, model)
    eval/<stage>/<bench>/   results.jsonl, summary.md, gallery.html of each model on each benchmark
    timings.json            seconds spent per part (summed over resumed runs)
    summary.md report.html  the report

The tasks stay the benchmarks' own (4 options, grids 3-5, 2-3 views). What is small for the CPU:
the model (the tiny preset), the data counts, and the trajectories' thinking text
(synth.trajectory.ThinkStyle.BRIEF: one sentence per step; the drawings are the same).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
import time
from itertools import islice
from pathlib import Path

from drawing_ops.protocol import PromptTemplate
from stages.base import RECORD, SHIPPED_BASE
from stages.config import Precision, Schedule, TrainConfig
from stages.reflective import NothingKept, run_reflective
from stages.rl.config import GrpoConfig
from stages.rl.grpo import run_grpo
from stages.sft import run_sft
from synth import io as synth_io
from synth.benchmarks import BUILTIN, write_builtin
from synth.families import make_sample
from synth.trajectory import ThinkStyle
from vilasr.errors import ConfigError
from vilasr.eval.benchmarks import Benchmark, load_records
from vilasr.eval.pipeline_report import PipelineStage, StageResult, read_metrics, write_pipeline_report
from vilasr.eval.report import read_summary, write_reports
from vilasr.eval.runner import RESULTS, model_generate, read_results, run_eval
from vilasr.processing.processor import TINY_MAX_PIXELS
from vilasr.rollout import RolloutConfig, SamplingConfig

# A short system prompt: the tiny model pays for every prompt token in every rollout and update.
DEMO_TEMPLATE = PromptTemplate(
    system=("Answer by drawing. Object Mapper draws boxes (bbox_2d), Path Tracer draws lines (start_point_2d, "
            "end_point_2d) on image \"index\"; each drawing gives a new image. Look, redraw a wrong drawing under "
            "its label, then give Action: Answer with <answer>letter</answer>."),
    closing="")
BENCHMARKS = ("synth-maze", "synth-multiview")
TASKS = [BUILTIN[name] for name in BENCHMARKS]   # training data is made with each benchmark's own task config
PLAN_FILE, TIMINGS = "DEMO.json", "timings.json"


class Part(str, enum.Enum):
    """What the demo spends its time on (timings.json's keys)."""

    DATA = "data"
    COLD = "cold"
    REFLECTIVE = "reflective"
    RL = "rl"
    EVAL = "eval"

    def __str__(self) -> str:
        return self.value


HEADINGS = {Part.DATA: "data: cold-start trajectories, prompts and the held-out benchmarks",
            Part.COLD: "stage 1: cold start (SFT on drawing trajectories) from the base model",
            Part.REFLECTIVE: "stage 2: reflective rejection sampling (sample, keep, fine-tune)",
            Part.RL: "stage 3: GRPO with multi-turn drawing rollouts",
            Part.EVAL: "evaluation on the held-out benchmarks"}


@dataclasses.dataclass(frozen=True)
class DemoPlan:
    """Sizes and settings of one demo run. `full()` is `vilasr demo`; `quick()` is `--quick`."""

    cold_trajectories: int = 400         # per family; a fifth of them reflective (a redrawn mistake)
    reflective_prompts: int = 32         # per family
    samples_per_prompt: int = 4
    rl_prompts: int = 128                # per family
    benchmark_records: int = 200         # per benchmark (held-out seeds)
    cold_steps: int = 400               # measured: valid tool calls from here (README, the demo)
    reflective_epochs: float = 3.0       # over what stage 2 keeps (the recipe's 3 epochs)
    rl_steps: int = 12
    batch_size: int = 4
    prompts_per_step: int = 4
    group_size: int = 4
    learning_rate: float = 2e-3
    # Stage 2 fine-tunes the stage-1 model on the few trajectories it keeps (5 of 256 measured): at
    # the cold start's 2e-3 its four steps undid the cold start (GRPO's rollouts from it: well formed
    # 0-31 %, against 69 % from the stage-1 model), so it takes a tenth
    reflective_learning_rate: float = 2e-4
    # GRPO from the stage-2 model: at 3e-4 the rollouts' format fell from 69 % to 19-44 % within 8
    # steps (the policy collapsed on the few rewarded groups); at 5e-5 it held at 69-94 % over 10
    rl_learning_rate: float = 5e-5
    # Stage 2 and GRPO sample at 0.6, not the recipe's 1.0: the tiny model's tool calls break when
    # sampled at 1.0 (after the 400-step cold start, 40 maze records: well formed 22.5 % at 1.0,
    # 87.5 % at 0.6, 97.5 % at 0.3), which leaves stage 2 nothing to keep and GRPO no reward
    rl_temperature: float = 0.6
    max_turn_tokens: int = 384
    max_response_tokens: int = 1536
    # evaluation slots (continuous batching): on the 2-core machine 8 slots ran the rollout loop at
    # 582 tokens/s, 32 slots at 383 (benchmarks/rollout_throughput.py, 200 maze records)
    eval_batch: int = 8
    gallery_records: int = 12           # per benchmark, from the final model
    seed: int = 0

    @classmethod
    def full(cls) -> "DemoPlan":
        return cls()

    @classmethod
    def quick(cls) -> "DemoPlan":
        return cls(cold_trajectories=8, reflective_prompts=4, samples_per_prompt=2, rl_prompts=4,
                   benchmark_records=8, cold_steps=3, reflective_epochs=1.0, rl_steps=1, batch_size=4,
                   prompts_per_step=2, group_size=2, max_turn_tokens=96, max_response_tokens=256, eval_batch=8,
                   gallery_records=2)

    def sft_config(self, steps: int = 0, epochs: float = 3.0, learning_rate: float | None = None) -> TrainConfig:
        return TrainConfig(learning_rate=self.learning_rate if learning_rate is None else learning_rate,
                           schedule=Schedule.COSINE.value, warmup_ratio=0.05,
                           max_steps=steps, epochs=epochs, batch_size=self.batch_size, precision=Precision.FP32.value,
                           max_seq_len=2048, max_pixels=TINY_MAX_PIXELS, seed=self.seed, save_every=100,
                           keep_checkpoints=2)

    def rl_config(self) -> TrainConfig:
        # GRPO as the recipe (constant lr, no warm-up, AdamW wd 1e-2, vision tower trained) at a tiny model's lr
        return TrainConfig(learning_rate=self.rl_learning_rate, schedule=Schedule.CONSTANT.value, warmup_ratio=0.0,
                           max_steps=self.rl_steps, batch_size=self.prompts_per_step * self.group_size // 2,
                           weight_decay=1e-2, freeze_vision=False, precision=Precision.FP32.value,
                           max_seq_len=4096, max_pixels=TINY_MAX_PIXELS, seed=self.seed, save_every=10,
                           keep_checkpoints=2)

    def grpo_config(self) -> GrpoConfig:
        return GrpoConfig(prompts_per_step=self.prompts_per_step, group_size=self.group_size)

    def rollout_config(self, *, sampling: SamplingConfig) -> RolloutConfig:
        """Both uses' rollouts: the demo's wording and token budgets; images at the model's own size."""
        return RolloutConfig(max_turns=8, max_turns_maze=8, max_turn_tokens=self.max_turn_tokens,
                             max_response_tokens=self.max_response_tokens, max_pixels=None, sampling=sampling,
                             template=DEMO_TEMPLATE)

    def rl_rollouts(self) -> RolloutConfig:
        return self.rollout_config(sampling=SamplingConfig(temperature=self.rl_temperature))

    def eval_rollouts(self) -> RolloutConfig:
        return self.rollout_config(sampling=SamplingConfig(temperature=0.75, top_p=0.9))


# -- data -----------------------------------------------------------------------------------------------

def _samples(task, n: int, seed: int, split: str, trajectory=lambda index: "none"):
    """`n` training samples of a built-in benchmark's family and task config (training seeds, `split`),
    worded by the demo's template."""
    for index in range(n):
        yield make_sample(task.family, seed, index, config=task.config, trajectory=trajectory(index), split=split,
                          template=DEMO_TEMPLATE, think=ThinkStyle.BRIEF)


def _once(folder: Path, write) -> Path:
    """Run `write(folder)` unless an earlier run finished it (its DONE marker is written last)."""
    done = folder / "DONE"
    if done.exists():
        return Path(done.read_text(encoding="utf-8"))
    path = write(folder)
    done.write_text(str(path), encoding="utf-8")
    return path


def make_data(out: Path, plan: DemoPlan, progress: bool) -> dict[str, Path]:
    """The cold-start trajectories, the reflective and RL prompts (training seeds, one split each)
    and the two held-out benchmarks."""
    from tqdm import tqdm

    bar = tqdm(total=len(TASKS) * (plan.cold_trajectories + plan.reflective_prompts + plan.rl_prompts)
               + len(BENCHMARKS) * plan.benchmark_records, desc="demo data", unit="sample", disable=not progress)

    def counted(samples):
        for s in samples:
            bar.update(1)
            yield s

    def trajectories(folder):
        kind = lambda index: "reflective" if index % 5 == 0 else "cold"   # noqa: E731
        chained = (s for t in TASKS for s in _samples(t, plan.cold_trajectories, plan.seed, "demo-cold", kind))
        return synth_io.export_sharegpt(counted(chained), folder, template=DEMO_TEMPLATE)

    def prompts(split: str, n: int):
        def write(folder):
            chained = (s for t in TASKS for s in _samples(t, n, plan.seed, split))
            return synth_io.export_benchmark(counted(chained), folder, name="prompts")
        return write

    data = out / "data"
    paths = {"cold": _once(data / "cold", trajectories),
             "reflective": _once(data / "reflective", prompts("demo-reflective", plan.reflective_prompts)),
             "rl": _once(data / "rl", prompts("demo-rl", plan.rl_prompts))}
    for name in BENCHMARKS:
        paths[name] = write_builtin(name, data / name, plan.benchmark_records)
        bar.update(plan.benchmark_records)
    bar.close()
    return paths


# -- evaluation -------------------------------------------------------------------------------------------

def evaluate(model_dir: Path, out: Path, data: dict[str, Path], plan: DemoPlan, progress: bool
             ) -> dict[str, Path]:
    """Every benchmark for one model, each into `out/<benchmark>` (resumes a half-done one)."""
    from vilasr.model import Qwen25VL
    from vilasr.processing import Processor

    generate, folders = None, {}
    for name in BENCHMARKS:
        folder = out / name
        loaded = load_records(data[name])
        done = {line["id"] for line in read_results(folder / RESULTS)}
        if generate is None and any(r.id not in done for r in loaded.records):
            model = Qwen25VL.from_pretrained(model_dir)
            generate = model_generate(model, Processor.from_pretrained(model_dir), plan.eval_rollouts(),
                                      seed=plan.seed)
        summary = run_eval(loaded.records, generate, folder, benchmark=Benchmark(name), batch_size=plan.eval_batch,
                           skipped=loaded.skipped, progress=progress)
        write_reports(folder, summary, read_results(folder / RESULTS), title=f"{name}: {out.name}")
        folders[name] = folder
    return folders


# -- the run -------------------------------------------------------------------------------------------------

class _Timings:
    """Seconds per part, kept in timings.json so a resumed run adds to what earlier runs spent."""

    def __init__(self, path: Path, progress: bool):
        self.path, self.progress = path, progress
        self.seconds = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}

    def timed(self, part: Part, fn, *args, **kwargs):
        if self.progress:
            print(f"[demo] {HEADINGS[part]}", file=sys.stderr, flush=True)
        start = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            self.seconds[str(part)] = self.seconds.get(str(part), 0.0) + time.monotonic() - start
            self.path.write_text(json.dumps(self.seconds, indent=1) + "\n", encoding="utf-8")


def check_out(out: Path, plan: DemoPlan) -> None:
    """A new or empty folder, or one an earlier run of the same plan wrote (then it resumes)."""
    wanted = dataclasses.asdict(plan)
    plan_file = out / PLAN_FILE
    if plan_file.exists():
        try:
            same = json.loads(plan_file.read_text(encoding="utf-8")) == wanted
        except ValueError:
            same = False
        if not same:
            raise ConfigError(f"{out} holds a demo run with other settings ({plan_file}); remove the folder or "
                              "choose another --out")
        return
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} is not empty and holds no demo run; choose a new or empty --out")
    out.mkdir(parents=True, exist_ok=True)
    plan_file.write_text(json.dumps(wanted, indent=1) + "\n", encoding="utf-8")


def _stopped(result) -> bool:
    return result.model_dir is None


def run_demo(out, plan: DemoPlan = DemoPlan.full(), *, base: Path = SHIPPED_BASE, progress: bool = True,
             quick: bool = False) -> Path | None:
    """Run (or resume) the whole pipeline into `out`; returns report.html, or None when a stage was
    stopped by a signal (its checkpoint is saved; rerun to resume)."""
    out = Path(out)
    check_out(out, plan)
    timings = _Timings(out / TIMINGS, progress)
    data = timings.timed(Part.DATA, make_data, out, plan, progress)

    cold = timings.timed(Part.COLD, run_sft, data=data["cold"], out=out / "cold", model_dir=base,
                         config=plan.sft_config(plan.cold_steps), devices=1, progress=progress)
    if _stopped(cold):
        return None
    notes = []
    try:
        sampled, reflective = timings.timed(
            Part.REFLECTIVE, run_reflective, prompts=data["reflective"], out=out / "reflective",
            model_dir=cold.model_dir, k=plan.samples_per_prompt, rollout_config=plan.rl_rollouts(),
            config=plan.sft_config(epochs=plan.reflective_epochs, learning_rate=plan.reflective_learning_rate),
            devices=1, progress=progress)
        if _stopped(reflective):
            return None
        reflective_model = reflective.model_dir
        notes.append(f"stage 2 kept {sampled['kept']} of {sampled['sampled']} sampled trajectories "
                     "(correct, well formed and reflective)")
    except NothingKept as e:   # stage 2 has nothing to train on: it passes the stage-1 model on, and says so
        reflective_model = cold.model_dir
        notes.append(f"stage 2 kept nothing ({e}); the model after it is the stage-1 model")
    rl = timings.timed(Part.RL, run_grpo, prompts=data["rl"], out=out / "rl", model_dir=reflective_model,
                       config=plan.rl_config(), grpo=plan.grpo_config(), rollout_config=plan.rl_rollouts(),
                       devices=1, progress=progress)
    if _stopped(rl):
        return None

    models = {PipelineStage.BASE: base, PipelineStage.COLD: cold.model_dir,
              PipelineStage.REFLECTIVE: reflective_model, PipelineStage.RL: rl.model_dir}
    stages = []
    for stage, model_dir in models.items():
        folders = timings.timed(Part.EVAL, evaluate, model_dir, out / "eval" / str(stage), data, plan, progress)
        summaries = {name: read_summary(folder) for name, folder in folders.items()}
        stages.append(StageResult(stage, summaries, {n: f.relative_to(out) for n, f in folders.items()}))

    final = stages[-1]
    gallery = [(final.eval_dirs[name], line) for name in BENCHMARKS
               for line in islice((ln for ln in read_results(out / final.eval_dirs[name] / RESULTS)
                                   if ln.get("status") == "scored"), plan.gallery_records)]
    settings = {"notes": "; ".join(notes), "plan": dataclasses.asdict(plan), "base model": str(base),
                "base model reads (held-out perception questions, % exact)": _base_perception(base),
                "system prompt": DEMO_TEMPLATE.system}
    write_pipeline_report(out, stages, read_metrics(out / "rl" / "metrics.jsonl"), gallery,
                          elapsed_s=sum(timings.seconds.values()), stage_seconds=dict(timings.seconds),
                          settings=settings, quick=quick)
    return out / "report.html"


def _base_perception(base: Path) -> str:
    """What the base model's BASE.json says it reads, in one line ('-' when it has no record)."""
    try:
        scored = json.loads((Path(base) / RECORD).read_text(encoding="utf-8"))["perception_heldout"]
        return ", ".join(f"{kind} {100 * v['exact']:.0f}" for kind, v in scored.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "-"

