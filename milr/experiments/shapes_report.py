"""Statistics of the Shapes experiment (``milr.experiments.shapes``), from its run folders alone.

Every number comes from what a run folder records (``milr.results.runs``), the scores
``python -m rewards.shapes RUN_DIR`` wrote (``official/shapes_geneval.json``) and the run's
TensorBoard ``time/*`` scalars. Paired differences and their 95 % intervals are
``milr.report.paired``: per prompt the mean difference over the seeds (repeats) both runs have,
then a percentile bootstrap over prompts, so the seeds of one prompt are never counted as
independent evidence.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Optional, Sequence

from milr.results.report import NA, Metric, RunView, fmt, paired, repeats_of
from milr.results.runs import Repeat
from milr.shapes.prompts import GENEVAL_TAGS, TAGS
from rewards.shapes import plan_correct

BENCHMARK = "shapes_geneval"
CORRECT = 1.0  # shapes_geneval scores a correct image 1.0, a wrong one 0.0
BUDGETS = (1, 2, 4, 8, 16)  # reward calls per prompt of the accuracy-versus-cost curve
TIMERS = ("step", "decode", "think", "reward", "update")  # the runner's TensorBoard time/<name>_s scalars
Table = tuple[list[str], list[list[str]]]


def tags_of(views: Sequence[RunView]) -> dict[str, str]:
    """Prompt key -> tag (runs of one prompt file share their keys)."""
    return {p.key: p.metadata.get("tag", "") for v in views for p in v.run.prompts}


def score_metric(keys: set[str]) -> Metric:
    """The Shapes score of the selected image, for the prompts in ``keys`` (the others are ``None``,
    which ``paired`` leaves out)."""
    return lambda view, key, repeat: view.official_score(BENCHMARK, key, repeat.index) if key in keys else None


def interval(p: dict[str, Any]) -> str:
    if p["diff"] is None:
        return NA
    return f"{p['diff']:+.3f}" + ("" if p["low"] is None else f" [{p['low']:+.3f}, {p['high']:+.3f}]")


def group_score(view: RunView, tag: str) -> Optional[float]:
    return ((view.official.get(BENCHMARK) or {}).get("groups", {}).get(tag) or {}).get("score")


def geneval_mean(view: RunView) -> Optional[float]:
    return (view.official.get(BENCHMARK) or {}).get("overall")


# ----------------------------------------------------------------- accuracy
def accuracy_table(views: dict[str, RunView], against: Sequence[str], resamples: int) -> Table:
    """Per method: accuracy per tag, GenEval mean (six tags), knowledge, and the paired difference
    in both against each run of ``against``. The difference is over prompts, which equals the
    difference of tag means when every tag has as many prompts (the set has 80 per tag)."""
    tags = tags_of(list(views.values()))
    geneval = {k for k, t in tags.items() if t in GENEVAL_TAGS}
    knowledge = {k for k, t in tags.items() if t == "knowledge"}
    refs = [r for r in against if r in views]
    header = ["method", "images", *TAGS, "GenEval mean"]
    header += [f"{what} − {r} [95 %]" for r in refs for what in ("GenEval", "knowledge")]
    rows = []
    for name, view in views.items():
        row = [name, str(len(repeats_of(view))), *(fmt(group_score(view, t)) for t in TAGS), fmt(geneval_mean(view))]
        for ref in refs:
            for keys in (geneval, knowledge):
                row.append("—" if ref == name else interval(paired(views[ref], view, score_metric(keys), resamples)))
        rows.append(row)
    return header, rows


# ----------------------------------------------------------------- accuracy versus reward calls
def call_rewards(repeat: Repeat) -> list[float]:
    """The reward of every image scored for this repeat, in call order (each trace line lists its
    step's samples; its ``reward_calls`` is the running count, checked here)."""
    calls: list[float] = []
    for line in repeat.trace:
        calls += [float(r) for r in line.get("sample_rewards") or [line["reward"]]]
        if "reward_calls" in line and line["reward_calls"] != len(calls):
            raise ValueError(f"{repeat.sample}: trace step {line.get('step')} says {line['reward_calls']} reward calls, its samples {len(calls)}")
    return calls


def accuracy_at(repeat: Repeat, budget: Optional[int], select: Optional[str]) -> Optional[float]:
    """Would the image returned after ``budget`` reward calls (``None``: all it made) be correct?
    ``select: best`` returns the best so far, so: was any of the first ``budget`` correct;
    ``select: last`` (the reference preset, one image per step) returns the latest image. With
    the stop threshold under 1.0 a prompt stops at its first correct image, so on this 0/1
    reward the two rules give the same curve; both are computed as their rule says."""
    calls = call_rewards(repeat)[:budget]
    if not calls:
        return None
    correct = calls[-1] >= CORRECT if select == "last" else max(calls) >= CORRECT
    return float(correct)


def select_rule(view: RunView) -> Optional[str]:
    return (view.run.config.get("model") or {}).get("select")


def budget_metric(budget: Optional[int]) -> Metric:
    return lambda view, key, repeat: accuracy_at(repeat, budget, select_rule(view))


def mean_accuracy(view: RunView, budget: Optional[int]) -> Optional[float]:
    values = [accuracy_at(r, budget, select_rule(view)) for r in repeats_of(view)]
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def max_calls(view: RunView) -> int:
    return max((len(call_rewards(r)) for r in repeats_of(view)), default=0)


def curve_table(views: dict[str, RunView], reference: str, resamples: int) -> tuple[Table, Table]:
    """Accuracy (all prompts, all tags) after 1, 2, 4, 8, 16 reward calls and after the whole
    budget; and each method's paired difference from ``reference`` at every budget."""
    header = ["method", *(f"{b} calls" for b in BUDGETS), "whole budget", "most calls made"]
    rows = [[name, *(fmt(mean_accuracy(v, b)) for b in BUDGETS), fmt(mean_accuracy(v, None)), str(max_calls(v))] for name, v in views.items()]
    diff_header = [f"method − {reference}", *(f"{b} calls" for b in BUDGETS)]
    diff_rows = []
    if reference in views:
        for name, view in views.items():
            if name != reference:
                diff_rows.append([name, *(interval(paired(views[reference], view, budget_metric(b), resamples)) for b in BUDGETS)])
    return (header, rows), (diff_header, diff_rows)


def curve_series(views: dict[str, RunView]) -> list[tuple[str, list[int], list[float]]]:
    """``(name, calls, accuracy)`` per method at every call count up to its most, for ``svg_chart``."""
    series = []
    for name, view in views.items():
        calls = list(range(1, max_calls(view) + 1))
        series.append((name, calls, [mean_accuracy(view, c) or 0.0 for c in calls]))
    return series


# ----------------------------------------------------------------- time
def timer_totals(tensorboard: Path) -> dict[str, float]:
    """Sum over all steps (and all resumed sessions) of each ``time/<name>_s`` scalar in a run's
    TensorBoard folder; empty when there is none."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not tensorboard.is_dir():
        return {}
    # a resumed run restarts its step count: keep every event, not only the last session's
    events = EventAccumulator(str(tensorboard), size_guidance={"scalars": 0}, purge_orphaned_data=False).Reload()
    present = set(events.Tags().get("scalars", []))
    return {n: sum(e.value for e in events.Scalars(f"time/{n}_s")) for n in TIMERS if f"time/{n}_s" in present}


def wall_seconds(view: RunView) -> Optional[float]:
    """The runner's wall time over all sessions of the run (``runs.jsonl``), model loading excluded."""
    path = view.run.folder / "runs.jsonl"
    if not path.is_file():
        return None
    return sum(json.loads(line)["seconds"] for line in path.read_text().splitlines() if line.strip())


def time_table(views: dict[str, RunView], tensorboard_root: Path, logs: Path) -> Table:
    """Seconds per prompt image (a prompt's repeat), amortised over the run: the runner process's
    CPU seconds (``logs/<run>.json``, model loading included), its wall time, and the split of the
    steps' wall time the runner's StepTimer records (think = the think-text decodes; image = the
    rest of decoding: image tokens and pixels; reward; update = loss, backward and optimiser;
    other = bookkeeping, writing, snapshots). The batch shares every step, so these are costs,
    not one prompt's latency, which is given apart (mean of each repeat's seconds)."""
    header = ["method", "images", "CPU s / image", "wall s / image", "steps s", "think", "image", "reward", "update", "other", "latency s (batch)"]
    rows = []
    for name, view in views.items():
        reps = repeats_of(view)
        n = len(reps)
        t = timer_totals(tensorboard_root / view.run.name)
        per = lambda value: fmt(None if value is None else value / n, 3)  # noqa: E731
        think = t.get("think")
        image = None if think is None or "decode" not in t else t["decode"] - think
        other = t["step"] - t["decode"] - t["reward"] - t["update"] if {"step", "decode", "reward", "update"} <= t.keys() else None
        wall = wall_seconds(view)
        latency = [r.get("seconds") for r in reps]
        record = logs / f"{name}.json"
        cpu = json.loads(record.read_text())["cpu_s"] if record.is_file() else None
        rows.append([name, str(n), per(cpu), per(wall), per(t.get("step")), per(think), per(image), per(t.get("reward")), per(t.get("update")),
                     per(other), fmt(sum(latency) / n if None not in latency else None, 2)])
    return header, rows


# ----------------------------------------------------------------- the README's table
def headline_table(views: dict[str, RunView], labels: dict[str, str], references: Sequence[str], logs: Path, resamples: int) -> Table:
    """The front page's table: per method (in ``labels``' order, by its label) the GenEval mean,
    its paired difference from each of ``references`` with the 95 % interval, the mean and most
    reward calls per image, and the runner's CPU seconds per image (``logs/<run>.json``)."""
    refs = [r for r in references if r in views]
    header = ["method", "GenEval mean", *(f"− {r} [95 %]" for r in refs), "reward calls (mean / most)", "CPU s / image"]
    tags = tags_of(list(views.values()))
    geneval = {k for k, t in tags.items() if t in GENEVAL_TAGS}
    rows = []
    for name, label in labels.items():
        if name not in views:
            continue
        view, reps = views[name], repeats_of(views[name])
        diffs = ["—" if name == r else interval(paired(views[r], view, score_metric(geneval), resamples)) for r in refs]
        calls = sum(len(call_rewards(r)) for r in reps) / len(reps)
        record = logs / f"{name}.json"
        cpu = json.loads(record.read_text())["cpu_s"] / len(reps) if record.is_file() else None
        rows.append([label, fmt(geneval_mean(view), 2), *diffs, f"{calls:.1f} / {max_calls(view)}", fmt(cpu, 2)])
    return header, rows


# ----------------------------------------------------------------- the text latent
@functools.lru_cache(maxsize=None)
def _plan_correct(metadata: str, text: str) -> bool:
    return plan_correct(json.loads(metadata), text)


def text_table(views: dict[str, RunView]) -> Table:
    """Per method: the share of selected images whose think text differs from stage 0's, and for
    those the plan accuracy (``rewards.shapes.plan_correct``) of the stage-0 text and of the
    selected one, how many changes fixed a wrong plan and how many broke a right one, and the
    image accuracy of those selected images."""
    header = ["method", "images", "think text changed", "plan right before", "plan right after", "fixed", "broken", "image right"]
    rows = []
    for name, view in views.items():
        changed = [(p, r) for p in view.run.prompts for r in p.repeats if r.text is not None and r.initial_text is not None and r.text != r.initial_text]
        n = len(repeats_of(view))
        before = [_plan_correct(json.dumps(p.metadata, sort_keys=True), r.initial_text) for p, r in changed]
        after = [_plan_correct(json.dumps(p.metadata, sort_keys=True), r.text) for p, r in changed]
        images = [view.official_score(BENCHMARK, p.key, r.index) for p, r in changed]
        share = lambda values: fmt(sum(values) / len(values) if values else None)  # noqa: E731
        rows.append([name, str(n), f"{len(changed)} ({fmt(len(changed) / n if n else None)})", share(before), share(after),
                     str(sum(a and not b for a, b in zip(after, before))), str(sum(b and not a for a, b in zip(after, before))),
                     share(images) if None not in images else NA])
    return header, rows


# ----------------------------------------------------------------- image identity
def identity(a: RunView, b: RunView) -> dict[str, int]:
    """Over the (prompt, seed) pairs both runs have: how many selected images are byte-identical,
    in all and among the pairs whose stage-0 image was wrong (where a correct stage-0 image ends
    both runs at once, identity is no evidence)."""
    other = {(p.key, r.index): r for p in b.run.prompts for r in p.repeats}
    counts = {"pairs": 0, "identical": 0, "stage 0 wrong": 0, "identical, stage 0 wrong": 0}
    for p in a.run.prompts:
        for r in p.repeats:
            twin = other.get((p.key, r.index))
            if twin is None:
                continue
            same = r.sample.read_bytes() == twin.sample.read_bytes()
            wrong = (r.initial_reward or 0.0) < CORRECT
            counts["pairs"] += 1
            counts["identical"] += same
            counts["stage 0 wrong"] += wrong
            counts["identical, stage 0 wrong"] += same and wrong
    return counts


def identity_table(views: dict[str, RunView], pairs: Sequence[tuple[str, str]]) -> Table:
    header = ["runs", "pairs (prompt, seed)", "identical", "stage 0 wrong", "identical among those"]
    rows = []
    for a, b in pairs:
        if a in views and b in views:
            c = identity(views[a], views[b])
            ratio = lambda k, n: f"{c[k]} ({fmt(c[k] / c[n] if c[n] else None)})"  # noqa: E731
            rows.append([f"{a} / {b}", str(c["pairs"]), ratio("identical", "pairs"), str(c["stage 0 wrong"]), ratio("identical, stage 0 wrong", "stage 0 wrong")])
    return header, rows


# ----------------------------------------------------------------- ablations
def ablation_table(views: dict[str, RunView], settings: dict[str, str], reference: str, resamples: int) -> Table:
    """One row per ablation run: its setting, GenEval mean and knowledge, the paired difference in
    GenEval accuracy from ``reference`` (the default settings), reward calls and steps per prompt."""
    tags = tags_of(list(views.values()))
    geneval = {k for k, t in tags.items() if t in GENEVAL_TAGS}
    header = ["run", "setting", "images", "GenEval mean", "knowledge", f"GenEval − {reference} [95 %]", "reward calls / image", "steps / image"]
    rows = []
    for name, view in views.items():
        reps = repeats_of(view)
        diff = "—" if name == reference or reference not in views else interval(paired(views[reference], view, score_metric(geneval), resamples))
        calls = [r.get("reward_calls") for r in reps]
        steps = [r.get("steps") for r in reps]
        mean = lambda values: fmt(sum(values) / len(values) if values and None not in values else None, 2)  # noqa: E731
        rows.append([name, settings.get(name, ""), str(len(reps)), fmt(geneval_mean(view)), fmt(group_score(view, "knowledge")), diff, mean(calls), mean(steps)])
    return header, rows


# ----------------------------------------------------------------- the update's direction
def step_rewards(repeat: Repeat, first: bool) -> Optional[float]:
    """Mean reward of the images decoded after at least one update (``first``: all steps ≥ 1), or
    of the last step's images alone; ``None`` for a repeat that never stepped."""
    lines = [line for line in repeat.trace if line["step"] >= 1]
    if not first:
        lines = lines[-1:]
    values = [float(r) for line in lines for r in line.get("sample_rewards") or [line["reward"]]]
    return sum(values) / len(values) if values else None


def direction_table(views: dict[str, RunView], pairs: Sequence[tuple[str, str]], resamples: int) -> Table:
    """Per pair (the update towards R, the same update towards 1 − R): the mean optimised reward of
    the images after the first update and of the last step's, and the Shapes accuracy of the
    selected image, each with the paired difference towards R minus towards 1 − R."""
    metrics: dict[str, Metric] = {
        "reward after an update": lambda view, key, repeat: step_rewards(repeat, first=True),
        "reward at the last step": lambda view, key, repeat: step_rewards(repeat, first=False),
        "accuracy (selected)": lambda view, key, repeat: view.official_score(BENCHMARK, key, repeat.index),
    }
    header = ["towards R / towards 1 − R", "measure", "towards R", "towards 1 − R", "difference [95 %]", "prompts"]
    rows = []
    for a, b in pairs:
        if a in views and b in views:
            for label, metric in metrics.items():
                p = paired(views[b], views[a], metric, resamples)
                means = [mean_of(views[n], metric) for n in (a, b)]
                rows.append([f"{a} / {b}", label, *(fmt(m) for m in means), interval(p), str(p["n"])])
    return header, rows


def mean_of(view: RunView, metric: Metric) -> Optional[float]:
    values = [metric(view, p.key, r) for p in view.run.prompts for r in p.repeats]
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None
