"""One page that compares runs: ``python -m milr.report RUN_DIR [RUN_DIR ...] [--out DIR]``.

Writes a self-contained ``report.html`` (images as data URIs, curves as inline SVG) and
``report.md`` into the first run folder or ``--out``: official benchmark scores per run (read
from ``RUN_DIR/official/<benchmark>.json``, which ``python -m rewards.<benchmark> RUN_DIR``
writes; this package may not import a reward) with each monitor beside them; the optimised
reward and monitors before and after; paired differences against the first run over the
prompts both ran, with a bootstrap 95 % interval; cost per prompt; reward-versus-step curves;
and a gallery of initial and selected images with the think text before and after.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
from PIL import Image

from milr.results.official import read_official
from milr.results.runs import Repeat, Run, read_run

NA = "n/a"
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22", "#000000", "#aec7e8")
Metric = Callable[["RunView", str, Repeat], Optional[float]]


@dataclass
class RunView:
    run: Run
    official: dict[str, dict[str, Any]] = field(default_factory=dict)  # benchmark -> official/<benchmark>.json
    scores: dict[str, dict[tuple[str, int], float]] = field(default_factory=dict)  # benchmark -> (key, repeat) -> score

    @property
    def label(self) -> str:
        method = self.run.method
        return self.run.name if method is None or method in self.run.name else f"{self.run.name} ({method})"

    def official_score(self, benchmark: str, key: str, repeat: int) -> Optional[float]:
        return self.scores.get(benchmark, {}).get((key, repeat))

    @property
    def monitor_names(self) -> list[str]:
        return sorted({m for p in self.run.prompts for r in p.repeats for m in r.monitors})


def load(folder: str | Path) -> RunView:
    view = RunView(read_run(folder))
    view.official = read_official(view.run.folder)
    for benchmark, data in view.official.items():
        view.scores[benchmark] = {(i["key"], i["repeat"]): float(i["score"]) for i in data.get("images", [])}
    return view


def fmt(value: Optional[float], digits: int = 3) -> str:
    return NA if value is None else f"{value:.{digits}f}"


def mean(values: Sequence[Optional[float]]) -> Optional[float]:
    """Mean of the recorded values; ``None`` when any is missing (no partial mean passed off as whole)."""
    if not values or any(v is None for v in values):
        return None
    return float(sum(values) / len(values))


# ----------------------------------------------------------------- metrics
def reward_metric(view: RunView, key: str, repeat: Repeat) -> Optional[float]:
    return repeat.selected_reward


def monitor_metric(name: str, when: str = "selected") -> Metric:
    return lambda view, key, repeat: (repeat.monitors.get(name) or {}).get(when)


def official_metric(benchmark: str) -> Metric:
    return lambda view, key, repeat: view.official_score(benchmark, key, repeat.index)


def per_repeat(view: RunView, metric: Metric) -> dict[str, dict[int, Optional[float]]]:
    """``{key: {repeat: value}}`` (``None`` where the run did not record it)."""
    return {p.key: {r.index: metric(view, p.key, r) for r in p.repeats} for p in view.run.prompts}


def bootstrap(diffs: np.ndarray, resamples: int = 2000, seed: int = 0) -> tuple[Optional[float], Optional[float]]:
    """Percentile 95 % interval of the mean paired difference, resampling prompts."""
    if len(diffs) < 2:
        return None, None
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(0, len(diffs), size=(resamples, len(diffs)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def paired(base: RunView, other: RunView, metric: Metric, resamples: int) -> dict[str, Any]:
    """Per prompt both runs finished: the mean over their common repeats (same seeds) of the
    difference; a prompt with a value missing on either side is left out, not filled in."""
    a, b = per_repeat(base, metric), per_repeat(other, metric)
    per_prompt = {}
    for key in a.keys() & b.keys():
        pairs = [(a[key][r], b[key][r]) for r in sorted(a[key].keys() & b[key].keys())]
        if pairs and all(x is not None and y is not None for x, y in pairs):
            per_prompt[key] = sum(y - x for x, y in pairs) / len(pairs)
    keys = sorted(per_prompt)
    diffs = np.array([per_prompt[k] for k in keys], dtype=float)
    low, high = bootstrap(diffs, resamples)
    return {"n": len(keys), "diff": float(diffs.mean()) if len(keys) else None, "low": low, "high": high}


def metrics(views: Sequence[RunView]) -> list[tuple[str, Metric]]:
    found = [("optimised reward (selected)", reward_metric)]
    found += [(f"official {b}", official_metric(b)) for b in sorted({b for v in views for b in v.official})]
    found += [(f"monitor {m} (selected)", monitor_metric(m)) for m in sorted({m for v in views for m in v.monitor_names})]
    return found


def seeds(run: Run) -> tuple[Any, Any]:
    return run.config.get("seed_everything"), (run.config.get("model") or {}).get("seed")


# ----------------------------------------------------------------- tables (rows of cells)
def official_tables(views: Sequence[RunView]) -> list[tuple[str, list[str], list[list[str]]]]:
    """Per benchmark: rows = groups + overall; per run the official score and each monitor's mean beside it."""
    tables = []
    for benchmark in sorted({b for v in views for b in v.official}):
        header = ["group"]
        for v in views:
            header += [f"{v.label}: official"] + [f"{v.label}: {m}" for m in v.monitor_names]
        groups = list(dict.fromkeys(g for v in views for g in v.official.get(benchmark, {}).get("groups", {})))
        rows = []
        for group in groups + ["overall"]:
            row = [group]
            for v in views:
                data = v.official.get(benchmark)
                if data is None:
                    row += [NA] * (1 + len(v.monitor_names))
                    continue
                if group == "overall":
                    row.append(fmt(data.get("overall")) if data.get("overall") is not None else f"{NA} {data.get('note', '')}".strip())
                    images = data.get("images", [])
                else:
                    value = data["groups"].get(group)
                    row.append(NA if value is None else f"{value['score']:.3f} (n={value['n']})")
                    images = [i for i in data.get("images", []) if i["group"] == group]
                by_key = v.run.by_key()
                for m in v.monitor_names:
                    values = [monitor_metric(m)(v, i["key"], by_key[i["key"]].repeats[i["repeat"]]) for i in images if i["key"] in by_key]
                    row.append(fmt(mean(values)) if values else NA)
            rows.append(row)
        sources = "; ".join(f"{v.run.name}: {v.official[benchmark]['source']}" for v in views if benchmark in v.official)
        tables.append((f"Official {benchmark} score ({sources})", header, rows))
    return tables


def repeats_of(view: RunView) -> list[Repeat]:
    return [r for p in view.run.prompts for r in p.repeats]


def class_name(spec: Any) -> str:
    return (spec.get("class_path", NA) if isinstance(spec, dict) else str(spec)).rsplit(".", 1)[-1]


def runs_table(views: Sequence[RunView]) -> tuple[list[str], list[list[str]]]:
    """What each run is, from its results and config.yaml (n/a where the run did not record it)."""
    keys = ("mode", "estimator", "max_steps", "samples_per_step", "select", "reward_threshold")
    header = ["run", "method", "reward", *keys, "repeats", "folder"]
    rows = []
    for v in views:
        model = v.run.config.get("model") or {}
        counts = sorted({len(p.repeats) for p in v.run.prompts})
        row = [v.run.name, v.run.method or NA, class_name(model["reward"]) if "reward" in model else NA]
        row += [NA if model.get(k) is None else str(model[k]) for k in keys]
        rows.append(row + ["/".join(map(str, counts)), str(v.run.folder)])
    return header, rows


def reward_table(views: Sequence[RunView]) -> tuple[list[str], list[list[str]]]:
    header = ["run", "prompts", "images", "initial reward", "selected reward"]
    monitors = sorted({m for v in views for m in v.monitor_names})
    header += [f"{m}: initial → selected" for m in monitors] + ["reward up, a monitor down"]
    rows = []
    for v in views:
        reps = repeats_of(v)
        row = [v.label, str(len(v.run.prompts)), str(len(reps)), fmt(mean([r.initial_reward for r in reps])), fmt(mean([r.selected_reward for r in reps]))]
        for m in monitors:
            row.append(f"{fmt(mean([monitor_metric(m, 'initial')(v, '', r) for r in reps]))} → {fmt(mean([monitor_metric(m)(v, '', r) for r in reps]))}")
        row.append(str(sum(bool(hacked(r)) for r in reps)) if v.monitor_names else NA)
        rows.append(row)
    return header, rows


def hacked(repeat: Repeat) -> list[str]:
    """Monitors that fell while the optimised reward rose (the reward-hacking flag)."""
    up = repeat.initial_reward is not None and repeat.selected_reward is not None and repeat.selected_reward > repeat.initial_reward
    return [m for m, v in repeat.monitors.items() if up and v.get("initial") is not None and v.get("selected") is not None and v["selected"] < v["initial"]]


def cost_table(views: Sequence[RunView]) -> tuple[list[str], list[list[str]]]:
    header = ["run", "reward calls / prompt", "decoded images / prompt", "seconds / prompt", "steps / prompt", "seed (global, model)"]
    rows = []
    for v in views:
        reps = repeats_of(v)
        row = [v.label] + [fmt(mean([r.get(k) for r in reps]), 2) for k in ("reward_calls", "decoded_images", "seconds", "steps")]
        rows.append(row + [" / ".join(NA if s is None else str(s) for s in seeds(v.run))])
    return header, rows


def paired_table(views: Sequence[RunView], resamples: int) -> tuple[list[str], list[list[str]]]:
    header = ["run − " + views[0].label, "metric", "prompts paired", "mean difference", "95 % bootstrap interval", "same seeds"]
    rows = []
    for v in views[1:]:
        same = NA if None in seeds(v.run) + seeds(views[0].run) else ("yes" if seeds(v.run) == seeds(views[0].run) else "no")
        for name, metric in metrics(views):
            p = paired(views[0], v, metric, resamples)
            interval = NA if p["low"] is None else f"[{p['low']:+.3f}, {p['high']:+.3f}]"
            rows.append([v.label, name, str(p["n"]), NA if p["diff"] is None else f"{p['diff']:+.3f}", interval, same])
    return header, rows


# ----------------------------------------------------------------- curves
def curves(view: RunView) -> tuple[list[float], list[float]]:
    """Per step: mean best-so-far reward over all prompt repeats (a stopped one keeps its best),
    and mean reward of the step over those still running."""
    traces = [[float(s["reward"]) for s in r.trace] for r in repeats_of(view) if r.trace]
    if not traces:
        return [], []
    length = max(len(t) for t in traces)
    best = [float(np.mean([max(t[: min(s, len(t) - 1) + 1]) for t in traces])) for s in range(length)]
    step = [float(np.mean([t[s] for t in traces if s < len(t)])) for s in range(length)]
    return best, step


def calls_curve(view: RunView) -> tuple[list[int], list[float]]:
    """Mean best-so-far reward over all prompt repeats against reward calls, from the traces'
    cumulative ``reward_calls`` (empty when the run did not record them). A stopped repeat keeps
    its best; the curve starts at the call count where every repeat has scored its stage 0."""
    traces = [r.trace for r in repeats_of(view) if r.trace]
    if not traces or any("reward_calls" not in s for t in traces for s in t):
        return [], []
    calls = list(range(max(t[0]["reward_calls"] for t in traces), max(t[-1]["reward_calls"] for t in traces) + 1))
    best = lambda t, c: max(float(s["reward"]) for s in t if s["reward_calls"] <= c)  # noqa: E731
    return calls, [float(np.mean([best(t, c) for t in traces])) for c in calls]


def svg_chart(series: list[tuple[str, Sequence[float], list[float]]], title: str, xlabel: str = "step (0 = initial generation)",
              width: int = 520, height: int = 300) -> str:
    """A line chart as inline SVG: each series is ``(name, xs, ys)``, x integers (steps, reward calls), y = reward.
    The legend sits right of the plot (``width`` is the plot's), one line per series, never over a curve."""
    series = [entry for entry in series if entry[2]]
    legend = 24 + 7 * max((len(name) for name, _, _ in series), default=0)
    left, right, top, bottom = 48, 12 + legend, 28, 36
    width += legend
    points = [y for _, _, ys in series for y in ys]
    if not points:
        return f"<p>{html.escape(title)}: {NA} (no traces)</p>"
    lo, hi = min(points), max(points)
    lo, hi = (lo - 0.05, hi + 0.05) if hi - lo < 1e-9 else (lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
    first, last = int(min(xs[0] for _, xs, _ in series)), int(max(xs[-1] for _, xs, _ in series))
    x = lambda s: left + (width - left - right) * ((s - first) / max(last - first, 1))  # noqa: E731
    y = lambda v: top + (height - top - bottom) * (1 - (v - lo) / (hi - lo))  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" class="chart">',
             f'<text x="{width / 2}" y="16" text-anchor="middle" class="title">{html.escape(title)}</text>',
             f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" class="axis"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" class="axis"/>']
    for v in np.linspace(lo, hi, 5):
        parts.append(f'<text x="{left - 4}" y="{y(v) + 4:.1f}" text-anchor="end" class="tick">{v:.2f}</text>')
        parts.append(f'<line x1="{left}" y1="{y(v):.1f}" x2="{width - right}" y2="{y(v):.1f}" class="grid"/>')
    for s in sorted({first, last, *range(first, last + 1, max(1, (last - first) // 8))}):
        parts.append(f'<text x="{x(s):.1f}" y="{height - bottom + 14}" text-anchor="middle" class="tick">{s}</text>')
    parts.append(f'<text x="{(left + width) / 2}" y="{height - 4}" text-anchor="middle" class="tick">{html.escape(xlabel)}</text>')
    for i, (name, xs, ys) in enumerate(series):
        color = COLORS[i % len(COLORS)]
        path = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in zip(xs, ys))
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{path}"><title>{html.escape(name)}</title></polyline>')
        parts += [f'<circle cx="{x(s):.1f}" cy="{y(v):.1f}" r="2.5" fill="{color}"/>' for s, v in zip(xs, ys)]
        row = top + 14 * (i + 1)
        parts.append(f'<line x1="{width - legend}" y1="{row - 4}" x2="{width - legend + 14}" y2="{row - 4}" stroke="{color}" stroke-width="2"/>')
        parts.append(f'<text x="{width - legend + 18}" y="{row}" fill="{color}" class="legend">{html.escape(name)}</text>')
    return "".join(parts) + "</svg>"


# ----------------------------------------------------------------- html
def data_uri(path: Optional[Path], max_side: int = 256) -> Optional[str]:
    """The image as a data URI: small PNGs as they are, larger ones as a ``max_side`` JPEG thumbnail."""
    if path is None or not path.is_file():
        return None
    with Image.open(path) as image:
        if max(image.size) <= max_side:
            return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
        thumb = image.convert("RGB")
        thumb.thumbnail((max_side, max_side))
        buffer = io.BytesIO()
        thumb.save(buffer, format="JPEG", quality=88)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def figure(uri: Optional[str], caption: str) -> str:
    if uri is None:
        return f'<figure class="missing"><div class="noimg">{NA}</div><figcaption>{html.escape(caption)}</figcaption></figure>'
    return f'<figure><img src="{uri}" alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}</figcaption></figure>'


def gallery(views: Sequence[RunView], limit: Optional[int]) -> tuple[str, int, int]:
    keys = list(dict.fromkeys(p.key for v in views for p in v.run.prompts))
    shown = keys if limit is None else keys[:limit]
    rows = []
    for key in shown:
        cells, text = [], ""
        for v in views:
            prompt = v.run.by_key().get(key)
            if prompt is None:
                cells.append(f'<td class="cell"><div class="run">{html.escape(v.label)}</div>{NA}: not in this run</td>')
                continue
            text = prompt.text
            r = prompt.repeats[0]
            flags = hacked(r)
            flag = f'<div class="flag">reward ↑ while {html.escape(", ".join(flags))} ↓</div>' if flags else ""
            more = f" (repeat 0 of {len(prompt.repeats)})" if len(prompt.repeats) > 1 else ""
            monitors = "".join(f"<div>{html.escape(m)}: {fmt(s.get('initial'))} → {fmt(s.get('selected'))}</div>" for m, s in r.monitors.items())
            cells.append(
                f'<td class="cell"><div class="run">{html.escape(v.label)}{more}</div>{flag}<div class="pair">'
                + figure(data_uri(r.initial), f"initial {fmt(r.initial_reward)}")
                + figure(data_uri(r.sample), f"selected {fmt(r.selected_reward)}")
                + f"</div>{monitors}"
                + f'<details open><summary>think text</summary><div class="think"><b>before</b> {html.escape(r.initial_text or NA)}</div>'
                + f'<div class="think"><b>after</b> {html.escape(r.text or NA)}</div></details></td>'
            )
        rows.append(f'<tr><th class="prompt"><code>{html.escape(key)}</code><div>{html.escape(text)}</div></th>{"".join(cells)}</tr>')
    return f'<table class="gallery">{"".join(rows)}</table>', len(shown), len(keys)


CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1400px;padding:0 16px;color:#222;background:#fafafa}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#666;margin-bottom:12px} table{border-collapse:collapse;background:#fff;margin:6px 0 12px;box-shadow:0 1px 2px #0001}
th,td{border:1px solid #e3e3e3;padding:4px 8px;text-align:left;vertical-align:top} thead th{background:#f0f3f7}
tbody tr:nth-child(even){background:#fbfbfd} .charts{display:flex;flex-wrap:wrap;gap:16px}
.chart{background:#fff;box-shadow:0 1px 2px #0001} .chart .axis{stroke:#444} .chart .grid{stroke:#eee} .chart .tick{font-size:11px;fill:#555}
.chart .title{font-size:13px;font-weight:600} .chart .legend{font-size:12px;font-weight:600}
.gallery td.cell{min-width:290px} .gallery th.prompt{width:180px;background:#f7f7f9;font-weight:normal} .gallery th.prompt div{font-weight:600;margin-top:4px}
.run{font-weight:600;margin-bottom:4px} .pair{display:flex;gap:8px} figure{margin:0;text-align:center}
figure img{width:128px;height:128px;object-fit:contain;image-rendering:pixelated;border:1px solid #ccc;background:#fff}
.noimg{width:128px;height:128px;display:flex;align-items:center;justify-content:center;border:1px dashed #bbb;color:#999}
figcaption{font-size:12px;color:#444} .think{font-family:ui-monospace,Menlo,monospace;font-size:12px;white-space:pre-wrap;word-break:break-word;max-width:300px;color:#333}
.flag{background:#fdecea;color:#a12;border-radius:4px;padding:1px 6px;display:inline-block;margin-bottom:4px;font-size:12px} summary{cursor:pointer;color:#555;font-size:12px}
"""


def render_html(views: Sequence[RunView], resamples: int, limit: Optional[int]) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>milr report</title><style>{CSS}</style></head><body>",
             "<h1>milr report</h1>",
             f"<div class='sub'>{len(views)} run(s): {html.escape(', '.join(str(v.run.folder) for v in views))}</div>"]
    parts += ["<h2>Runs</h2>", html_table(*runs_table(views))]
    tables = official_tables(views)
    parts.append("<h2>Official benchmark scores</h2>")
    if not tables:
        parts.append(f"<p>{NA}: no run has <code>official/&lt;benchmark&gt;.json</code>; write one with "
                     "<code>python -m rewards.{geneval,t2i_compbench,wise} RUN_DIR</code> (<code>--from_details</code> reads the run's own verdicts).</p>")
    for title, header, rows in tables:
        parts += [f"<h3>{html.escape(title)}</h3>", html_table(header, rows)]
    parts += ["<h2>Optimised reward and monitors</h2>", html_table(*reward_table(views))]
    parts += ["<h2>Cost per prompt (mean over prompts and repeats)</h2>", html_table(*cost_table(views))]
    if len(views) > 1:
        parts += [f"<h2>Paired differences against {html.escape(views[0].label)}</h2>",
                  "<p class='sub'>per prompt (mean over the repeats both runs have), over the prompts both runs finished; percentile bootstrap over prompts, "
                  f"{resamples} resamples</p>", html_table(*paired_table(views, resamples))]
    per_step = [(v.label, *curves(v)) for v in views]
    best = [(label, range(len(ys)), ys) for label, ys, _ in per_step]
    step = [(label, range(len(ys)), ys) for label, _, ys in per_step]
    calls = [(v.label, *calls_curve(v)) for v in views]
    parts += ["<h2>Reward versus step and versus reward calls</h2><div class='charts'>",
              svg_chart(best, "best reward so far (mean over prompts)"), svg_chart(step, "reward of the step (prompts still running)")]
    if any(ys for _, _, ys in calls):
        parts.append(svg_chart(calls, "best reward so far against reward calls (equal cost)", xlabel="reward calls (cumulative, per prompt)"))
    parts.append("</div>")
    table, shown, total = gallery(views, limit)
    parts += [f"<h2>Gallery ({shown} of {total} prompts; initial and selected image, think text before and after)</h2>", table, "</body></html>"]
    return "".join(parts)


# ----------------------------------------------------------------- markdown
def md_table(header: list[str], rows: list[list[str]]) -> str:
    cell = lambda c: str(c).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(cell, row)) + " |" for row in rows]) + "\n"


def render_md(views: Sequence[RunView], resamples: int) -> str:
    parts = ["# milr report\n", f"Runs: {', '.join(f'`{v.run.folder}`' for v in views)}. Images and curves: report.html.\n",
             "## Runs\n", md_table(*runs_table(views)), "## Official benchmark scores\n"]
    tables = official_tables(views)
    if not tables:
        parts.append(f"{NA}: no run has `official/<benchmark>.json` (`python -m rewards.<benchmark> RUN_DIR`).\n")
    for title, header, rows in tables:
        parts += [f"### {title}\n", md_table(header, rows)]
    parts += ["## Optimised reward and monitors\n", md_table(*reward_table(views)), "## Cost per prompt\n", md_table(*cost_table(views))]
    if len(views) > 1:
        parts += [f"## Paired differences against {views[0].label} (bootstrap 95 %, {resamples} resamples)\n", md_table(*paired_table(views, resamples))]
    return "\n".join(parts)


def main(argv: Optional[Sequence[str]] = None) -> Path:
    parser = argparse.ArgumentParser(prog="python -m milr.report", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders; differences are taken against the first")
    parser.add_argument("--out", type=Path, default=None, help="folder for report.html and report.md (default: the first run folder)")
    parser.add_argument("--gallery", type=int, default=200, help="at most this many prompts in the gallery (0: all)")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples of the paired differences")
    args = parser.parse_args(argv)
    views = [load(folder) for folder in args.runs]
    out = args.out or args.runs[0]
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.html").write_text(render_html(views, args.bootstrap, args.gallery or None), encoding="utf-8")
    (out / "report.md").write_text(render_md(views, args.bootstrap), encoding="utf-8")
    print(f"wrote {out / 'report.html'} and {out / 'report.md'}")
    return out / "report.html"


if __name__ == "__main__":
    main()
