"""Official benchmark scores of a run folder, shared by ``python -m rewards.{geneval,t2i_compbench,wise} RUN_DIR``.

Each command computes its benchmark's summary with its own rules and writes it as
``RUN_DIR/official/<benchmark>.json`` (``milr.results.official``), which ``milr.report`` reads
to show official scores and pair runs.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Iterator, Optional, Sequence, TypeVar

from PIL import Image, ImageOps

from data.prompt import Prompt
from milr.results.official import ImageScore, OfficialScore
from milr.results.runs import PromptRun, Repeat, Run
from rewards.base import RewardFn, score

T = TypeVar("T")


def group_means(images: Sequence[ImageScore], order: Sequence[str] = ()) -> dict[str, dict[str, float]]:
    """Mean score and count per group, groups in ``order`` first, then as first seen."""
    groups: dict[str, list[float]] = {g: [] for g in order}
    for image in images:
        groups.setdefault(image.group, []).append(image.score)
    return {g: {"score": sum(v) / len(v), "n": len(v)} for g, v in groups.items() if v}


def samples(run: Run) -> Iterator[tuple[PromptRun, Repeat]]:
    """Every selected image of the run: each prompt's repeats in order."""
    for prompt in run.prompts:
        for repeat in prompt.repeats:
            yield prompt, repeat


def selected_details(run: Run, benchmark: str, needed: Sequence[str]) -> list[tuple[PromptRun, Repeat, dict[str, Any]]]:
    """The details of each selected image as the run's own reward scored it; an image whose
    details lack ``needed`` is an error (the run was not scored by this benchmark's reward)."""
    out = []
    for prompt, repeat in samples(run):
        details = repeat.selected_details
        if details is None or not all(k in details for k in needed):
            raise ValueError(
                f"{prompt.folder} repeat {repeat.index}: the selected image's trace details have no {benchmark} "
                f"scores {list(needed)} (was the run optimised with the {benchmark} reward?); score its images instead"
            )
        out.append((prompt, repeat, details))
    return out


def score_batches(
    reward: RewardFn, items: Sequence[T], load: Callable[[T], tuple[str, Prompt]], batch_size: int, description: str
) -> list[tuple[T, float, dict[str, Any]]]:
    """Score ``items`` (``load(item)`` = image path and prompt) in batches: ``(item, score, details)``."""
    from rich.progress import track

    scored = []
    batches = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    for batch in track(batches, description=description, disable=not batches):
        images, prompts = [], []
        for path, prompt in map(load, batch):
            with Image.open(path) as file:
                images.append(ImageOps.exif_transpose(file).convert("RGB"))
            prompts.append(prompt)
        out = score(reward, images, prompts)
        scored += zip(batch, out.scores.tolist(), out.details)
    return scored


def run_details(
    run: Run, reward: Optional[RewardFn], benchmark: str, needed: Sequence[str], batch_size: int
) -> tuple[list[tuple[PromptRun, Repeat, dict[str, Any]]], str]:
    """Details of every selected image and where they come from: re-scored by ``reward``, or
    (``reward=None``) those the run's own reward stored in its trace."""
    if reward is None:
        return selected_details(run, benchmark, needed), f"details of the run's own {benchmark} reward"
    load = lambda item: (item[1].sample, prompt_of(item[0]))  # noqa: E731
    scored = score_batches(reward, list(samples(run)), load, batch_size, benchmark)
    return [(p, r, d) for (p, r), _, d in scored], f"re-scored by {type(reward).__name__}"


def add_scoring_arguments(parser: Any, reward_cls: type) -> None:
    """The options shared by the benchmark commands, plus every option of ``reward_cls``."""
    import torch

    parser.add_argument("--from_details", type=bool, default=False, help="run folder only: read the run's own reward details, load no model")
    parser.add_argument("--device", type=str, default="cuda" if torch.cuda.is_available() else "cpu")
    if "batch_size" not in inspect.signature(reward_cls).parameters:  # else the reward's own option is the batch size
        parser.add_argument("--batch_size", type=int, default=8, help="images per model batch")
    parser.add_class_arguments(reward_cls, None)


def reward_from_args(reward_cls: type, args: Any) -> Optional[Any]:
    """The reward the options describe, set up on ``--device``; ``None`` with ``--from_details``."""
    if args.from_details:
        return None
    reward = reward_cls(**{name: getattr(args, name) for name in inspect.signature(reward_cls).parameters})
    reward.setup(device=args.device)
    return reward


def prompt_of(prompt: PromptRun) -> Prompt:
    index = prompt.result.get("index")
    return Prompt(prompt.text, index if isinstance(index, int) else 0, prompt.metadata)


def print_official(official: OfficialScore, group_label: str, console: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(group_label, "score", "images", title=f"{official.benchmark} ({official.source})")
    for group, value in official.groups.items():
        table.add_row(group, f"{value['score']:.4f}", str(value["n"]))
    console.print(table)
    console.print(f"Overall: {official.overall:.4f}" if official.overall is not None else f"Overall: n/a {official.note}".rstrip())
