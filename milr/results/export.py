"""Writes a run folder in the layout each benchmark's official scripts read.

``python -m milr.export {geneval,t2i_compbench,wise} RUN_DIR OUT_DIR``

- geneval: ``OUT_DIR/<index:05d>/metadata.jsonl`` + ``samples/{r:04d}.png`` (evaluate_images.py
  lists digit-named folders and digit-named PNGs).
- t2i_compbench: ``OUT_DIR/samples/{prompt}_{k:06d}.png``, k counting every image of the
  category in prompt then repeat order (the scripts read the prompt from the name before the
  first ``_`` and sort by k; 3_in_1.py pairs images i*10..i*10+9 with the i-th prompt). A run
  with several categories gets ``OUT_DIR/<category>/samples/``, one evaluator folder each.
- wise: ``OUT_DIR/{prompt_id}.png`` (one image per prompt: repeat ``--repeat``) and, when the
  run was scored by the WISE judge, its score rows ``OUT_DIR/scores.jsonl`` in gpt_eval.py's
  form, which Calculate.py reads.

OUT_DIR must be empty or absent: the official listings take every file they find, so a
stale image from another run would be scored silently.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any, Optional, Sequence

from rich.console import Console

from milr.results.runs import PromptRun, Repeat, Run, read_run

WISE_SCORE_KEYS = ("consistency", "realism", "aesthetic_quality")


def _fresh(out: Path) -> Path:
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty: the official scripts would also score what is already there")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def export_geneval(run: Run, out: Path) -> list[Path]:
    """GenEval's layout; digit keys are kept, other keys are numbered in run order."""
    _fresh(out)
    keep = all(p.key.isdigit() for p in run.prompts)
    written = []
    for i, prompt in enumerate(run.prompts):
        if not {"tag", "include"} <= set(prompt.metadata):
            raise ValueError(f"{prompt.folder}: metadata.jsonl is not a GenEval line (needs tag, include)")
        folder = out / (prompt.key if keep else f"{i:05d}")
        (folder / "metadata.jsonl").parent.mkdir(parents=True, exist_ok=True)
        (folder / "metadata.jsonl").write_text(json.dumps(prompt.metadata) + "\n")
        written += [_copy(r.sample, folder / "samples" / r.sample.name) for r in prompt.repeats]
    return written


def compbench_name(prompt: PromptRun, k: int) -> str:
    """``{prompt}_{k:06d}.png``; a prompt the scripts would misread is an error."""
    text = prompt.text
    if not text or "_" in text or "/" in text or text != text.strip():
        raise ValueError(f"{prompt.key}: T2I-CompBench reads the prompt back from the file name, so {text!r} cannot be exported")
    name = f"{text}_{k:06d}.png"
    if len(name.encode()) > 255:
        raise ValueError(f"{prompt.key}: file name for {text!r} exceeds 255 bytes")
    return name


def export_t2i_compbench(run: Run, out: Path) -> list[Path]:
    _fresh(out)
    categories: dict[Optional[str], list[PromptRun]] = {}
    for prompt in run.prompts:
        categories.setdefault(prompt.metadata.get("category"), []).append(prompt)
    if len(categories) > 1 and None in categories:
        raise ValueError("some prompts have no metadata category: cannot split the run into T2I-CompBench categories")
    written = []
    for category, prompts in categories.items():
        samples = (out if len(categories) == 1 else out / str(category)) / "samples"
        pairs = [(repeat, prompt) for prompt in prompts for repeat in prompt.repeats]
        names = [compbench_name(prompt, k) for k, (_, prompt) in enumerate(pairs)]  # all checked before writing
        written += [_copy(repeat.sample, samples / name) for (repeat, _), name in zip(pairs, names)]
    return written


def wise_row(prompt_id: int, prompt: PromptRun, repeat: Repeat) -> Optional[dict[str, Any]]:
    """gpt_eval.py's score row of the selected image (vllm_eval.py's for the verified judge), or
    ``None`` when the run's reward was not the WISE judge."""
    details = repeat.selected_details or {}
    if all(k in details for k in WISE_SCORE_KEYS):
        row: dict[str, Any] = {"prompt_id": prompt_id}
        if "Subcategory" in prompt.metadata:
            row["Subcategory"] = prompt.metadata["Subcategory"]
        return {**row, **{k: float(details[k]) for k in WISE_SCORE_KEYS}}
    if "score" in details and "judge" in details:  # WISE_Verified's binary judge (rewards.wise details)
        return {"prompt_id": prompt_id, "score": float(details["score"])}
    return None


def wise_rows(run: Run, repeat: int = 0) -> list[tuple[int, PromptRun, Optional[dict[str, Any]]]]:
    """``(prompt_id, prompt, score row)`` per prompt in prompt_id order (gpt_eval.py sorts its
    rows so); the rows are all ``None`` when the run's reward was not the WISE judge."""
    ids: dict[int, PromptRun] = {}
    for prompt in run.prompts:
        prompt_id = prompt.metadata.get("prompt_id")
        if not isinstance(prompt_id, int):
            raise ValueError(f"{prompt.folder}: WISE needs an integer metadata prompt_id, got {prompt_id!r}")
        if prompt_id in ids:
            raise ValueError(f"prompt_id {prompt_id} appears twice ({ids[prompt_id].key}, {prompt.key})")
        if repeat >= len(prompt.repeats):
            raise ValueError(f"{prompt.key} has {len(prompt.repeats)} repeat(s); repeat {repeat} does not exist")
        ids[prompt_id] = prompt
    out = [(pid, ids[pid], wise_row(pid, ids[pid], ids[pid].repeats[repeat])) for pid in sorted(ids)]
    missing = [pid for pid, _, row in out if row is None]
    if missing and len(missing) < len(out):
        raise ValueError(f"the selected images of prompt_ids {missing[:10]} have no WISE judge scores in their trace")
    return out


def export_wise(run: Run, out: Path, repeat: int = 0) -> tuple[list[Path], list[dict[str, Any]]]:
    rows = wise_rows(run, repeat)
    _fresh(out)
    images = [_copy(prompt.repeats[repeat].sample, out / f"{pid}.png") for pid, prompt, _ in rows]
    scores = [row for _, _, row in rows if row is not None]
    if scores:
        (out / "scores.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in scores))
    return images, scores


def main(argv: Optional[Sequence[str]] = None) -> list[Path]:
    parser = argparse.ArgumentParser(prog="python -m milr.export", description=__doc__.splitlines()[0])
    parser.add_argument("benchmark", choices=["geneval", "t2i_compbench", "wise"])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--repeat", type=int, default=0, help="wise: which repeat's image to export (WISE scores one per prompt)")
    args = parser.parse_args(argv)
    run, console = read_run(args.run_dir), Console()
    if args.benchmark == "geneval":
        written = export_geneval(run, args.out_dir)
        console.print(f"{len(written)} images in GenEval's layout: python evaluation/evaluate_images.py {args.out_dir} ...")
    elif args.benchmark == "t2i_compbench":
        written = export_t2i_compbench(run, args.out_dir)
        console.print(f"{len(written)} images in T2I-CompBench's layout under {args.out_dir} (--outpath of the evaluators)")
        complex_repeats = {len(p.repeats) for p in run.prompts if p.metadata.get("category") == "complex"}
        if complex_repeats - {10}:
            console.print("[yellow]note:[/] 3_in_1.py assumes 10 images per prompt of complex_val.txt, in its order")
    else:
        written, rows = export_wise(run, args.out_dir, args.repeat)
        console.print(f"{len(written)} images as <prompt_id>.png in {args.out_dir} (gpt_eval.py --image_dir)")
        if rows:
            console.print(f"{len(rows)} judge score rows: python WISE_legacy/Calculate.py {args.out_dir / 'scores.jsonl'}")
        else:
            console.print("no score rows: the run's reward was not the WISE judge; score the images with gpt_eval.py")
    return written


if __name__ == "__main__":
    main()
