"""The bundled benchmark prompt sets: they load, configs point at them, and ``resolve_path``
finds them from any working directory without shadowing the user's own files."""

from collections import Counter
from pathlib import Path

import pytest
import yaml

from data.bundled import BENCHMARKS, resolve_path
from data.formats import load_prompts

ROOT = Path(__file__).resolve().parents[2]
GENEVAL = "data/benchmarks/geneval/evaluation_metadata.jsonl"


def test_bundled_geneval_loads_553_prompts_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    prompts = load_prompts(GENEVAL, "geneval")
    assert len(prompts) == 553 and [p.index for p in prompts] == list(range(553))
    assert all({"tag", "include", "prompt"} <= p.metadata.keys() for p in prompts)
    assert load_prompts(GENEVAL) == prompts  # "auto" infers geneval from .jsonl


def test_every_bundled_t2i_compbench_split_loads():
    files = sorted((BENCHMARKS / "t2i_compbench").glob("*_val*.txt"))
    assert len(files) == 17
    for path in files:
        prompts = load_prompts(path)
        assert len(prompts) >= 30 and prompts[0].metadata["category"] == path.stem.split("_val")[0]


def test_bundled_sets_carry_licence_and_source():
    for name, licence in (("geneval", "LICENSE"), ("t2i_compbench", "License.txt")):
        assert "MIT License" in (BENCHMARKS / name / licence).read_text()
        assert "Commit:" in (BENCHMARKS / name / "SOURCE.md").read_text()
    assert not (BENCHMARKS / "wise").exists()  # no licence: users download it (see README.md)


def test_the_shapes_set_is_exactly_what_its_command_generates(tmp_path):
    from milr.shapes import prompts as shapes_prompts

    regenerated = tmp_path / "evaluation_metadata.jsonl"
    shapes_prompts.main(["--write", str(regenerated)])
    shipped = BENCHMARKS / "shapes_geneval" / "evaluation_metadata.jsonl"
    assert regenerated.read_bytes() == shipped.read_bytes()
    prompts = load_prompts("data/benchmarks/shapes_geneval/evaluation_metadata.jsonl")
    assert Counter(p.metadata["tag"] for p in prompts) == {tag: 80 for tag in shapes_prompts.TAGS}
    for p in prompts:
        if p.metadata["tag"] == "counting":
            (include,) = p.metadata["include"]
            assert p.metadata["exclude"] == [{"class": include["class"], "count": include["count"] + 1}]
    assert str(len(prompts)) in (BENCHMARKS / "shapes_geneval" / "README.md").read_text()


def test_the_shapes_demo_set_is_one_prompt_per_tag_from_its_command(tmp_path):
    from milr.shapes import prompts as shapes_prompts

    regenerated = tmp_path / "demo_metadata.jsonl"
    shapes_prompts.main(["--write", str(regenerated), "--per_tag", "1"])
    assert regenerated.read_bytes() == (BENCHMARKS / "shapes_geneval" / "demo_metadata.jsonl").read_bytes()
    assert [p.metadata["tag"] for p in load_prompts(str(regenerated))] == list(shapes_prompts.TAGS)


def test_relative_path_falls_back_to_the_folder_holding_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_path(GENEVAL) == ROOT / GENEVAL
    assert resolve_path(Path("data/benchmarks/t2i_compbench")) == BENCHMARKS / "t2i_compbench"


def test_existing_path_in_the_working_directory_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    own = tmp_path / GENEVAL
    own.parent.mkdir(parents=True)
    own.write_text('{"tag": "single_object", "include": [{"class": "cat", "count": 1}], "prompt": "a cat"}\n')
    assert resolve_path(GENEVAL) == Path(GENEVAL)
    assert [p.text for p in load_prompts(GENEVAL)] == ["a cat"]


def test_absolute_path_is_used_as_is():
    assert resolve_path(BENCHMARKS / "geneval" / "LICENSE") == BENCHMARKS / "geneval" / "LICENSE"


def test_missing_path_names_it_and_both_places(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        resolve_path("data/benchmarks/nowhere.jsonl", what="prompt file")
    message = str(err.value)
    assert message.startswith("prompt file not found: data/benchmarks/nowhere.jsonl")
    assert str(tmp_path / "data/benchmarks/nowhere.jsonl") in message
    assert str(ROOT / "data/benchmarks/nowhere.jsonl") in message
    with pytest.raises(FileNotFoundError, match=r"file not found: .*nowhere\.txt$"):
        resolve_path(tmp_path / "nowhere.txt")


@pytest.mark.parametrize("config", ["janus_pro_1b_geneval.yaml", "janus_pro_7b_geneval.yaml"])
def test_benchmark_configs_point_at_the_bundled_geneval_set(config):
    data = yaml.safe_load((ROOT / "configs" / config).read_text())["data"]
    assert data["path"] == GENEVAL and (ROOT / data["path"]).is_file()
    assert len(load_prompts(data["path"], data["format"])) == 553


def test_t2i_compbench_reward_config_points_at_the_bundled_folder():
    init_args = yaml.safe_load((ROOT / "configs" / "rewards" / "t2i_compbench.yaml").read_text())["model"]["reward"]["init_args"]
    assert (ROOT / init_args["data_dir"]) == BENCHMARKS / "t2i_compbench"
