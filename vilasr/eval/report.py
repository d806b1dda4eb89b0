"""The reports of an evaluation run, written into its folder: `summary.json` (what `vilasr compare`
reads), `summary.md` (tables), PNG plots, and `gallery.html` (each record's question, turns and the
images it drew, filterable by correct / partly right / wrong and by finish reason).

Every file is written under a temporary name and renamed into place.
"""

from __future__ import annotations

import html
import json
import os
import posixpath
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from vilasr.eval.benchmarks import Benchmark
from vilasr.eval.runner import EvalSummary, Interval

SUMMARY_JSON, SUMMARY_MD, GALLERY = "summary.json", "summary.md", "gallery.html"
PLOTS = ("accuracy_per_type.png", "turns.png", "tool_calls.png", "finish_reasons.png")
REPORT_FILES = (SUMMARY_JSON, SUMMARY_MD, GALLERY, *PLOTS)
PAPER_LABEL = "ViLaSR-7B (paper)"


def template_note(template_file: str | None) -> str:
    """What the report says about the prompt wording."""
    if template_file:
        return f"Prompt wording: the template {template_file}."
    return ("Prompt wording: ours (the default). To compare a released checkpoint (e.g. ViLaSR-7B) with the "
            "paper's numbers, supply the reference's wording as a template with --prompt-template FILE: the "
            "released models were trained on it.")


def _atomic_write(path: Path, data: bytes | str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    if isinstance(data, str):
        tmp.write_text(data, encoding="utf-8")
    else:
        tmp.write_bytes(data)
    os.replace(tmp, path)


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def interval_text(iv: Interval | None) -> str:
    return "-" if iv is None else f"{pct(iv.mean)} [{pct(iv.low)}, {pct(iv.high)}]"


# -- summary.md ---------------------------------------------------------------------------------------

def summary_markdown(summary: EvalSummary, title: str = "") -> str:
    bench = Benchmark(summary.benchmark)
    rule = {"mean": "mean over records", "vsi": "mean of the 8 VSI-Bench task means",
            "spar": "mean over the 20 SPAR-Bench question types"}[bench.aggregate.value]
    out = [f"# Evaluation: {title or summary.benchmark}", "",
           f"Benchmark `{summary.benchmark}`: {summary.scored} record(s) scored, {len(summary.skipped)} skipped.",
           f"Overall ({rule}): **{pct(summary.overall)}**"
           + (f", 95 % Wilson interval [{pct(summary.overall_interval.low)}, {pct(summary.overall_interval.high)}]"
              if summary.overall_interval else ""), ""]
    if bench.paper_7b is not None:
        out += [f"{PAPER_LABEL}: {bench.paper_7b}.", ""]
    out += [summary.template_note or template_note(None), "", "| metric | value |", "|---|---|",
            f"| format rate | {pct(summary.format_rate)} % |",
            f"| reflective trajectories | {pct(summary.reflective_rate)} % |",
            f"| model turns per trajectory | {summary.mean_turns:.2f} |",
            f"| tool calls per trajectory | {summary.mean_tool_calls:.2f} |",
            f"| response tokens per trajectory | {summary.mean_response_tokens:.1f} |", "",
            "## Accuracy per question type", "", "| type | records | score % [95 % interval] |", "|---|---|---|"]
    out += [f"| {t} | {iv.n} | {interval_text(iv)} |" for t, iv in summary.per_type.items()]
    out += ["", "## Accuracy per data type", "", "| data type | records | score % [95 % interval] |", "|---|---|---|"]
    out += [f"| {t} | {iv.n} | {interval_text(iv)} |" for t, iv in summary.per_data_type.items()]
    out += ["", "## Finish reasons", "", "| reason | trajectories |", "|---|---|"]
    out += [f"| {r} | {n} |" for r, n in summary.finish_reasons.items()]
    out += ["", f"## Skipped records ({len(summary.skipped)})", ""]
    if summary.skipped:
        out += ["| position | id | reason |", "|---|---|---|"]
        out += [f"| {s.position if s.position >= 0 else '-'} | {s.id} | {s.reason.replace('|', '/')} |"
                for s in summary.skipped]
    else:
        out.append("none")
    return "\n".join(out) + "\n"


# -- plots ------------------------------------------------------------------------------------------

def pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    """Write a figure as PNG under a temporary name, rename it into place, and close it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.tight_layout()
    fig.savefig(tmp, format="png", dpi=100)
    pyplot().close(fig)
    os.replace(tmp, path)
    return path


def write_plots(out: Path, summary: EvalSummary, lines: Sequence[dict]) -> list[Path]:
    plt = pyplot()
    scored = [line for line in lines if line.get("status") == "scored"]
    paths = []

    def save(fig, name):
        paths.append(save_figure(fig, Path(out) / name))

    types = list(summary.per_type)
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(types) + 2), 3.5))
    means = [100 * summary.per_type[t].mean for t in types]
    errs = [[100 * (summary.per_type[t].mean - summary.per_type[t].low) for t in types],
            [100 * (summary.per_type[t].high - summary.per_type[t].mean) for t in types]]
    ax.bar(range(len(types)), means, yerr=errs if types else None, capsize=3, color="#4c72b0")
    ax.set_xticks(range(len(types)), types, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_ylabel("score % (95 % Wilson)")
    ax.set_title(f"{summary.benchmark}: accuracy per type")
    save(fig, PLOTS[0])
    for name, key, label in ((PLOTS[1], "turns", "model turns"), (PLOTS[2], "tool_calls", "tool calls")):
        fig, ax = plt.subplots(figsize=(4.5, 3))
        counts = Counter(int(line[key]) for line in scored)
        xs = list(range(max(counts, default=0) + 1))
        ax.bar(xs, [counts.get(x, 0) for x in xs], color="#55a868")
        ax.set_xlabel(f"{label} per trajectory")
        ax.set_ylabel("trajectories")
        save(fig, name)
    fig, ax = plt.subplots(figsize=(4.5, 3))
    reasons = list(summary.finish_reasons)
    ax.barh(range(len(reasons)), [summary.finish_reasons[r] for r in reasons], color="#c44e52")
    ax.set_yticks(range(len(reasons)), reasons)
    ax.set_xlabel("trajectories")
    ax.set_title("finish reasons")
    save(fig, PLOTS[3])
    return paths


# -- gallery.html -------------------------------------------------------------------------------------

def verdict(score: float) -> str:
    """correct (full score), partial (MRA between), wrong (0)."""
    return "correct" if score >= 1.0 else ("wrong" if score <= 0.0 else "partial")


_STYLE = """
body{font-family:sans-serif;margin:1em;background:#fafafa}
.filters button{margin:0 .3em .3em 0;padding:.3em .7em}
.filters button.on{background:#333;color:#fff}
.record{background:#fff;border:1px solid #ccc;border-radius:6px;margin:1em 0;padding:.8em}
.record.correct{border-left:6px solid #2a2}.record.wrong{border-left:6px solid #c22}
.record.partial{border-left:6px solid #da2}
.turn{border-top:1px dashed #ddd;margin-top:.5em;padding-top:.5em}
pre{white-space:pre-wrap;word-break:break-word;font-size:12px;background:#f4f4f4;padding:.4em}
img{max-width:360px;max-height:360px;border:1px solid #999;margin:.2em}
.meta{color:#555;font-size:13px}
"""

_SCRIPT = """
function show(kind, value, button){
  document.querySelectorAll('.filters button').forEach(b => b.classList.remove('on'));
  button.classList.add('on');
  let shown = 0;
  document.querySelectorAll('.record').forEach(r => {
    const keep = kind === 'all' || r.dataset[kind] === value;
    r.style.display = keep ? '' : 'none';
    if (keep) shown++;
  });
  document.getElementById('shown').textContent = shown;
}
"""


def _record_html(line: dict, image_root: str = "") -> str:
    """One record as HTML; `image_root` is prefixed to its image paths (which are relative to its
    eval folder) when the page lives elsewhere."""
    e = html.escape
    score = float(line["score"])
    kind = verdict(score)
    parts = [f'<section class="record {kind}" data-verdict="{kind}" data-finish="{e(line["finish_reason"])}" '
             f'id="r-{e(line["id"])}">',
             f'<h3>{e(line["id"])} <span class="meta">{e(kind)} (score {score:.2f}) · finish '
             f'{e(line["finish_reason"])} · {line["turns"]} turn(s), {line["tool_calls"]} tool call(s), '
             f'{line["tokens"]} tokens</span></h3>',
             f"<pre>{e(line['question'])}" + ("\n" + "\n".join(e(o) for o in line["options"]) if line["options"]
                                              else "") + "</pre>",
             f'<p class="meta">answer: <b>{e(line["answer"])}</b> · prediction: <b>{e(str(line["prediction"]))}'
             "</b></p>"]
    images = [posixpath.join(image_root, p) if image_root else p for p in line.get("images", [])]
    shown_inputs = min(line.get("num_inputs", 0), len(images))
    parts.append("<div>" + "".join(f'<img src="{e(p)}" alt="input {k + 1}" loading="eager">'
                                   for k, p in enumerate(images[:shown_inputs])) + "</div>")
    drawn = images[shown_inputs:]
    per_turn = line.get("images_per_turn") or []
    cursor = 0
    for k, text in enumerate(line["conversation"]):
        n = per_turn[k] if k < len(per_turn) else 0
        parts.append(f'<div class="turn"><b>turn {k + 1}</b><pre>{e(text)}</pre>'
                     + "".join(f'<img src="{e(p)}" alt="drawn after turn {k + 1}" loading="eager">'
                               for p in drawn[cursor:cursor + n]) + "</div>")
        cursor += n
    parts.append("</section>")
    return "\n".join(parts)


def gallery_html(lines: Sequence[dict], title: str) -> str:
    e = html.escape
    scored = [line for line in lines if line.get("status") == "scored"]
    verdicts = Counter(verdict(float(line["score"])) for line in scored)
    reasons = Counter(line["finish_reason"] for line in scored)
    buttons = [f'<button class="on" data-kind="all" onclick="show(\'all\', \'\', this)">all ({len(scored)})</button>']
    buttons += [f'<button data-kind="verdict" data-value="{v}" onclick="show(\'verdict\', \'{v}\', this)">'
                f'{v} ({verdicts.get(v, 0)})</button>' for v in ("correct", "partial", "wrong")]
    buttons += [f'<button data-kind="finish" data-value="{e(r)}" onclick="show(\'finish\', \'{e(r)}\', this)">'
                f'{e(r)} ({n})</button>' for r, n in reasons.most_common()]
    return (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{e(title)}</title><style>{_STYLE}</style>"
            f"<script>{_SCRIPT}</script></head><body>\n<h1>{e(title)}</h1>\n"
            f'<div class="filters">{"".join(buttons)} <span class="meta">showing <span id="shown">{len(scored)}'
            f"</span></span></div>\n" + "\n".join(_record_html(line) for line in scored) + "\n</body></html>\n")


# -- everything -----------------------------------------------------------------------------------------

def write_reports(out: Path, summary: EvalSummary, lines: Sequence[dict], title: str = "") -> list[Path]:
    """summary.json, summary.md, the plots and gallery.html in `out`."""
    out = Path(out)
    title = title or f"vilasr eval: {summary.benchmark}"
    _atomic_write(out / SUMMARY_JSON, json.dumps(summary.to_json(), indent=1) + "\n")
    _atomic_write(out / SUMMARY_MD, summary_markdown(summary, title))
    _atomic_write(out / GALLERY, gallery_html(lines, title))
    return [out / SUMMARY_JSON, out / SUMMARY_MD, out / GALLERY, *write_plots(out, summary, lines)]


# -- vilasr compare -------------------------------------------------------------------------------------

def read_summary(run: Path) -> EvalSummary:
    from vilasr.errors import InputError

    path = Path(run) / SUMMARY_JSON
    if not path.is_file():
        raise InputError(f"{run} has no {SUMMARY_JSON}: it is not a finished `vilasr eval` run folder; give the "
                         "--out folder of an eval run")
    try:
        return EvalSummary.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path} is damaged ({e}); run `vilasr eval` into that folder again") from None


def compare_table(runs: Sequence[tuple[str, EvalSummary]]) -> str:
    """A Markdown table of several runs side by side (one row each), with the paper's 7B number as a
    reference row for each benchmark that has one, then the per-type scores."""
    head = ["| run | benchmark | records | overall % [95 %] | format % | reflective % | turns | tool calls | tokens |",
            "|---|---|---|---|---|---|---|---|---|"]
    rows = []
    for name, s in runs:
        ov = (interval_text(s.overall_interval) if s.overall_interval
              else pct(s.overall))
        rows.append(f"| {name} | {s.benchmark} | {s.scored} | {ov} | {pct(s.format_rate)} | "
                    f"{pct(s.reflective_rate)} | {s.mean_turns:.2f} | {s.mean_tool_calls:.2f} | "
                    f"{s.mean_response_tokens:.1f} |")
    for bench in dict.fromkeys(Benchmark(s.benchmark) for _, s in runs):
        if bench.paper_7b is not None:
            rows.append(f"| {PAPER_LABEL} | {bench} | - | {bench.paper_7b} | - | - | - | - | - |")
    types = list(dict.fromkeys(t for _, s in runs for t in s.per_type))
    per_type = ["", "| type | " + " | ".join(name for name, _ in runs) + " |",
                "|---|" + "---|" * len(runs)]
    per_type += ["| " + t + " | " + " | ".join(pct(s.per_type[t].mean) if t in s.per_type else "-" for _, s in runs)
                 + " |" for t in types]
    return "\n".join(head + rows + (per_type if types else [])) + "\n"
