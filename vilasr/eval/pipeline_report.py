"""The report of a whole pipeline run (`vilasr demo`): the base model, then each training stage
(cold start SFT, reflective rejection sampling, GRPO), each evaluated on the built-in benchmarks.

`write_pipeline_report` writes `summary.md` and a self-contained `report.html` (tables, the
targets reached or not, plots, per-stage times, settings and a gallery of the final model's
trajectories) into one folder. Links are relative, so the folder can be moved with the eval folders
it points into. Pure functions: no JAX.
"""

from __future__ import annotations

import dataclasses
import enum
import html
import json
import posixpath
from collections.abc import Iterable, Sequence
from pathlib import Path

from vilasr.eval.benchmarks import Benchmark
from vilasr.eval.report import _STYLE, _atomic_write, _record_html, interval_text, pct, pyplot, save_figure
from vilasr.eval.runner import EvalSummary, Interval, Status

SUMMARY_MD, REPORT_HTML = "summary.md", "report.html"
STAGE_PLOT, GRPO_PLOT, GRPO_LENGTH_PLOT = "stage_accuracy.png", "grpo_reward.png", "grpo_length.png"
BENCHMARKS = (Benchmark.SYNTH_MAZE, Benchmark.SYNTH_MULTIVIEW)
CHANCE = 0.25           # four options in the synthetic benchmarks
MAZE_TARGET, MULTIVIEW_TARGET = 0.90, 0.70
BUDGET_S = 1800.0


class PipelineStage(str, enum.Enum):
    """The models a pipeline run evaluates, in training order."""

    BASE = "base"
    COLD = "cold"
    REFLECTIVE = "reflective"
    RL = "rl"

    def __str__(self) -> str:
        return self.value

    @property
    def label(self) -> str:
        return {PipelineStage.BASE: "base (prompted to draw)", PipelineStage.COLD: "after cold start",
                PipelineStage.REFLECTIVE: "after reflective sampling", PipelineStage.RL: "after RL"}[self]


STAGES = tuple(PipelineStage)


@dataclasses.dataclass(frozen=True)
class StageResult:
    """One model's evaluations: summaries and eval folders (relative to the report folder) by benchmark."""

    stage: PipelineStage
    summaries: dict[str, EvalSummary]
    eval_dirs: dict[str, Path] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "stage", PipelineStage(self.stage))   # accept "rl" as well


class Target(str, enum.Enum):
    """What a pipeline run is meant to reach."""

    MAZE_AFTER_RL = "maze_after_rl"
    MULTIVIEW_AFTER_RL = "multiview_after_rl"
    NO_REGRESSION = "no_regression"
    REFLECTION_GROWS = "reflection_grows"
    RL_BEATS_COLD = "rl_beats_cold"
    TIME_BUDGET = "time_budget"

    def __str__(self) -> str:
        return self.value


@dataclasses.dataclass(frozen=True)
class TargetCheck:
    target: Target
    name: str
    reached: bool
    required: bool
    detail: str


def short_name(benchmark: str) -> str:
    return str(benchmark).removeprefix("synth-")


def _by_stage(stages: Iterable[StageResult]) -> dict[PipelineStage, StageResult]:
    return {s.stage: s for s in stages}


def _benchmarks(stages: Iterable[StageResult]) -> list[str]:
    """The built-in benchmarks first, then any other that a stage was evaluated on."""
    names = [str(b) for b in BENCHMARKS] + [str(b) for s in stages for b in s.summaries]
    return list(dict.fromkeys(names))


def _summary(by_stage: dict[PipelineStage, StageResult], stage: PipelineStage, bench: str) -> EvalSummary | None:
    result = by_stage.get(stage)
    return result.summaries.get(bench) if result else None


# -- tables: rows first, then rendered as Markdown or HTML ----------------------------------------------

def accuracy_rows(stages: Sequence[StageResult]) -> tuple[list[str], list[list[str]]]:
    by_stage = _by_stage(stages)
    head = ["benchmark", *(str(s) for s in STAGES)]
    rows = []
    for bench in _benchmarks(stages):
        cells = [_summary(by_stage, stage, bench) for stage in STAGES]
        rows.append([short_name(bench), *(pct(s.overall) if s else "-" for s in cells)])
    return head, rows


def detail_rows(stages: Sequence[StageResult]) -> tuple[list[str], list[list[str]]]:
    by_stage = _by_stage(stages)
    head = ["stage", "benchmark", "records", "accuracy % [95 %]", "format %", "reflective %",
            "tool calls / trajectory", "response tokens", "turns"]
    rows = []
    for stage in STAGES:
        for bench in _benchmarks(stages):
            s = _summary(by_stage, stage, bench)
            if s is None:
                continue
            acc = interval_text(s.overall_interval) if s.overall_interval else pct(s.overall)
            rows.append([stage.label, short_name(bench), str(s.scored), acc, pct(s.format_rate),
                         pct(s.reflective_rate), f"{s.mean_tool_calls:.2f}", f"{s.mean_response_tokens:.1f}",
                         f"{s.mean_turns:.2f}"])
    return head, rows


def markdown_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def html_table(head: Sequence[str], rows: Sequence[Sequence[str]], table_id: str) -> str:
    e = html.escape
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>\n" for row in rows)
    return (f'<table id="{table_id}"><thead><tr>' + "".join(f"<th>{e(h)}</th>" for h in head)
            + f"</tr></thead><tbody>\n{body}</tbody></table>\n")


def accuracy_table(stages: Sequence[StageResult]) -> str:
    """Accuracy % per benchmark (rows) and stage (columns, in training order); `-` where not evaluated."""
    return markdown_table(*accuracy_rows(stages))


def detail_table(stages: Sequence[StageResult]) -> str:
    return markdown_table(*detail_rows(stages))


# -- targets ------------------------------------------------------------------------------------------

def _missing(what: str) -> str:
    return f"missing: {what}"


def _at_least(target: Target, name: str, summary: EvalSummary | None, goal: float, what: str) -> TargetCheck:
    if summary is None or summary.overall is None:
        return TargetCheck(target, name, False, False, _missing(what))
    return TargetCheck(target, name, summary.overall >= goal, False,
                       f"{pct(summary.overall)} % (goal {pct(goal)} %)")


def _no_regression(by_stage: dict[PipelineStage, StageResult], bench: str) -> TargetCheck:
    """Each stage's interval reaches up to the previous stage's mean (no drop beyond the noise)."""
    name = f"{short_name(bench)}: each stage at least as good as the one before (within the 95 % interval)"
    parts, reached = [], True
    for before, after in zip(STAGES, STAGES[1:]):
        prev, cur = _summary(by_stage, before, bench), _summary(by_stage, after, bench)
        if prev is None or cur is None or cur.overall_interval is None or prev.overall is None:
            parts.append(f"{after} vs {before}: " + _missing(", ".join(
                str(st) for st, s in ((before, prev), (after, cur)) if s is None) or "interval"))
            reached = False
            continue
        ok = cur.overall_interval.high >= prev.overall
        reached &= ok
        parts.append(f"{after} vs {before}: high {pct(cur.overall_interval.high)} "
                     f"{'>=' if ok else '<'} {pct(prev.overall)}")
    return TargetCheck(Target.NO_REGRESSION, name, reached, False, "; ".join(parts))


def _reflective_rate(result: StageResult | None) -> tuple[float, int] | None:
    """The reflective rate over all of a stage's records (benchmarks weighted by their records)."""
    if result is None:
        return None
    n = sum(s.scored for s in result.summaries.values())
    if n == 0:
        return None
    return sum(s.reflective_rate * s.scored for s in result.summaries.values()) / n, n


def check_targets(stages: Sequence[StageResult], elapsed_s: float | None,
                  budget_s: float = BUDGET_S) -> list[TargetCheck]:
    by_stage = _by_stage(stages)
    maze, multiview = str(Benchmark.SYNTH_MAZE), str(Benchmark.SYNTH_MULTIVIEW)
    rl_maze = _summary(by_stage, PipelineStage.RL, maze)
    cold_maze = _summary(by_stage, PipelineStage.COLD, maze)
    checks = [
        _at_least(Target.MAZE_AFTER_RL, f"maze accuracy after RL >= {pct(MAZE_TARGET)} %", rl_maze, MAZE_TARGET,
                  f"{maze} after RL"),
        _at_least(Target.MULTIVIEW_AFTER_RL, f"multiview accuracy after RL >= {pct(MULTIVIEW_TARGET)} %",
                  _summary(by_stage, PipelineStage.RL, multiview), MULTIVIEW_TARGET, f"{multiview} after RL"),
        *(_no_regression(by_stage, bench) for bench in (maze, multiview)),
    ]

    name = "reflective trajectories: more after reflective sampling than after cold start"
    cold, refl = (_reflective_rate(by_stage.get(st)) for st in (PipelineStage.COLD, PipelineStage.REFLECTIVE))
    if cold is None or refl is None:
        missing = [str(st) for st, r in ((PipelineStage.COLD, cold), (PipelineStage.REFLECTIVE, refl)) if r is None]
        checks.append(TargetCheck(Target.REFLECTION_GROWS, name, False, False, _missing(", ".join(missing))))
    else:
        checks.append(TargetCheck(Target.REFLECTION_GROWS, name, refl[0] > cold[0], False,
                                  f"{pct(refl[0])} % ({refl[1]} records) vs {pct(cold[0])} % ({cold[1]} records)"))

    name = "RL beats cold start on maze beyond the 95 % intervals"
    ivs: list[Interval | None] = [s.overall_interval if s else None for s in (rl_maze, cold_maze)]
    if ivs[0] is None or ivs[1] is None:
        what = [w for w, iv in zip((f"{maze} after RL", f"{maze} after cold start"), ivs) if iv is None]
        checks.append(TargetCheck(Target.RL_BEATS_COLD, name, False, True, _missing(", ".join(what))))
    else:
        rl, cs = ivs
        checks.append(TargetCheck(Target.RL_BEATS_COLD, name, rl.low > cs.high, True,
                                  f"RL {interval_text(rl)} vs cold {interval_text(cs)}: low {pct(rl.low)} "
                                  f"{'>' if rl.low > cs.high else '<='} high {pct(cs.high)}"))

    if elapsed_s is not None:
        checks.append(TargetCheck(Target.TIME_BUDGET, f"demo within {duration(budget_s)}", elapsed_s <= budget_s,
                                  False, f"{duration(elapsed_s)} of {duration(budget_s)}"))
    return checks


def duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def target_mark(check: TargetCheck) -> str:
    return "reached" if check.reached else "NOT reached"


# -- plots ----------------------------------------------------------------------------------------------

def write_stage_plot(out: Path, stages: Sequence[StageResult]) -> Path:
    """Grouped bars: accuracy per stage (groups) and benchmark (bars) with 95 % error bars."""
    plt = pyplot()
    by_stage = _by_stage(stages)
    benches = _benchmarks(stages)
    width = 0.8 / max(len(benches), 1)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for k, bench in enumerate(benches):
        xs, means, low, high = [], [], [], []
        for x, stage in enumerate(STAGES):
            s = _summary(by_stage, stage, bench)
            if s is None or s.overall is None:
                continue
            iv = s.overall_interval or Interval(s.overall, s.overall, s.overall, s.scored)
            xs.append(x + (k - (len(benches) - 1) / 2) * width)
            means.append(100 * s.overall)
            low.append(100 * (s.overall - iv.low))
            high.append(100 * (iv.high - s.overall))
        ax.bar(xs, means, width, yerr=[low, high] if xs else None, capsize=3, label=short_name(bench))
    ax.axhline(100 * CHANCE, color="#555", linestyle="--", linewidth=1, label="chance")
    ax.set_xticks(range(len(STAGES)), [s.label for s in STAGES], fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_ylabel("accuracy % (95 % Wilson)")
    ax.set_title("accuracy after each stage")
    ax.legend(fontsize=8, loc="upper left")
    return save_figure(fig, Path(out) / STAGE_PLOT)


def write_grpo_plots(out: Path, rows: Sequence[dict]) -> list[Path]:
    """Reward, accuracy and format against the GRPO step; response length and turns in a second
    plot when logged. Rows without `reward` (another trainer's lines) are ignored."""
    rows = sorted((r for r in rows if "reward" in r and "step" in r), key=lambda r: r["step"])
    if not rows:
        return []
    plt = pyplot()

    def series(key):
        points = [(r["step"], r[key]) for r in rows if key in r]
        return [p[0] for p in points], [p[1] for p in points]

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key in ("reward", "accuracy", "format"):
        xs, ys = series(key)
        if xs:
            ax.plot(xs, ys, marker=".", label=key)
    ax.set_xlabel("GRPO step")
    ax.set_ylabel("mean over the rollout batch")
    ax.set_title("GRPO: reward")
    ax.legend(fontsize=8)
    paths = [save_figure(fig, Path(out) / GRPO_PLOT)]

    lengths, turns = series("response_len"), series("turns")
    if lengths[0] or turns[0]:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(*lengths, marker=".", color="#4c72b0", label="response tokens")
        ax.set_xlabel("GRPO step")
        ax.set_ylabel("response tokens")
        twin = ax.twinx()   # turns are a few, tokens hundreds: two scales
        twin.plot(*turns, marker=".", color="#c44e52", label="turns")
        twin.set_ylabel("model turns")
        ax.set_title("GRPO: response length and turns")
        fig.legend(fontsize=8, loc="upper right")
        paths.append(save_figure(fig, Path(out) / GRPO_LENGTH_PLOT))
    return paths


def read_metrics(path: Path) -> list[dict]:
    """The lines of a trainer's metrics.jsonl; damaged lines (a killed writer) are skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for text in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(text)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


# -- summary.md and report.html -----------------------------------------------------------------------------

def _run_line(quick: bool, elapsed_s: float | None) -> str:
    kind = "Quick run (small settings)" if quick else "Full run"
    return f"{kind}; elapsed {duration(elapsed_s) if elapsed_s is not None else 'unknown'}."


def _stage_label(name: str) -> str:
    try:
        return PipelineStage(name).label
    except ValueError:   # other timed steps (data, evaluation) keep their own names
        return name


def summary_markdown(stages, checks, *, elapsed_s, stage_seconds, settings, quick, plots) -> str:
    out = ["# ViLaSR pipeline report", "", _run_line(quick, elapsed_s), "", "## Accuracy %", "",
           accuracy_table(stages), "## Details", "", detail_table(stages), "## Targets", ""]
    out += [f"- {'reached' if c.reached else '**NOT reached**'}{' (required)' if c.required else ''}: "
            f"{c.name} -- {c.detail}" for c in checks]
    out += ["", "## Time per stage", "", "| stage | time |", "|---|---|"]
    out += [f"| {_stage_label(name)} | {duration(s)} |" for name, s in stage_seconds.items()]
    out += ["", "## Settings", "", "| setting | value |", "|---|---|"]
    out += [f"| {k} | {str(v).replace('|', '/')} |" for k, v in settings.items()]
    out += ["", "## Plots", ""] + [f"- [{p}]({p})" for p in plots]
    return "\n".join(out) + "\n"


_PAGE_STYLE = _STYLE + """
table{border-collapse:collapse;margin:.5em 0 1em;background:#fff}
td,th{border:1px solid #bbb;padding:.25em .6em;text-align:right}
td:nth-child(-n+2),th:nth-child(-n+2){text-align:left}
.targets li{margin:.3em 0;list-style:none}
.targets .mark{display:inline-block;min-width:7.5em;font-weight:bold}
.targets .reached .mark{color:#182}.targets .missed .mark{color:#c22}
.required{background:#ffe9a8;padding:0 .3em;border-radius:3px;font-size:12px}
.plots img{max-width:100%;max-height:none;border:none}
"""


def report_html(stages, checks, *, elapsed_s, stage_seconds, settings, quick, plots,
                gallery_lines: Sequence[tuple[Path, dict]], report_dir: Path) -> str:
    e = html.escape
    items = []
    for c in checks:
        kind, mark = ("reached", "&#10004; reached") if c.reached else ("missed", "&#10008; NOT reached")
        items.append(f'<li class="{kind}" data-target="{c.target}" data-required="{str(c.required).lower()}">'
                     f'<span class="mark">{mark}</span> {e(c.name)}'
                     + (' <span class="required">required</span>' if c.required else "")
                     + f'<div class="meta">{e(c.detail)}</div></li>')
    links = []
    for result in sorted(stages, key=lambda s: STAGES.index(s.stage)):
        for bench, folder in result.eval_dirs.items():
            if (report_dir / folder / "gallery.html").is_file():
                href = posixpath.join(Path(folder).as_posix(), "gallery.html")
                links.append(f'<li><a href="{e(href)}">{e(result.stage.label)}: {e(short_name(bench))}</a></li>')
    scored = [(Path(folder), line) for folder, line in gallery_lines if line.get("status") == str(Status.SCORED)]
    parts = [
        "<!doctype html>\n<html><head><meta charset='utf-8'><title>ViLaSR pipeline report</title>"
        f"<style>{_PAGE_STYLE}</style></head><body>",
        "<h1>ViLaSR pipeline report</h1>", f'<p class="meta">{e(_run_line(quick, elapsed_s))}</p>',
        "<h2>Accuracy %</h2>", html_table(*accuracy_rows(stages), "accuracy"),
        "<h2>Details</h2>", html_table(*detail_rows(stages), "details"),
        '<h2>Targets</h2><ul class="targets" id="targets">' + "\n".join(items) + "</ul>",
        '<h2>Plots</h2><div class="plots">'
        + "".join(f'<img src="{e(p)}" alt="{e(p)}" loading="eager">' for p in plots) + "</div>",
        "<h2>Time per stage</h2>",
        html_table(["stage", "time"], [[_stage_label(k), duration(v)] for k, v in stage_seconds.items()], "times"),
        "<h2>Settings</h2>", html_table(["setting", "value"], [[k, str(v)] for k, v in settings.items()], "settings"),
    ]
    if links:
        parts.append("<h2>Eval galleries</h2><ul>" + "".join(links) + "</ul>")
    parts.append(f'<h2>Trajectories of the final model ({len(scored)})</h2><div id="gallery">')
    parts += [_record_html(line, folder.as_posix()) for folder, line in scored]
    parts.append("</div></body></html>\n")
    return "\n".join(parts)


def write_pipeline_report(out: Path, stages: Sequence[StageResult], grpo_rows: Sequence[dict],
                          gallery_lines: Sequence[tuple[Path, dict]], *, elapsed_s: float | None,
                          stage_seconds: dict[str, float], settings: dict, quick: bool) -> list[Path]:
    """summary.md, report.html and the plots in `out`; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plot_paths = [write_stage_plot(out, stages), *write_grpo_plots(out, grpo_rows)]
    plots = [p.name for p in plot_paths]
    checks = check_targets(stages, elapsed_s)
    common = dict(elapsed_s=elapsed_s, stage_seconds=stage_seconds, settings=settings, quick=quick, plots=plots)
    _atomic_write(out / SUMMARY_MD, summary_markdown(stages, checks, **common))
    _atomic_write(out / REPORT_HTML, report_html(stages, checks, gallery_lines=gallery_lines, report_dir=out,
                                                 **common))
    return [out / SUMMARY_MD, out / REPORT_HTML, *plot_paths]
