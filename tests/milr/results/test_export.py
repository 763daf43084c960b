"""``milr.export`` layouts, read back with the official scripts' own listing and parsing rules
(reimplemented here from their code; file and line cited at each reader)."""

from __future__ import annotations

import json
import os
import re

import pytest
from PIL import Image

from milr.results import export
from milr.results.runs import read_run
from tests.run_folders import FakePrompt, Step, color_of, fake_run, selected_index


# ----------------------------------------------------------------- official readers
def geneval_listing(imagedir: str) -> list[tuple[str, dict]]:
    """djghosh13/geneval@af4902f evaluation/evaluate_images.py L263-274."""
    found = []
    for subfolder in os.listdir(imagedir):
        folderpath = os.path.join(imagedir, subfolder)
        if not os.path.isdir(folderpath) or not subfolder.isdigit():
            continue
        with open(os.path.join(folderpath, "metadata.jsonl")) as fp:
            metadata = json.load(fp)
        for imagename in os.listdir(os.path.join(folderpath, "samples")):
            imagepath = os.path.join(folderpath, "samples", imagename)
            if not os.path.isfile(imagepath) or not re.match(r"\d+\.png", imagename):
                continue
            found.append((imagepath, metadata))
    return found


def compbench_listing(outpath: str) -> list[tuple[int, str, str]]:
    """``(question_id, prompt, path)`` as Karine-Huang/T2I-CompBench@1b70949 reads samples:
    BLIPvqa_eval/BLIP_vqa.py L20-21 (listdir, sort by the trailing counter), L30 (question_id =
    position), L31 (prompt = name before the first '_'); CLIPScore_eval/CLIP_similarity.py L46-48
    and L59 read the same way; UniDet_eval/2D_spatial_eval.py L167 (prompt) and L264
    (question_id = the counter itself)."""
    image_folder = os.path.join(outpath, "samples") + "/"
    file_names = os.listdir(image_folder)
    file_names.sort(key=lambda x: int(x.split("_")[-1].split(".")[0]))
    rows = []
    for cnt, file_name in enumerate(file_names):
        assert cnt == int(file_name.split("_")[-1].split(".")[0])  # BLIP's position == UniDet's counter
        rows.append((cnt, file_name.split("_")[0], image_folder + file_name))
    return rows


def three_in_one_groups(scores: list, prompts: list[str], num: int) -> dict[str, list]:
    """3_in_1_eval/3_in_1.py L55-69: images [i*num, (i+1)*num) belong to the i-th prompt."""
    return {prompts[i]: scores[i * num : (i + 1) * num] for i in range(len(prompts))}


def wise_images(image_dir: str, prompt_ids: list[int]) -> dict[int, str]:
    """PKU-YuanGroup/WISE@eb51174 WISE_legacy/gpt_eval.py L243-247: ``<image_dir>/<prompt_id>.png``, missing ones skipped."""
    return {pid: os.path.join(image_dir, f"{pid}.png") for pid in prompt_ids if os.path.exists(os.path.join(image_dir, f"{pid}.png"))}


def calculate_py(path: str) -> dict[str, list[float]]:
    """WISE_legacy/Calculate.py L32-73 (rows) with L6-8 (WiScore): per category, WiScores of valid rows."""
    scores: dict[str, list[float]] = {}
    bounds = [(400, "CULTURE"), (567, "TIME"), (700, "SPACE"), (800, "BIOLOGY"), (900, "PHYSICS"), (1000, "CHEMISTRY")]
    for line in open(path, encoding="utf-8"):
        data = json.loads(line)
        prompt_id = data.get("prompt_id")
        if prompt_id is None or not isinstance(prompt_id, int):
            continue
        c, r, a = data.get("consistency"), data.get("realism"), data.get("aesthetic_quality")
        if not all(isinstance(v, (int, float)) for v in (c, r, a)):
            continue
        category = next((name for high, name in bounds if 1 <= prompt_id <= high), None)
        if category is not None:
            scores.setdefault(category, []).append((0.7 * c + 0.2 * r + 0.1 * a) / 2)
    return scores


def pixel(path) -> tuple:
    with Image.open(path) as image:
        return image.convert("RGB").getpixel((0, 0))


# ----------------------------------------------------------------- runs
GENEVAL_META = [
    {"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a photo of a bench"},
    {"tag": "colors", "include": [{"class": "car", "count": 1, "color": "red"}], "prompt": "a photo of a red car"},
]


def test_geneval_export_is_read_back_by_evaluate_images(tmp_path):
    prompts = [FakePrompt(f"{i:05d}", meta, [[Step(0.1), Step(0.9)], [Step(0.4)], [Step(0.2), Step(0.3), Step(0.25)]]) for i, meta in enumerate(GENEVAL_META)]
    run = read_run(fake_run(tmp_path / "run", prompts))
    export.main(["geneval", str(run.folder), str(tmp_path / "out")])
    listed = sorted(geneval_listing(str(tmp_path / "out")))
    assert len(listed) == 6
    for path, meta in listed:
        key, r = os.path.basename(os.path.dirname(os.path.dirname(path))), int(os.path.basename(path)[:-4])
        assert meta == GENEVAL_META[int(key)]
        steps = prompts[int(key)].repeats[r]
        assert pixel(path) == color_of(key, r, selected_index(steps))  # the selected image of that repeat


def test_geneval_export_refuses_non_geneval_metadata_and_a_used_out_dir(tmp_path):
    run = read_run(fake_run(tmp_path / "run", [FakePrompt("00000", {"prompt": "a cat"}, [[Step(0.5)]])]))
    with pytest.raises(ValueError, match="not a GenEval line"):
        export.export_geneval(run, tmp_path / "out")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "stale.png").write_bytes(b"")
    with pytest.raises(FileExistsError, match="not empty"):
        export.export_t2i_compbench(run, tmp_path / "used")


def compbench_prompt(key: str, text: str, category: str, n: int) -> FakePrompt:
    return FakePrompt(key, {"prompt": text, "category": category}, [[Step(0.1 * r), Step(0.5)] for r in range(n)])


def test_t2i_compbench_export_is_read_back_in_the_scripts_order(tmp_path):
    texts = ["a green bench and a blue bowl", "a red hat and a white cat", "a blue car and a brown dog"]
    prompts = [compbench_prompt(f"color_{i:05d}", t, "color", 10) for i, t in enumerate(texts)]
    run = read_run(fake_run(tmp_path / "run", prompts))
    export.main(["t2i_compbench", str(run.folder), str(tmp_path / "out")])
    listed = compbench_listing(str(tmp_path / "out"))
    assert len(listed) == 30
    expected = [(p.key, p.metadata["prompt"], r, selected_index(steps)) for p in prompts for r, steps in enumerate(p.repeats)]
    for (_, text, path), (key, prompt_text, r, chosen) in zip(listed, expected):
        assert text == prompt_text
        assert pixel(path) == color_of(key, r, chosen)
    # 3_in_1.py pairs the i-th block of 10 with the i-th prompt of its list
    groups = three_in_one_groups([text for _, text, _ in listed], texts, num=10)
    assert all(set(v) == {k} for k, v in groups.items())


def test_t2i_compbench_export_splits_categories_and_refuses_unreadable_prompts(tmp_path):
    prompts = [compbench_prompt("color_00000", "a red apple", "color", 2), compbench_prompt("spatial_00000", "a cat next to a dog", "spatial", 2)]
    run = read_run(fake_run(tmp_path / "run", prompts))
    export.export_t2i_compbench(run, tmp_path / "out")
    assert [t for _, t, _ in compbench_listing(str(tmp_path / "out" / "color"))] == ["a red apple"] * 2
    assert [t for _, t, _ in compbench_listing(str(tmp_path / "out" / "spatial"))] == ["a cat next to a dog"] * 2
    bad = read_run(fake_run(tmp_path / "bad", [compbench_prompt("color_00000", "a red_apple", "color", 1)]))
    with pytest.raises(ValueError, match="reads the prompt back from the file name"):
        export.export_t2i_compbench(bad, tmp_path / "out_bad")


def wise_prompt(key: str, prompt_id: int, cra: list[tuple[int, int, int]]) -> FakePrompt:
    steps = [Step((0.7 * c + 0.2 * r + 0.1 * a) / 2, details={"prompt_id": prompt_id, "judge": "j", "consistency": float(c), "realism": float(r), "aesthetic_quality": float(a)}) for c, r, a in cra]
    return FakePrompt(key, {"Prompt": f"prompt {prompt_id}", "prompt_id": prompt_id, "Subcategory": "Festival"}, [steps])


def test_wise_export_is_read_back_by_gpt_eval_and_calculate(tmp_path):
    # prompt 3: two steps tie on WiScore 0.2 with different scores; select "best" keeps the first
    prompts = [
        wise_prompt("wise_0001", 1, [(0, 0, 0), (2, 1, 0)]),
        wise_prompt("wise_0402", 402, [(1, 1, 1), (0, 0, 0)]),
        wise_prompt("wise_0003", 3, [(0, 1, 0), (0, 0, 2)]),
    ]
    run = read_run(fake_run(tmp_path / "run", prompts, per_repeat_files=False))
    export.main(["wise", str(run.folder), str(tmp_path / "out")])
    found = wise_images(str(tmp_path / "out"), [1, 3, 402, 999])
    assert sorted(found) == [1, 3, 402]
    assert pixel(found[1]) == color_of("wise_0001", 0, 1) and pixel(found[402]) == color_of("wise_0402", 0, 0)
    rows = [json.loads(line) for line in (tmp_path / "out" / "scores.jsonl").read_text().splitlines()]
    assert [r["prompt_id"] for r in rows] == [1, 3, 402]
    assert rows[1] == {"prompt_id": 3, "Subcategory": "Festival", "consistency": 0.0, "realism": 1.0, "aesthetic_quality": 0.0}
    scores = calculate_py(str(tmp_path / "out" / "scores.jsonl"))
    assert scores == {"CULTURE": [pytest.approx(0.8), pytest.approx(0.1)], "TIME": [pytest.approx(0.5)]}


def test_wise_export_without_judge_scores_writes_images_only(tmp_path):
    run = read_run(fake_run(tmp_path / "run", [FakePrompt("wise_0007", {"prompt_id": 7, "Prompt": "x"}, [[Step(0.3)]])]))
    images, rows = export.export_wise(run, tmp_path / "out")
    assert [p.name for p in images] == ["7.png"] and rows == [] and not (tmp_path / "out" / "scores.jsonl").exists()
    no_id = read_run(fake_run(tmp_path / "no_id", [FakePrompt("wise_0007", {"Prompt": "x"}, [[Step(0.3)]])]))
    with pytest.raises(ValueError, match="integer metadata prompt_id"):
        export.export_wise(no_id, tmp_path / "out2")
