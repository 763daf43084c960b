"""WISE (PKU-YuanGroup/WISE): a VLM judge reads the prompt, its hidden "explanation" and the image.

``protocol: legacy`` (default; the paper's and MILR's WISE) asks for Consistency, Realism and
Aesthetic Quality in 0-2 with the official ``WISE_legacy/gpt_eval.py`` prompt and scores
WiScore = (0.7·C + 0.2·R + 0.1·A) / 2. ``protocol: verified`` is WISE_Verified's binary
``Score: 0/1`` judge. The judge is GPT-4o (or any OpenAI-compatible endpoint, e.g. vLLM) or a
local Qwen2.5-VL. Category/overall aggregation (``Calculate.py`` / ``calculate_verified.py``)
are pure functions; ``python -m rewards.wise RUN_DIR`` prints them for the judge's scores a
run stored with its selected images, ``python -m rewards.wise scores.jsonl`` for score files.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Literal, Optional, Sequence

import torch
from PIL import Image

from data.prompt import Prompt
from milr.results.export import wise_rows
from milr.results.official import ImageScore, OfficialScore
from milr.results.runs import Run, read_run
from rewards.base import Reward, RewardOutput, register
from rewards.judges import Conversation, Judge, OpenAIJudge, QwenVLJudge, conversation

Protocol = Literal["legacy", "verified"]

# The official WISE judge prompts, verbatim (build_evaluation_messages of the WISE repo,
# https://github.com/PKU-YuanGroup/WISE, legacy and verified), with the f-string
# fields renamed to {prompt} and {explanation}. Trailing spaces on some lines are part of them.
LEGACY_SYSTEM = 'You are a professional Vincennes image quality audit expert, please evaluate the image quality strictly according to the protocol.'
LEGACY_TEMPLATE = (
    'Please evaluate strictly and return ONLY the three scores as requested.\n'
    '\n'
    '# Text-to-Image Quality Evaluation Protocol\n'
    '\n'
    '## System Instruction\n'
    'You are an AI quality auditor for text-to-image generation. Apply these rules with ABSOLUTE RUTHLESSNESS. Only images meeting the HIGHEST standards should receive top scores.\n'
    '\n'
    '**Input Parameters**  \n'
    "- PROMPT: [User's original prompt to]  \n"
    '- EXPLANATION: [Further explanation of the original prompt] \n'
    '---\n'
    '\n'
    '## Scoring Criteria\n'
    '\n'
    '**Consistency (0-2):**  How accurately and completely the image reflects the PROMPT.\n'
    '* **0 (Rejected):**  Fails to capture key elements of the prompt, or contradicts the prompt.\n'
    "* **1 (Conditional):** Partially captures the prompt. Some elements are present, but not all, or not accurately.  Noticeable deviations from the prompt's intent.\n"
    '* **2 (Exemplary):**  Perfectly and completely aligns with the PROMPT.  Every single element and nuance of the prompt is flawlessly represented in the image. The image is an ideal, unambiguous visual realization of the given prompt.\n'
    '\n'
    '**Realism (0-2):**  How realistically the image is rendered.\n'
    '* **0 (Rejected):**  Physically implausible and clearly artificial. Breaks fundamental laws of physics or visual realism.\n'
    '* **1 (Conditional):** Contains minor inconsistencies or unrealistic elements.  While somewhat believable, noticeable flaws detract from realism.\n'
    '* **2 (Exemplary):**  Achieves photorealistic quality, indistinguishable from a real photograph.  Flawless adherence to physical laws, accurate material representation, and coherent spatial relationships. No visual cues betraying AI generation.\n'
    '\n'
    '**Aesthetic Quality (0-2):**  The overall artistic appeal and visual quality of the image.\n'
    '* **0 (Rejected):**  Poor aesthetic composition, visually unappealing, and lacks artistic merit.\n'
    '* **1 (Conditional):**  Demonstrates basic visual appeal, acceptable composition, and color harmony, but lacks distinction or artistic flair.\n'
    '* **2 (Exemplary):**  Possesses exceptional aesthetic quality, comparable to a masterpiece.  Strikingly beautiful, with perfect composition, a harmonious color palette, and a captivating artistic style. Demonstrates a high degree of artistic vision and execution.\n'
    '\n'
    '---\n'
    '\n'
    '## Output Format\n'
    '\n'
    '**Do not include any other text, explanations, or labels.** You must return only three lines of text, each containing a metric and the corresponding score, for example:\n'
    '\n'
    '**Example Output:**\n'
    'Consistency: 2\n'
    'Realism: 1\n'
    'Aesthetic Quality: 0\n'
    '\n'
    '---\n'
    '\n'
    '**IMPORTANT Enforcement:**\n'
    '\n'
    "Be EXTREMELY strict in your evaluation. A score of '2' should be exceedingly rare and reserved only for images that truly excel and meet the highest possible standards in each metric. If there is any doubt, downgrade the score.\n"
    '\n'
    "For **Consistency**, a score of '2' requires complete and flawless adherence to every aspect of the prompt, leaving no room for misinterpretation or omission.\n"
    '\n'
    "For **Realism**, a score of '2' means the image is virtually indistinguishable from a real photograph in terms of detail, lighting, physics, and material properties.\n"
    '\n'
    "For **Aesthetic Quality**, a score of '2' demands exceptional artistic merit, not just pleasant visuals.\n"
    '\n'
    '--- \n'
    'Here are the Prompt and EXPLANATION for this evaluation:\n'
    'PROMPT: "{prompt}"\n'
    'EXPLANATION: "{explanation}"\n'
    'Please strictly adhere to the scoring criteria and follow the template format when providing your results.'
)
VERIFIED_SYSTEM = 'You are a professional text-to-image quality auditor. Evaluate the image strictly according to the protocol.'
VERIFIED_TEMPLATE = (
    'Please evaluate this generated image for the WISE benchmark and return ONLY one binary score.\n'
    '\n'
    '# WISE Text-to-Image Evaluation Protocol\n'
    '\n'
    '## What WISE Is Evaluating\n'
    'WISE is a knowledge-intensive text-to-image benchmark. Many prompts do not directly state the final visual answer. Instead, the model must use commonsense, cultural, scientific, spatial, or temporal knowledge to infer what should appear in the image.\n'
    '\n'
    'Your job is not to judge whether the image is beautiful. Your job is to judge whether the generated image correctly realizes the knowledge-based meaning of the prompt and is visually usable.\n'
    '\n'
    '## Input Fields\n'
    '\n'
    '**PROMPT**\n'
    'The original text-to-image prompt given to the image generation model. It may contain an implicit clue rather than the explicit final answer.\n'
    '\n'
    '**EXPLANATION**\n'
    'The reference interpretation used for judging. It explains the intended answer, the required knowledge reasoning chain, and the visual evidence that should appear in a correct image. Treat EXPLANATION as the ground-truth judging guide.\n'
    '\n'
    'For example:\n'
    '- If PROMPT says "the round pastry commonly shared during Mid-Autumn Festival family gatherings", EXPLANATION may specify mooncakes. A correct image should show mooncakes, not just any festival food.\n'
    '- If PROMPT says "a plant kept for many days beside a bright one-sided window", EXPLANATION may specify phototropism. A correct image should show the plant bending toward the light source.\n'
    '- If PROMPT says "a street in New York when it is midnight in Beijing", EXPLANATION may specify the corresponding local time and expected lighting/activity. A correct image should reflect that inferred local time, not simply show Beijing or generic night.\n'
    '\n'
    '## How To Judge\n'
    '\n'
    'Evaluate the image using these checks:\n'
    '1. Does the image contain the main objects or scene required by the PROMPT?\n'
    '2. Does it satisfy the intended knowledge-based answer described in the EXPLANATION?\n'
    '3. Are important relations correct, such as spatial layout, temporal state, physical effect, biological behavior, cultural object, or scientific phenomenon?\n'
    '4. Is the image visually usable for judging, without obvious collapse, severe deformation, unreadable main objects, or major artifacts?\n'
    '\n'
    '## Binary Score\n'
    '\n'
    '**Score: 1**\n'
    'Give 1 only when both conditions are met:\n'
    '- The image is semantically correct according to both PROMPT and EXPLANATION.\n'
    '- The image has no obvious generation failure that prevents reliable judging.\n'
    '\n'
    'Minor aesthetic weakness, ordinary composition, non-photorealistic style, or lack of artistic beauty should not by itself cause rejection if the semantic target is correct and the image is clear.\n'
    '\n'
    '**Score: 0**\n'
    'Give 0 if any of the following applies:\n'
    '- The image misses the intended answer in EXPLANATION.\n'
    '- The image only follows surface words in PROMPT but fails the required knowledge inference.\n'
    '- Key objects, attributes, states, behaviors, or relations are missing or wrong.\n'
    '- The image contradicts the prompt or explanation.\n'
    '- The main visual evidence is ambiguous enough that a human judge could not confidently verify correctness.\n'
    '- The image has obvious visual collapse, severe deformation, garbled main objects, impossible structure, or artifacts that interfere with evaluation.\n'
    '\n'
    'If there is serious doubt, return 0.\n'
    '\n'
    '## Output Format\n'
    '\n'
    'Return exactly one line and nothing else:\n'
    '\n'
    'Score: 0\n'
    '\n'
    'or\n'
    '\n'
    'Score: 1\n'
    '\n'
    '---\n'
    '\n'
    'PROMPT: "{prompt}"\n'
    'EXPLANATION: "{explanation}"\n'
    '\n'
    'Return only `Score: 0` or `Score: 1`.'
)

SCORE_KEYS = ("consistency", "realism", "aesthetic_quality")
# WISE_legacy/gpt_eval.py, verbatim (the duplicated ':' in the class is theirs)
_LEGACY_PATTERN = re.compile(r"\*{0,2}(Consistency|Realism|Aesthetic Quality)\*{0,2}\s*[::]?\s*(\d)", re.IGNORECASE)
_LEGACY_BARE_LINES = re.compile(r"(?m)^\s*([0-2])\s*$")
# vllm_eval.py (WISE_Verified)
_VERIFIED_PATTERN = re.compile(r"\*{0,2}Score\*{0,2}\s*[::]?\s*([01])\b", re.IGNORECASE)
_VERIFIED_BARE_LINES = re.compile(r"(?m)^\s*([01])\s*$")

CATEGORIES = ("CULTURE", "TIME", "SPACE", "BIOLOGY", "PHYSICS", "CHEMISTRY")
#: inclusive prompt_id ranges per category (Calculate.py / calculate_verified.py)
CATEGORY_RANGES: dict[str, dict[str, tuple[int, int]]] = {
    "legacy": {
        "CULTURE": (1, 400),
        "TIME": (401, 567),
        "SPACE": (568, 700),
        "BIOLOGY": (701, 800),
        "PHYSICS": (801, 900),
        "CHEMISTRY": (901, 1000),
    },
    "verified": {
        "CULTURE": (1, 400),
        "TIME": (401, 520),
        "SPACE": (521, 640),
        "BIOLOGY": (641, 760),
        "PHYSICS": (761, 880),
        "CHEMISTRY": (881, 1000),
    },
}
CATEGORY_WEIGHTS: dict[str, dict[str, float]] = {
    "legacy": {"CULTURE": 0.4, "TIME": 0.167, "SPACE": 0.133, "BIOLOGY": 0.1, "PHYSICS": 0.1, "CHEMISTRY": 0.1},
    "verified": {"CULTURE": 0.4, "TIME": 0.12, "SPACE": 0.12, "BIOLOGY": 0.12, "PHYSICS": 0.12, "CHEMISTRY": 0.12},
}
#: official request settings per protocol (gpt_eval.py: max_tokens 2000; vllm_eval.py: 500)
MAX_TOKENS = {"legacy": 2000, "verified": 500}


def wiscore(consistency: float, realism: float, aesthetic_quality: float) -> float:
    """WiScore = (0.7·C + 0.2·R + 0.1·A) / 2, in [0, 1] for scores in 0..2."""
    return (0.7 * consistency + 0.2 * realism + 0.1 * aesthetic_quality) / 2


def parse_legacy_scores(answer: str) -> dict[str, float]:
    """The three 0-2 scores, as ``gpt_eval.py`` reads them.

    The official regex (the last match per metric wins); only if it matches nothing, three bare
    lines of 0-2 read as C, R, A. A missing metric is a ``ValueError`` (the official script re-asks
    up to 3 times, then skips the image). Unlike the official ``(\\d)``, a value above 2 is also a
    ``ValueError``: it would push WiScore outside [0, 1].
    """
    scores = {key.lower().replace(" ", "_"): float(value) for key, value in _LEGACY_PATTERN.findall(answer)}
    if not scores and len(bare := _LEGACY_BARE_LINES.findall(answer)) >= 3:
        scores = dict(zip(SCORE_KEYS, map(float, bare[:3])))
    missing = [key for key in SCORE_KEYS if key not in scores]
    if missing:
        raise ValueError(f"WISE judge answer lacks {missing}: {answer[:200]!r}")
    if any(scores[key] > 2 for key in SCORE_KEYS):
        raise ValueError(f"WISE judge answer has a score outside 0-2: {answer[:200]!r}")
    return {key: scores[key] for key in SCORE_KEYS}


def parse_verified_score(answer: str) -> float:
    """The binary ``Score: 0/1`` of WISE_Verified; ``<think>`` blocks are dropped first, as vllm_eval.py does."""
    answer = re.sub(r"</think>\s*", "", re.sub(r"<think>.*?</think>\s*", "", answer, flags=re.DOTALL)).strip()
    if match := _VERIFIED_PATTERN.search(answer):
        return float(match.group(1))
    if len(bare := _VERIFIED_BARE_LINES.findall(answer)) == 1:
        return float(bare[0])
    raise ValueError(f"WISE_Verified judge answer has no 'Score: 0/1': {answer[:200]!r}")


def build_messages(prompt: str, explanation: str, image: Image.Image, protocol: Protocol = "legacy") -> Conversation:
    """System turn, then the protocol text followed by the image (the official order)."""
    system, template = (LEGACY_SYSTEM, LEGACY_TEMPLATE) if protocol == "legacy" else (VERIFIED_SYSTEM, VERIFIED_TEMPLATE)
    return conversation(template.format(prompt=prompt, explanation=explanation), image, system=system)


def explanation_of(prompt: Prompt) -> str:
    """The ground-truth explanation the judge is shown (WISE files call it ``Explanation``)."""
    for key in ("explanation", "Explanation"):
        if isinstance(prompt.metadata.get(key), str):
            return prompt.metadata[key]
    raise ValueError(f"prompt {prompt.index}: WISE needs metadata['explanation'] (the benchmark's Explanation)")


def category_of(prompt_id: int, protocol: Protocol = "legacy") -> Optional[str]:
    for category, (low, high) in CATEGORY_RANGES[protocol].items():
        if low <= prompt_id <= high:
            return category
    return None


def category_scores(scored: Iterable[tuple[int, float]], protocol: Protocol = "legacy") -> dict[str, tuple[float, int]]:
    """``{category: (mean score, n)}`` over ``(prompt_id, per-image score)`` pairs; ids outside the ranges are ignored."""
    groups: dict[str, list[float]] = defaultdict(list)
    for prompt_id, value in scored:
        if (category := category_of(prompt_id, protocol)) is not None:
            groups[category].append(value)
    return {c: (sum(groups[c]) / len(groups[c]), len(groups[c])) for c in CATEGORIES if groups[c]}


def overall_score(categories: dict[str, float], protocol: Protocol = "legacy") -> float:
    """The official weighted sum over the six categories; all six are required."""
    if missing := [c for c in CATEGORIES if c not in categories]:
        raise ValueError(f"overall WISE score needs all six categories; missing {missing}")
    return sum(CATEGORY_WEIGHTS[protocol][c] * categories[c] for c in CATEGORIES)


def summarize(rows: Iterable[dict[str, Any]], protocol: Protocol = "legacy") -> dict[str, Any]:
    """Category scores and, when every prompt_id 1..1000 is present (Calculate.py's ``--category all``), the overall.

    Rows are the official score lines: ``{"prompt_id", "consistency", "realism", "aesthetic_quality"}``
    (legacy) or ``{"prompt_id", "score"}`` (verified); this reward's details have the same keys.
    """
    scored, present = [], set()
    for row in rows:
        if not isinstance(prompt_id := row.get("prompt_id"), int):
            continue  # as Calculate.py: a row without an integer prompt_id is skipped
        present.add(prompt_id)
        value = wiscore(*(row[k] for k in SCORE_KEYS)) if protocol == "legacy" else float(row["score"])
        scored.append((prompt_id, value))
    categories = category_scores(scored, protocol)
    missing = sorted(set(range(1, 1001)) - present)
    complete = not missing and len(categories) == len(CATEGORIES)
    overall = overall_score({c: s for c, (s, _) in categories.items()}, protocol) if complete else None
    return {"categories": categories, "overall": overall, "missing_prompt_ids": missing}


@register("wise")
class WiseReward(Reward):
    """WISE judge as a reward: WiScore (legacy) or the binary verified score, per image.

    ``judge: openai`` sends the official messages to ``{base_url}/chat/completions`` as ``model``
    with the key from the environment variable ``api_key_env``; ``judge: local`` runs
    ``model_name_or_path`` (a Qwen2.5-VL) greedily. Unparseable answers are re-asked
    ``parse_attempts`` times (remote judges; greedy local decoding would repeat itself), then an error.
    """

    def __init__(
        self,
        judge: Literal["openai", "local"] = "openai",
        protocol: Protocol = "legacy",
        model: str = "gpt-4o-2024-05-13",
        base_url: str = "https://api.openai.com/v1",
        api_key_env: str = "OPENAI_API_KEY",
        model_name_or_path: str = "Qwen/Qwen2.5-VL-7B-Instruct",
        max_tokens: Optional[int] = None,
        temperature: float = 0.0,
        timeout: float = 120.0,
        max_retries: int = 5,
        backoff: float = 2.0,
        parse_attempts: int = 3,
        max_workers: int = 4,
        batch_size: int = 1,
        disable_thinking: bool = False,
        cache_dir: Optional[str] = None,
    ) -> None:
        if protocol not in MAX_TOKENS:
            raise ValueError(f"protocol must be 'legacy' or 'verified', got {protocol!r}")
        self.protocol = protocol
        max_tokens = max_tokens or MAX_TOKENS[protocol]
        self.judge: Judge
        if judge == "openai":
            self.judge = OpenAIJudge(
                model,
                base_url=base_url,
                api_key_env=api_key_env,
                temperature=temperature,
                max_tokens=max_tokens,
                timeout=timeout,
                max_retries=max_retries,
                backoff=backoff,
                max_workers=max_workers,
                # vllm_eval.py: Qwen3.5 served by vLLM answers without its thinking block
                extra_body={"chat_template_kwargs": {"enable_thinking": False}} if disable_thinking else None,
                parse_attempts=parse_attempts,
                cache_dir=cache_dir,
            )
        elif judge == "local":
            self.judge = QwenVLJudge(
                model_name_or_path, what="WISE judge", max_new_tokens=max_tokens, batch_size=batch_size, cache_dir=cache_dir
            )
        else:
            raise ValueError(f"judge must be 'openai' or 'local', got {judge!r}")

    def setup(self, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, backbone: Any = None) -> None:
        super().setup(device=device, dtype=dtype, backbone=backbone)
        if isinstance(self.judge, QwenVLJudge):
            self.judge.place(self.device, self.dtype)

    def evaluate(self, images: list[Image.Image], prompts: list[Prompt]) -> RewardOutput:
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images for {len(prompts)} prompts")
        messages = [build_messages(p.text, explanation_of(p), image, self.protocol) for image, p in zip(images, prompts)]
        parse = parse_legacy_scores if self.protocol == "legacy" else parse_verified_score
        scores, details = [], []
        for prompt, (parsed, answer) in zip(prompts, self.judge.ask(messages, parse)):
            detail: dict[str, Any] = {"prompt_id": prompt.metadata.get("prompt_id"), "judge": self.judge.model}
            if self.protocol == "legacy":
                detail.update(parsed, wiscore=wiscore(**parsed))
                scores.append(detail["wiscore"])
            else:
                detail["score"] = parsed
                scores.append(parsed)
            details.append({**detail, "answer": answer})
        return RewardOutput(scores=torch.tensor(scores, dtype=torch.float32), details=details)


def _print_summary(summary: dict[str, Any]) -> None:
    for category, (value, n) in summary["categories"].items():
        print(f"{category:<10} {value:.2f}  (n={n})")
    if summary["overall"] is not None:
        print(f"{'Overall':<10} {summary['overall']:.2f}")
    else:
        missing = summary["missing_prompt_ids"]
        print(f"Overall    not computed: {len(missing)} prompt_ids missing (first: {missing[:10]})")


def protocol_of(rows: Sequence[dict[str, Any]]) -> Protocol:
    """``legacy`` for C/R/A rows, ``verified`` for binary ``score`` rows; a mix is an error."""
    kinds = {"legacy" if all(k in row for k in SCORE_KEYS) else "verified" if "score" in row else None for row in rows}
    if len(kinds) != 1 or None in kinds:
        raise ValueError("score rows must all be legacy (consistency, realism, aesthetic_quality) or all verified (score)")
    return kinds.pop()


def evaluate_run(run: Run, repeat: int = 0) -> tuple[dict[str, Any], OfficialScore]:
    """Calculate.py's summary of the judge's score rows stored with a run's selected images."""
    scored = wise_rows(run, repeat)
    if not scored or scored[0][2] is None:
        raise ValueError(f"{run.folder}: the selected images carry no WISE judge scores (was the run optimised with the WISE reward?)")
    rows = [row for _, _, row in scored]
    protocol = protocol_of(rows)
    summary = summarize(rows, protocol)
    value = (lambda row: wiscore(*(row[k] for k in SCORE_KEYS))) if protocol == "legacy" else (lambda row: row["score"])
    images = [ImageScore(p.key, repeat, category_of(pid, protocol) or "outside", value(row)) for pid, p, row in scored]
    groups = {c: {"score": v, "n": n} for c, (v, n) in summary["categories"].items()}
    note = "" if summary["overall"] is not None else f"({len(summary['missing_prompt_ids'])} of prompt_ids 1-1000 missing)"
    source = f"{protocol} judge score rows in the run's trace"
    return summary, OfficialScore("wise", source, groups, summary["overall"], images, note)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m rewards.wise RUN_DIR|scores.jsonl ...``: a run folder's stored judge rows
    (also written to ``RUN_DIR/official/wise.json``) or score JSONL files, as Calculate.py sums them."""
    parser = argparse.ArgumentParser(prog="python -m rewards.wise", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="run folders, or JSONL rows with prompt_id and the judge's scores")
    parser.add_argument("--protocol", choices=sorted(MAX_TOKENS), default=None, help="of JSONL rows; default: from the rows")
    parser.add_argument("--repeat", type=int, default=0, help="run folders: the repeat whose image WISE scores (one per prompt)")
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    for path in args.paths:
        if path.is_dir():
            summary, official = evaluate_run(read_run(path), args.repeat)
            official.write(path)
            print(f"{path}:")
            _print_summary(summary)
        else:
            rows += [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    if rows:
        _print_summary(summarize(rows, args.protocol or protocol_of([r for r in rows if isinstance(r.get("prompt_id"), int)])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
