"""The Shapes experiment: does MILR do more than re-sample, measured at equal cost?

    python -m milr.experiments.shapes ROOT [--quick] [--part main|direction|ablations|all] [runner options]

Runs every method on the Shapes evaluation set (configs/shapes_geneval.yaml, 560 prompts, the
shipped Shapes model), scores each run folder with ``python -m rewards.shapes``, and writes the
report: ``docs/shapes_experiment.md`` (``--docs``; ``--quick`` writes ``ROOT/shapes_experiment.md``)
with its curve beside it, ``milr.report``'s ``ROOT/main/report.html``, and (the full main runs with
the default page and no runner options) the README's table. Runner options (e.g.
``--model.backbone.name_or_path DIR``) go to every run after the main config and before each
method's fragment. Re-running the command resumes: the runner skips finished prompts.

Equal cost: every method may make the reward calls of the config's MILR run, ``max_steps + 1``
(16 with max_steps 15, the range over which the paper reports gains rising, 1 to 16 steps;
every method stops at its first correct image). ``best_of_n`` draws that many images; rloo, with
K = 2 samples per step, gets the most steps whose calls stay within it (max_steps 6: 1 + 2 · 7
= 15 calls; K = 3, max_steps 4 would give exactly 16, but fewer updates).

Seeds: ``data.repeats`` (3) independent runs per prompt. Every random draw of a prompt
(images, rloo's text samples) comes from its own generator seeded by ``model.seed``, the prompt's
index and the repeat (``milr.module.prompt_seed``), so repeat r of a prompt is seed r in every
method, stage 0 included, and methods are paired by (prompt, repeat). ``seed_everything`` seeds
nothing a prompt draws from.

The direction check (``--part direction``): the update towards R against the same update towards
1 − R (reference and rloo) on a graded reward with no stop threshold, where, unlike on the 0/1
reward with the threshold, both directions move the latents.

Two runs at a time, each on one thread (``OMP_NUM_THREADS=1``): the toy's small matrix products
gain little from a second thread, and two processes keep both cores busy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, TextIO

import yaml

from milr.results import report
from milr.experiments import shapes_report as stats
from milr.methods import reward_call_budget
from milr.schedule import STEP_ORDERS

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
MAIN_CONFIG = CONFIGS / "shapes_geneval.yaml"
DOCS = REPO / "docs" / "shapes_experiment.md"
README = REPO / "README.md"
#: the README's table between these markers is rewritten by the full run (not --quick, not --per_tag)
README_MARKERS = ("<!-- shapes-table:begin -->\n", "<!-- shapes-table:end -->")
#: what every method is compared with: best-of-N over images, best-of-N over plans, stage 0
BASELINES = ("best_of_n", "best_of_n_think", "base")
#: the front page's rows, by run name
HEADLINE = {"base": "base (stage 0)", "best_of_n": "best-of-N (greedy think text, images re-sampled)",
            "best_of_n_think": "best-of-N (a sampled think text per image)",
            "milr_both": "MILR reference, mode both", "milr_text": "MILR reference, mode text", "milr_image": "MILR reference, mode image",
            "reference": "the authors' exact behaviour (`presets/reference.yaml`)", "milr_rloo": "MILR `rloo` (K = 2)",
            "anti_reward": "control: reference towards 1 − reward"}
RLOO_K = 2
#: the ablation grid of the paper's claims (mode both, one seed); a value equal to the config's
#: own is the ``default`` run
ABLATIONS = {"text_ratio": (0.1, 0.2, 0.4), "image_ratio": (0.02, 0.1, 0.3), "lr": (0.01, 0.03, 0.1)}
IDENTITY_PAIRS = (("milr_both", "anti_reward"), ("milr_rloo", "anti_reward_rloo"))
#: the direction check: the graded reward (share of satisfied clauses) and no stop threshold, so
#: every prompt takes every step and the towards-R and towards-(1 − R) updates both move
DIRECTION_OPTIONS = ("--model.reward.init_args.soft", "true", "--model.reward_threshold", "null")
PARTS = ("main", "direction", "ablations")
DIRECTION_RUNS = ("best_of_n", *(name for pair in IDENTITY_PAIRS for name in pair))
THREADS = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
#: seeds, prompts per tag of the main runs (None: all) and of the ablations: full, and --quick
SIZES = {False: {"seeds": 3, "per_tag": None, "ablation_per_tag": 20}, True: {"seeds": 1, "per_tag": 2, "ablation_per_tag": 1}}


@dataclass(frozen=True)
class Spec:
    """One run: config fragments stacked after the main config (paths under configs/), options after them."""

    name: str
    fragments: tuple[str, ...]
    options: tuple[str, ...] = ()
    setting: str = ""


def rloo_steps(budget: int, k: int = RLOO_K) -> int:
    """The most steps of rloo with ``k`` samples per step whose reward calls stay within ``budget``."""
    steps = (budget - 1 - k) // k
    if steps < 0:
        raise ValueError(f"a budget of {budget} reward calls is too small for rloo with {k} samples per step")
    assert reward_call_budget(steps, "rloo", k) <= budget < reward_call_budget(steps + 1, "rloo", k)
    return steps


def main_specs(max_steps: int) -> list[Spec]:
    """The methods compared, in the report's order; every one within ``max_steps + 1`` reward calls."""
    milr = ("compare/milr.yaml",)
    rloo = ("--model.max_steps", str(rloo_steps(max_steps + 1)))
    return [
        Spec("base", ("compare/base.yaml",)),
        Spec("best_of_n", ("compare/best_of_n.yaml",)),
        Spec("best_of_n_think", ("compare/best_of_n.yaml",), ("--model.best_of_n_think", "sample")),
        Spec("milr_text", milr, ("--model.mode", "text")),
        Spec("milr_image", milr, ("--model.mode", "image")),
        Spec("milr_both", milr),
        Spec("milr_rloo", ("compare/milr_rloo.yaml",), rloo),
        Spec("anti_reward", ("compare/anti_reward.yaml",)),
        Spec("anti_reward_rloo", ("compare/milr_rloo.yaml",), ("--model.method", "anti_reward", *rloo)),
        Spec("reference", (*milr, "presets/reference.yaml")),
    ]


def ablation_specs(model: dict[str, Any]) -> list[Spec]:
    """MILR in mode both at the config's settings (``default``), one option changed per run, and
    best-of-N and base on the same prompts for scale."""
    milr = ("compare/milr.yaml",)
    default = ", ".join(f"{k} {model[k]}" for k in ABLATIONS) + f", step_order {model['step_order']}"
    specs = [Spec("default", milr, ("--model.mode", "both"), default)]
    for option, values in ABLATIONS.items():
        specs += [Spec(f"{option}_{v}", milr, ("--model.mode", "both", f"--model.{option}", str(v)), f"{option} {v}")
                  for v in values if v != model[option]]
    specs += [Spec(f"order_{o}", milr, ("--model.mode", "both", "--model.step_order", o), f"step_order {o}")
              for o in STEP_ORDERS if o != model["step_order"]]
    return specs + [Spec("best_of_n", ("compare/best_of_n.yaml",), (), "best-of-N"), Spec("base", ("compare/base.yaml",), (), "stage 0 only")]


def direction_specs(max_steps: int) -> list[Spec]:
    """The update towards R against the same update towards 1 − R, each estimator, where the
    direction can show: graded reward, no threshold; best-of-N beside them for scale."""
    return [Spec(s.name, s.fragments, (*s.options, *DIRECTION_OPTIONS)) for s in main_specs(max_steps) if s.name in DIRECTION_RUNS]


def runner_command(spec: Spec, folder: Path, options: Sequence[str]) -> list[str]:
    fragments = [a for f in spec.fragments for a in ("--config", str(CONFIGS / f))]
    return [sys.executable, str(REPO / "train_free_runner.py"), "--config", str(MAIN_CONFIG), *options, *fragments, *spec.options,
            "--output_dir", str(folder / spec.name), "--tensorboard_root", str(folder / "tensorboard")]


def resolved_config(options: Sequence[str]) -> dict[str, Any]:
    """The main config with the runner options applied, as the runner resolves it."""
    out = subprocess.run([sys.executable, str(REPO / "train_free_runner.py"), "--config", str(MAIN_CONFIG), *options, "--print_config"],
                         check=True, capture_output=True, text=True)
    return yaml.safe_load(out.stdout)


def per_tag_subset(path: Path, per_tag: int, out: Path) -> Path:
    """The first ``per_tag`` prompts of each tag of a GenEval-schema file, in file order (the
    subset's keys and seeds are its own indices)."""
    taken: dict[str, int] = {}
    lines = []
    for line in path.read_text().splitlines():
        if line.strip():
            tag = json.loads(line)["tag"]
            if taken.get(tag, 0) < per_tag:
                taken[tag] = taken.get(tag, 0) + 1
                lines.append(line)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return out


def cpu_seconds(command: list[str], sink: TextIO) -> float:
    """Run ``command`` on one thread, output to ``sink``; its CPU seconds (user + system), which
    on a shared machine measure the cost where wall time measures the neighbours too."""
    sink.write("$ " + " ".join(command) + "\n")
    sink.flush()
    process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, **THREADS})
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"exit status {process.returncode}: see {sink.name}")
    return usage.ru_utime + usage.ru_stime


def run_one(spec: Spec, folder: Path, options: Sequence[str]) -> None:
    """One run and its Shapes scoring, logged to ``folder/logs/<name>.log``; the runner's wall
    and CPU seconds (model loading included) go to ``folder/logs/<name>.json``."""
    log = folder / "logs" / f"{spec.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as sink:
        start = time.perf_counter()
        cpu = cpu_seconds(runner_command(spec, folder, options), sink)
        wall = time.perf_counter() - start
        cpu_seconds([sys.executable, "-m", "rewards.shapes", str(folder / spec.name)], sink)
    log.with_suffix(".json").write_text(json.dumps({"wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}))
    print(f"shapes: {spec.name} done in {wall:.0f} s ({cpu:.0f} CPU s)", flush=True)


def run_all(specs: Sequence[Spec], folder: Path, options: Sequence[str], jobs: int) -> None:
    """Every run, ``jobs`` at a time, the cheap ``base`` last so the pool ends evenly."""
    order = sorted(specs, key=lambda s: s.name == "base")
    with ThreadPoolExecutor(jobs) as pool:
        futures = {s.name: pool.submit(run_one, s, folder, options) for s in order}
    failed = [f"{name}: {f.exception()}" for name, f in futures.items() if f.exception() is not None]
    if failed:
        raise SystemExit("shapes: runs failed:\n  " + "\n  ".join(failed))


def load_views(specs: Sequence[Spec], folder: Path) -> dict[str, report.RunView]:
    return {s.name: report.load(folder / s.name) for s in specs if (folder / s.name).is_dir()}


def section(title: str, text: str, table: stats.Table) -> str:
    return f"## {title}\n\n{text}\n\n{report.md_table(*table)}"


def main_report(specs: Sequence[Spec], folder: Path, docs: Path, resamples: int) -> list[str]:
    """The main sections of the page; also ``folder/report.html`` (``milr.report``) and the curve SVG beside ``docs``."""
    views = load_views(specs, folder)
    report.main([*(str(v.run.folder) for v in views.values()), "--out", str(folder), "--bootstrap", str(resamples)])
    curve, diffs = stats.curve_table(views, BASELINES[0], resamples)
    _, diffs_think = stats.curve_table(views, BASELINES[1], resamples)
    svg = docs.with_name(docs.stem + "_curve.svg")
    svg.write_text(report.svg_chart(stats.curve_series(views), "accuracy against reward calls", xlabel="reward calls per prompt"))
    text_runs = {n: v for n, v in views.items() if (v.run.config.get("model") or {}).get("mode") != "image" and n not in ("base", "best_of_n")}
    return [
        section("Accuracy", "Share of correct selected images (exact Shapes detector, GenEval's rules) per tag; GenEval mean over "
                "the six GenEval tags, `knowledge` apart. Differences are paired by prompt and seed: per prompt the mean over "
                "its seeds, 95 % percentile bootstrap over prompts.", stats.accuracy_table(views, BASELINES, resamples)),
        section("Accuracy versus reward calls", "Accuracy (all tags) had the run stopped after b reward calls, from the traces: "
                "any of the first b images correct for `select: best`; the latest image for `select: last` (the reference "
                "preset), which on this 0/1 reward with the stop threshold 0.9 is the same, as a prompt stops at its first "
                f"correct image. ![curve]({svg.name})", curve)
        + "\n" + report.md_table(*diffs) + "\n" + report.md_table(*diffs_think),
        section("Seconds per image", "Amortised over each run (batch of 32, one thread each, the command's runs two at a "
                "time). CPU s is the runner process's own cost (model loading included) and does not depend on what else ran; "
                "wall s and its split (model loading excluded; the sums of the runner's TensorBoard `time/*` scalars) grow "
                "with whatever shared the cores.", stats.time_table(views, folder / "tensorboard", folder / "logs")),
        section("Is the text latent doing anything?", "Selected images whose think text differs from stage 0's, and for those "
                "whether the plan the text spells out (rendered exactly) satisfies the prompt before and after.", stats.text_table(text_runs)),
        section("Image identity", "Selected images byte-identical between the update towards R and towards 1 − R, same prompt "
                "and seed. A correct stage-0 image ends both runs at once, so the telling share is among stage-0 failures.",
                stats.identity_table(views, IDENTITY_PAIRS)),
    ]


def direction_report(specs: Sequence[Spec], folder: Path, resamples: int) -> list[str]:
    views = load_views(specs, folder)
    return [section("Does the direction of the update matter?", "With the GenEval reward (0/1) and the stop threshold neither "
                    "control can answer this: the reference update towards 1 − R has advantage −R = 0 on every wrong image, so it "
                    "never moves before it stops, and rloo with K = 2 moves only when exactly one sample is right, when it stops. "
                    "Here the reward is graded (`soft: true`, the share of satisfied clauses) and there is no threshold, so every "
                    "prompt takes every step and both directions move the latents; one seed, the first prompts of each tag, "
                    "differences towards R minus towards 1 − R paired by prompt. Accuracy is the exact GenEval rule on the image "
                    "selected by the graded reward.", stats.direction_table(views, IDENTITY_PAIRS, resamples)),
            section("Image identity, graded reward", "As above, for these runs.", stats.identity_table(views, IDENTITY_PAIRS)),
            section("Accuracy, graded reward", "The selected image's accuracy per tag (exact rule).",
                    stats.accuracy_table(views, ("best_of_n",), resamples))]


def write_readme_table(specs: Sequence[Spec], folder: Path, resamples: int, readme: Path = README) -> None:
    """Replace the README's table between ``README_MARKERS`` with this run's headline table."""
    begin, end = README_MARKERS
    text = readme.read_text()
    if begin not in text or end not in text:
        raise ValueError(f"{readme} has no {begin.strip()} ... {end} block to write the table into")
    table = report.md_table(*stats.headline_table(load_views(specs, folder), HEADLINE, BASELINES[:2], folder / "logs", resamples))
    head, rest = text.split(begin, 1)
    readme.write_text(head + begin + table + end + rest.split(end, 1)[1])


def ablation_report(specs: Sequence[Spec], folder: Path, resamples: int) -> list[str]:
    views = load_views(specs, folder)
    return [section("Ablations", "MILR (reference estimator, mode both), one setting changed per run, one seed, on the first "
                    "prompts of each tag; differences paired by prompt against `default`.",
                    stats.ablation_table(views, {s.name: s.setting for s in specs}, "default", resamples))]


def parse(argv: Optional[Sequence[str]]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="python -m milr.experiments.shapes", description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("root", type=Path, help="folder for the run folders (ROOT/main, ROOT/direction, ROOT/ablations)")
    parser.add_argument("--quick", action="store_true", default=os.environ.get("MILR_SHAPES_QUICK") == "1",
                        help="2 prompts per tag, 1 ablation prompt per tag, one seed; the page goes to ROOT (env MILR_SHAPES_QUICK=1)")
    parser.add_argument("--part", choices=(*PARTS, "all"), default="all")
    parser.add_argument("--seeds", type=int, default=None, help="repeats (seeds) per prompt in the main runs (default 3; quick 1)")
    parser.add_argument("--per_tag", type=int, default=None, help="main runs on the first N prompts of each tag (default all; quick 2)")
    parser.add_argument("--ablation_per_tag", type=int, default=None, help="ablations and the direction check on the first N prompts of each tag, one seed (default 20; quick 1)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (one thread each)")
    parser.add_argument("--docs", type=Path, default=None, help=f"the Markdown page (default {DOCS.relative_to(REPO)}; quick: ROOT/shapes_experiment.md)")
    parser.add_argument("--report_only", action="store_true", help="rewrite the report from the run folders, run nothing")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples")
    args, options = parser.parse_known_args(argv)
    for name, default in SIZES[args.quick].items():
        setattr(args, name, getattr(args, name) or default)
    args.docs = args.docs or (args.root / "shapes_experiment.md" if args.quick else DOCS)
    return args, options


def command_line(args: argparse.Namespace, options: Sequence[str]) -> str:
    """The command that regenerates the page, ROOT standing for the run folder's root: the
    options that change what runs, none that only say where things go."""
    flags = [f"--part {args.part}"] * (args.part != "all") + ["--quick"] * args.quick
    flags += [f"--{name} {getattr(args, name)}" for name, default in SIZES[args.quick].items() if getattr(args, name) != default]
    flags += list(options)
    return " ".join(["python -m milr.experiments.shapes ROOT", *flags])


def main(argv: Optional[Sequence[str]] = None) -> Path:
    args, options = parse(argv)
    root = args.root.resolve()
    config = resolved_config(options)
    model, prompts = config["model"], Path(config["data"]["path"])
    budget = model["max_steps"] + 1
    parts = PARTS if args.part == "all" else (args.part,)
    main_options = [*options, "--data.repeats", str(args.seeds)]
    if args.per_tag:
        main_options += ["--data.path", str(per_tag_subset(prompts, args.per_tag, root / "main" / "prompts.jsonl"))]
    subset = lambda part: [*options, "--data.path", str(per_tag_subset(prompts, args.ablation_per_tag, root / part / "prompts.jsonl"))]  # noqa: E731
    runs = {"main": (main_specs(model["max_steps"]), main_options), "direction": (direction_specs(model["max_steps"]), subset("direction")),
            "ablations": (ablation_specs(model), subset("ablations"))}
    print(f"shapes: budget {budget} reward calls per prompt, {args.seeds} seed(s); rloo: K={RLOO_K}, max_steps {rloo_steps(budget)}", flush=True)
    if not args.report_only:
        for part in parts:
            run_all(runs[part][0], root / part, runs[part][1], args.jobs)
    args.docs.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = model["backbone"]["init_args"]["name_or_path"]
    page = [f"# The Shapes experiment\n\nRegenerated by `{command_line(args, options)}` from the run folders under "
            f"`ROOT`. Model `{checkpoint}`, prompts `{prompts}`"
            f"{f' (first {args.per_tag} per tag)' if args.per_tag else ''}, {args.seeds} seed(s), at most {budget} reward calls "
            f"per prompt for every method (rloo: {RLOO_K} samples per step, {reward_call_budget(rloo_steps(budget), 'rloo', RLOO_K)} calls).\n"]
    reports = {"main": lambda specs, folder: main_report(specs, folder, args.docs, args.bootstrap),
               "direction": lambda specs, folder: direction_report(specs, folder, args.bootstrap),
               "ablations": lambda specs, folder: ablation_report(specs, folder, args.bootstrap)}
    for part in parts:
        page += reports[part](runs[part][0], root / part)
    if "main" in parts and not (args.quick or args.per_tag or options) and args.docs == DOCS:
        write_readme_table(runs["main"][0], root / "main", args.bootstrap)
        print(f"shapes: wrote the table in {README}", flush=True)
    args.docs.write_text("\n".join(page))
    print(f"shapes: wrote {args.docs}", flush=True)
    return args.docs


if __name__ == "__main__":
    main()
