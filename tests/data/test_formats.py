"""Prompt-file loaders: the real benchmark files, small hand-written files, and every bad input."""

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from data.bundled import BENCHMARKS
from data.formats import (
    infer_format,
    load_geneval,
    load_prompt_list,
    load_prompts,
    load_t2i_compbench,
    load_text,
    load_wise,
    t2i_compbench_category,
)
from data.prompt import Prompt


@pytest.fixture
def wise() -> Path:
    """A clone of https://github.com/PKU-YuanGroup/WISE (not bundled: it has no licence)."""
    root = os.environ.get("MILR_WISE_DIR")
    if not root:
        pytest.skip("WISE prompts are not bundled; set MILR_WISE_DIR to a clone of PKU-YuanGroup/WISE")
    return Path(root)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    return path


# --------------------------------------------------------------------------- real benchmark files


def test_geneval_real_file_has_553_prompts_with_tags_and_line_indices():
    prompts = load_prompts(BENCHMARKS / "geneval" / "evaluation_metadata.jsonl")
    assert [p.index for p in prompts] == list(range(553))
    assert Counter(p.metadata["tag"] for p in prompts) == {
        "single_object": 80, "two_object": 99, "counting": 80, "colors": 94, "position": 100, "color_attr": 100,
    }
    assert prompts[0].metadata == {"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a photo of a bench"}
    assert all("include" in p.metadata and p.metadata["prompt"] == p.text for p in prompts)
    assert any("exclude" in p.metadata for p in prompts)
    # the same prompts, in the same order, as the plain-text generation_prompts.txt
    plain = load_prompts(BENCHMARKS / "geneval" / "generation_prompts.txt")
    assert [p.text for p in plain] == [p.text for p in prompts]
    assert plain[5].metadata == {"prompt": prompts[5].text}


@pytest.mark.parametrize(
    "name, category, count",
    [
        ("color_val.txt", "color", 300),
        ("color_val_seen.txt", "color", 200),
        ("color_val_unseen.txt", "color", 100),
        ("shape_val.txt", "shape", 300),
        ("texture_val.txt", "texture", 300),
        ("spatial_val.txt", "spatial", 300),
        ("non_spatial_val.txt", "non_spatial", 300),
        ("complex_val.txt", "complex", 300),
        ("complex_val_spatial.txt", "complex", 58),
        ("complex_val_action.txt", "complex", 212),
        ("complex_val_spatialaction.txt", "complex", 30),
        ("3d_spatial_val.txt", "3d_spatial", 300),
        ("numeracy_val.txt", "numeracy", 300),
    ],
)
def test_t2i_compbench_real_files_give_category_and_all_prompts(name, category, count):
    path = BENCHMARKS / "t2i_compbench" / name
    prompts = load_prompts(path)
    assert len(prompts) == count  # the last line has no newline and is still read
    assert [p.index for p in prompts] == list(range(count))
    assert all(p.metadata == {"prompt": p.text, "category": category} for p in prompts)
    # CRLF endings and surrounding spaces never leak into the prompt (it names the image files)
    assert all(p.text == p.text.strip() and "\r" not in p.text for p in prompts)
    raw = [line.strip() for line in path.read_bytes().decode("utf-8").splitlines()]
    assert [p.text for p in prompts] == [line for line in raw if line]


def test_t2i_compbench_real_first_prompts():
    assert load_prompts(BENCHMARKS / "t2i_compbench" / "color_val.txt")[0].text == "a green bench and a blue bowl"
    assert load_prompts(BENCHMARKS / "t2i_compbench" / "complex_val.txt")[0].text == "The red hat was on top of the brown coat rack."


def test_t2i_compbench_folder_rejects_a_file_that_is_not_a_prompt_set():
    with pytest.raises(ValueError, match=r"new_objects\.txt: cannot tell the T2I-CompBench category"):
        load_prompts(BENCHMARKS / "t2i_compbench" / "new_objects.txt")


@pytest.mark.parametrize(
    "name, count, first_id, last_id",
    [
        ("WISE_legacy/data/cultural_common_sense.json", 400, 1, 400),
        ("WISE_legacy/data/spatio-temporal_reasoning.json", 300, 401, 700),
        ("WISE_legacy/data/natural_science.json", 300, 701, 1000),
        ("WISE_legacy/data/natural_science_rewrite.json", 300, 701, 1000),
        ("data_verified/cultural_common_sense_verified.json", 400, 1, 400),
        ("data_verified/spatio-temporal_reasoning_verified.json", 240, 401, 640),
        ("data_verified/natural_science_verified.json", 360, 641, 1000),
    ],
)
def test_wise_real_files_keep_objects_and_add_lowercase_aliases(wise, name, count, first_id, last_id):
    path = wise / name
    items = json.loads(path.read_text(encoding="utf-8"))
    prompts = load_prompts(path)
    assert len(prompts) == count
    assert [p.index for p in prompts] == list(range(count))
    assert (prompts[0].metadata["prompt_id"], prompts[-1].metadata["prompt_id"]) == (first_id, last_id)
    for prompt, item in zip(prompts, items):
        assert prompt.text == item["Prompt"]
        assert {k: prompt.metadata[k] for k in item} == item  # original keys untouched
        assert prompt.metadata["prompt"] == item["Prompt"]
        assert prompt.metadata["explanation"] == item["Explanation"]
        assert prompt.metadata["category"] == item["Category"]
        assert prompt.metadata["subcategory"] == item["Subcategory"]


def test_wise_real_category_values(wise):
    prompts = load_prompts(wise / "WISE_legacy" / "data" / "spatio-temporal_reasoning.json")
    categories = Counter(p.metadata["category"] for p in prompts)
    assert categories == {"time": 167, "Space": 133}


# --------------------------------------------------------------------------- small files


def test_text_skips_blank_lines_without_gaps_in_the_index(tmp_path):
    path = write(tmp_path / "prompts.txt", "a cat\r\n\r\n  a dog  \n   \n\na red car")
    prompts = load_text(path)
    assert prompts == [
        Prompt("a cat", 0, {"prompt": "a cat"}),
        Prompt("a dog", 1, {"prompt": "a dog"}),
        Prompt("a red car", 2, {"prompt": "a red car"}),
    ]


def test_text_tolerates_a_byte_order_mark(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeffa cat\n".encode("utf-8"))
    assert load_text(path)[0].text == "a cat"


def test_prompt_list_index_is_position():
    prompts = load_prompt_list(["a cat", "a dog"])
    assert prompts == [Prompt("a cat", 0, {"prompt": "a cat"}), Prompt("a dog", 1, {"prompt": "a dog"})]


def test_geneval_metadata_is_the_whole_json_object(tmp_path):
    records = [
        {"tag": "single_object", "include": [{"class": "cow", "count": 1}], "prompt": "a photo of a cow"},
        {"tag": "counting", "include": [{"class": "cup", "count": 2}], "exclude": [{"class": "cup", "count": 3}], "prompt": "a photo of two cups"},
    ]
    path = write(tmp_path / "meta.jsonl", "\n".join(json.dumps(r) for r in records) + "\n")
    prompts = load_geneval(path)
    assert [(p.index, p.text, p.metadata) for p in prompts] == [(i, r["prompt"], r) for i, r in enumerate(records)]


@pytest.mark.parametrize(
    "name, category",
    [
        ("color_val.txt", "color"),
        ("color_val_seen.txt", "color"),
        ("3d_spatial_val.txt", "3d_spatial"),
        ("non_spatial_val.txt", "non_spatial"),
        ("spatial_val.txt", "spatial"),
        ("complex_val_spatialaction.txt", "complex"),
        ("numeracy_val.txt", "numeracy"),
        ("texture_train.txt", "texture"),
        ("shape.txt", "shape"),
    ],
)
def test_t2i_compbench_category_from_file_name(tmp_path, name, category):
    assert t2i_compbench_category(name) == category
    prompts = load_t2i_compbench(write(tmp_path / name, "a green bench and a blue bowl\r\na red cake\r\n"))
    assert [(p.index, p.metadata) for p in prompts] == [
        (0, {"prompt": "a green bench and a blue bowl", "category": category}),
        (1, {"prompt": "a red cake", "category": category}),
    ]


@pytest.mark.parametrize("name", ["spatials_val.txt", "prompts_val.txt", "colour_val.txt", "new_objects.txt"])
def test_t2i_compbench_unknown_category_names_the_file(name):
    with pytest.raises(ValueError, match=rf"{name}: cannot tell the T2I-CompBench category"):
        t2i_compbench_category(name)


def test_wise_accepts_lowercase_keys_and_keeps_item_position(tmp_path):
    items = [
        {"prompt_id": 7, "Prompt": "Carnation", "Explanation": "a flower", "Category": "Cultural knowledge", "Subcategory": "Festival"},
        {"prompt_id": 3, "prompt": "Ice melting", "explanation": "water", "category": "Chemistry"},
    ]
    prompts = load_wise(write(tmp_path / "wise.json", json.dumps(items)))
    assert [(p.index, p.text) for p in prompts] == [(0, "Carnation"), (1, "Ice melting")]
    assert prompts[0].metadata == {**items[0], "prompt": "Carnation", "explanation": "a flower", "category": "Cultural knowledge", "subcategory": "Festival"}
    assert prompts[1].metadata == items[1]


# --------------------------------------------------------------------------- dispatch


@pytest.mark.parametrize(
    "relpath, fmt",
    [
        ("evaluation_metadata.jsonl", "geneval"),
        ("x/natural_science.json", "wise"),
        ("color_val.txt", "t2i_compbench"),
        ("complex_val_action.txt", "t2i_compbench"),
        ("t2i_compbench/shape.txt", "t2i_compbench"),
        ("prompts.txt", "text"),
        ("my_values.txt", "text"),
        ("PROMPTS.TXT", "text"),
    ],
)
def test_infer_format_from_file_name(relpath, fmt):
    assert infer_format(relpath) == fmt


def test_load_prompts_auto_dispatches_to_each_loader(tmp_path):
    text = write(tmp_path / "p.txt", "a cat\n")
    geneval = write(tmp_path / "m.jsonl", json.dumps({"tag": "t", "include": [], "prompt": "a cow"}) + "\n")
    compbench = write(tmp_path / "color_val.txt", "a red cake\n")
    wise = write(tmp_path / "w.json", json.dumps([{"Prompt": "a tree", "prompt_id": 1}]))
    assert load_prompts(text)[0].metadata == {"prompt": "a cat"}
    assert load_prompts(geneval)[0].metadata["tag"] == "t"
    assert load_prompts(compbench)[0].metadata["category"] == "color"
    assert load_prompts(wise)[0].metadata["prompt_id"] == 1
    # an explicit format wins over the file name
    assert load_prompts(compbench, "text")[0].metadata == {"prompt": "a red cake"}


def test_unknown_extension_and_unknown_format_are_clear_errors(tmp_path):
    path = write(tmp_path / "prompts.csv", "a cat\n")
    with pytest.raises(ValueError, match=r"prompts\.csv: cannot infer the prompt format .*'\.csv'.*text, geneval, t2i_compbench, wise"):
        load_prompts(path)
    with pytest.raises(ValueError, match=r"unknown prompt format 'coco'"):
        load_prompts(path, "coco")


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("m.jsonl", '{"prompt": "a cow"}\n{"prompt": "a cat"\n', r"m\.jsonl:2: malformed JSON"),
        ("m.jsonl", '{"prompt": "a cow"}\n\n{"tag": "x"}\n', r"m\.jsonl:3: missing 'prompt' key"),
        ("m.jsonl", '{"prompt": "a cow"}\n{"prompt": "  "}\n', r"m\.jsonl:2: prompt 1: empty prompt text"),
        ("m.jsonl", '["a cow"]\n', r"m\.jsonl:1: expected a JSON object, got list"),
        ("m.jsonl", '{"prompt": 3}\n', r"m\.jsonl:1: prompt must be a string, got int"),
        ("w.json", '[{"Prompt": "a"}, {"Prompt": ""}]', r"w\.json item 1: prompt 1: empty prompt text"),
        ("w.json", '[{"Prompt": "a"}, {"Explanation": "b"}]', r"w\.json item 1: missing 'Prompt' key"),
        ("w.json", '[{"Prompt": "a"}, "b"]', r"w\.json item 1: expected a JSON object, got str"),
        ("w.json", '{"Prompt": "a"}', r"w\.json: expected a JSON list of prompt objects, got dict"),
        ("w.json", '[{"Prompt": "a"},\n {"Prompt": }]', r"w\.json:2: malformed JSON"),
        ("w.json", "[]", r"w\.json: contains no prompts"),
        ("p.txt", "\n  \n", r"p\.txt: contains no prompts"),
        ("color_val.txt", "", r"color_val\.txt: contains no prompts"),
        ("m.jsonl", "", r"m\.jsonl: contains no prompts"),
    ],
)
def test_bad_input_error_names_file_and_line(tmp_path, name, content, message):
    with pytest.raises(ValueError, match=message):
        load_prompts(write(tmp_path / name, content))


@pytest.mark.parametrize(
    "name, content, where",
    [
        ("p.txt", "a cat\n\n{long}\n", r"p\.txt:3: prompt 1 is 2001 characters long, over max_chars=2000"),
        ("color_val.txt", "{long}\n", r"color_val\.txt:1: prompt 0 is 2001 characters"),
        ("m.jsonl", '{{"prompt": "a"}}\n{{"prompt": "{long}"}}\n', r"m\.jsonl:2: prompt 1 is 2001 characters"),
        ("w.json", '[{{"Prompt": "{long}"}}]', r"w\.json item 0: prompt 0 is 2001 characters"),
    ],
)
def test_over_long_prompt_names_the_index(tmp_path, name, content, where):
    path = write(tmp_path / name, content.format(long="x" * 2001))
    with pytest.raises(ValueError, match=where):
        load_prompts(path)


def test_max_chars_is_configurable(tmp_path):
    path = write(tmp_path / "p.txt", "a cat\na dog sitting\n")
    assert len(load_prompts(path, max_chars=13)) == 2
    with pytest.raises(ValueError, match=r"p\.txt:2: prompt 1 is 13 characters long, over max_chars=12"):
        load_prompts(path, max_chars=12)
    with pytest.raises(ValueError, match=r"prompt list item 1: prompt 1 is 13 characters"):
        load_prompt_list(["a cat", "a dog sitting"], max_chars=12)


@pytest.mark.parametrize("fmt", ["auto", "text", "geneval", "t2i_compbench", "wise"])
def test_missing_file_is_named(tmp_path, fmt):
    missing = tmp_path / "nowhere" / "color_val.txt"
    with pytest.raises(FileNotFoundError, match=r"prompt file not found: .*nowhere/color_val\.txt"):
        load_prompts(missing, fmt)


@pytest.mark.parametrize(
    "texts, message",
    [
        (["a cat", " "], r"prompt list item 1: prompt 1: empty prompt text"),
        (["a cat", None], r"prompt list item 1: prompt must be a string, got NoneType"),
        ([], r"prompt list: contains no prompts"),
        ("a cat", r"prompt list: expected a list of prompts, got a single string"),
    ],
)
def test_bad_prompt_list(texts, message):
    with pytest.raises(ValueError, match=message):
        load_prompt_list(texts)
