"""Prompt-file loaders: plain text, GenEval, T2I-CompBench and WISE, each to ``list[Prompt]``.

``Prompt.index`` is the item's position in its source (0-based); ``Prompt.key`` (the output
folder's name, see ``data.prompt``) is built from it, the T2I-CompBench category or the WISE
``prompt_id``, so resume finds the same folder in every run. Line-based files skip
blank lines, and the index counts non-empty lines only. The official files have no blank
lines, so for them the index is the line number (GenEval: "the index-th line of
evaluation_metadata.jsonl").

Bad input raises ``ValueError`` naming the file and line (or item), so a broken prompt file
fails at load time, not hours into a run. A relative path missing from the working directory
is looked up next to the ``data`` package (``data.bundled``), where the benchmark files ship.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from data.bundled import resolve_path
from data.prompt import Prompt

#: default limit on prompt length; a longer "prompt" is almost surely a wrong file or column
MAX_CHARS = 2000

#: T2I-CompBench categories as spelled in its file names (``<category>_val*.txt``)
T2I_COMPBENCH_CATEGORIES = (
    "color", "shape", "texture", "spatial", "non_spatial", "complex", "3d_spatial", "numeracy",
)


def _make_prompt(text: Any, index: int, metadata: dict[str, Any], where: str, max_chars: int, key: str = "") -> Prompt:
    """Build a ``Prompt``, turning any problem into an error that says ``where`` it came from."""
    if not isinstance(text, str):
        raise ValueError(f"{where}: prompt must be a string, got {type(text).__name__}")
    try:
        prompt = Prompt(text=text, index=index, metadata=metadata, key=key)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from err
    if len(text) > max_chars:
        raise ValueError(
            f"{where}: prompt {index} is {len(text)} characters long, over max_chars={max_chars}"
        )
    return prompt


def _read_text(path: str | Path) -> str:
    path = resolve_path(path, what="prompt file")
    if not path.is_file():
        raise FileNotFoundError(f"prompt file not found: {path} is not a file")
    # utf-8-sig: tolerate a byte-order mark written by some editors
    return path.read_text(encoding="utf-8-sig")


def _non_empty_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, stripped_line)`` for the non-blank lines (line numbers 1-based).

    ``splitlines`` also drops the ``\\r`` of CRLF files (most T2I-CompBench files are CRLF).
    """
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        if line.strip():
            yield lineno, line.strip()


def _require_prompts(prompts: list[Prompt], source: str | Path) -> list[Prompt]:
    if not prompts:
        raise ValueError(f"{source}: contains no prompts")
    return prompts


def load_text(path: str | Path, *, max_chars: int = MAX_CHARS) -> list[Prompt]:
    """One prompt per line; blank lines are skipped and do not count towards the index."""
    prompts = [
        _make_prompt(text, index, {"prompt": text}, f"{path}:{lineno}", max_chars)
        for index, (lineno, text) in enumerate(_non_empty_lines(path))
    ]
    return _require_prompts(prompts, path)


def load_prompt_list(texts: Sequence[str], *, max_chars: int = MAX_CHARS) -> list[Prompt]:
    """Prompts given directly (e.g. on the command line); the index is the position in the list."""
    if isinstance(texts, str):
        raise ValueError("prompt list: expected a list of prompts, got a single string")
    prompts = [
        _make_prompt(text, index, {"prompt": text}, f"prompt list item {index}", max_chars)
        for index, text in enumerate(texts)
    ]
    return _require_prompts(prompts, "prompt list")


def load_geneval(path: str | Path, *, max_chars: int = MAX_CHARS) -> list[Prompt]:
    """GenEval ``evaluation_metadata.jsonl``: one JSON object per line; metadata = that object.

    The GenEval evaluator reads ``include``/``exclude``/``tag`` from the metadata, and the
    output folder ``<index:05d>`` must match the line of this file the prompt came from.
    """
    prompts = []
    for index, (lineno, line) in enumerate(_non_empty_lines(path)):
        where = f"{path}:{lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: malformed JSON ({err.msg})") from err
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
        if "prompt" not in record:
            raise ValueError(f"{where}: missing 'prompt' key")
        prompts.append(_make_prompt(record["prompt"], index, record, where, max_chars))
    return _require_prompts(prompts, path)


def t2i_compbench_category(path: str | Path) -> str:
    """The category a T2I-CompBench file holds, from its name.

    ``color_val.txt`` -> "color", ``color_val_seen.txt`` -> "color", ``complex_val_action.txt``
    -> "complex", ``3d_spatial_val.txt`` -> "3d_spatial", ``non_spatial_val.txt`` -> "non_spatial".
    """
    stem = Path(path).stem
    matches = [c for c in T2I_COMPBENCH_CATEGORIES if stem == c or stem.startswith(c + "_")]
    if not matches:
        raise ValueError(
            f"{path}: cannot tell the T2I-CompBench category from the file name; expected "
            f"<category>_val*.txt with category one of {', '.join(T2I_COMPBENCH_CATEGORIES)}"
        )
    return max(matches, key=len)  # longest wins should names ever nest


def load_t2i_compbench(path: str | Path, *, max_chars: int = MAX_CHARS) -> list[Prompt]:
    """T2I-CompBench ``<category>_val*.txt``: one prompt per line; the category comes from the name."""
    category = t2i_compbench_category(path)
    prompts = [
        _make_prompt(text, index, {"prompt": text, "category": category}, f"{path}:{lineno}", max_chars, f"{category}_{index:05d}")
        for index, (lineno, text) in enumerate(_non_empty_lines(path))
    ]
    return _require_prompts(prompts, path)


def load_wise(path: str | Path, *, max_chars: int = MAX_CHARS) -> list[Prompt]:
    """WISE json: a list of ``{"Prompt", "Explanation", "Category", "Subcategory", "prompt_id"}``.

    Metadata is the object plus lowercase aliases of its keys (``prompt``, ``explanation``,
    ``category``, ...), so evaluators need not care which spelling a WISE release used.
    Note the index is the position in the list; WISE names images after ``prompt_id``.
    """
    try:
        items = json.loads(_read_text(path))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}: malformed JSON ({err.msg})") from err
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected a JSON list of prompt objects, got {type(items).__name__}")
    prompts = []
    for index, item in enumerate(items):
        where = f"{path} item {index}"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(item).__name__}")
        metadata = {**item, **{key.lower(): value for key, value in item.items() if key.lower() not in item}}
        if "prompt" not in metadata:
            raise ValueError(f"{where}: missing 'Prompt' key")
        prompt_id = metadata.get("prompt_id")
        if prompt_id is not None and not (isinstance(prompt_id, int) or str(prompt_id).isdigit()):
            raise ValueError(f"{where}: prompt_id must be an integer, got {prompt_id!r}")
        key = f"wise_{int(prompt_id):04d}" if prompt_id is not None else ""
        prompts.append(_make_prompt(metadata["prompt"], index, metadata, where, max_chars, key))
    return _require_prompts(prompts, path)


LOADERS: dict[str, Callable[..., list[Prompt]]] = {
    "text": load_text,
    "geneval": load_geneval,
    "t2i_compbench": load_t2i_compbench,
    "wise": load_wise,
}


def infer_format(path: str | Path) -> str:
    """Guess the format from the file name: .jsonl -> geneval, .json -> wise,
    ``*_val*.txt`` or a .txt inside a ``t2i_compbench`` folder -> t2i_compbench, other .txt -> text."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return "geneval"
    if suffix == ".json":
        return "wise"
    if suffix == ".txt":
        in_compbench = any(part.lower() == "t2i_compbench" for part in path.parent.parts)
        return "t2i_compbench" if in_compbench or re.search(r"_val(_|$)", path.stem) else "text"
    raise ValueError(
        f"{path}: cannot infer the prompt format from the extension {suffix or '(none)'!r}; "
        f"pass format= one of {', '.join(LOADERS)}"
    )


def load_prompts(path: str | Path, format: str = "auto", *, max_chars: int = MAX_CHARS) -> list[Prompt]:
    """Load a prompt file in ``format`` (``"auto"``: by file name, see ``infer_format``)."""
    if format == "auto":
        format = infer_format(path)
    if format not in LOADERS:
        raise ValueError(f"unknown prompt format {format!r}; expected 'auto' or one of {', '.join(LOADERS)}")
    return LOADERS[format](path, max_chars=max_chars)
