"""The budgeted GPU suite's CPU path (``--suite gpu --device cpu``): every part measured on the
tiny model, ratios that agree with their times, target verdicts, the 24 GB check marked n/a off
CUDA, and a budget that skips or interrupts parts while keeping what was measured."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from milr.bench import gpu
from milr.bench.cli import main
from milr.bench.gpu import GPU_TARGETS, PARTS, parse_args
from rewards.random_weights import write_geneval

GENEVAL = str(Path(__file__).resolve().parents[3] / "data/benchmarks/geneval/evaluation_metadata.jsonl")
FAST = ["--suite", "gpu", "--device", "cpu", "--model", "tiny", "--batch", "4", "--think-tokens", "8"]


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> tuple[dict, Path]:
    """One full run on the tiny model with the tiny random-weight GenEval reward."""
    tmp = tmp_path_factory.mktemp("gpu_bench")
    config = write_geneval(tmp / "rw", size="tiny")
    extra = ["--memory-batches", "1,2", "--memory-think-tokens", "8", "--reward-config", str(config), "--prompts-file", GENEVAL]
    data = main([*FAST, *extra, "--out", str(tmp / "out")])
    return data, tmp / "out"


def test_every_part_is_measured_and_the_files_hold_the_report(suite):
    data, out = suite
    assert [(p["part"], p["status"]) for p in data["parts"]] == [("build", "measured")] + [(p, "measured") for p in PARTS]
    assert data["complete"] and not data["not_measured"] and not data["stopped_at_time_limit"]
    assert json.loads((out / "gpu_bench.json").read_text()) == data
    md = (out / "gpu_bench.md").read_text()
    assert md.startswith("# milr GPU bench: cpu") and "| tiny | build | measured |" in md
    assert all(what in md for _, _, what in GPU_TARGETS.values())


def test_ratios_agree_with_the_times_they_come_from(suite):
    values = suite[0]["models"]["tiny"]
    close = lambda a, b: a == pytest.approx(b, rel=2e-3)  # noqa: E731  (the report rounds to 4 digits)
    assert close(values["both_over_generate_batch1"], values["both_step_s_batch1"] / values["generate_s_batch1"])
    assert close(values["both_over_generate_batchB"], values["both_step_s_batchB"] / values["generate_s_batchB"])
    assert close(values["image_over_both"], values["image_step_s_batchB"] / values["both_step_s_batchB"])
    assert close(values["batch_speedup"], values["prompts_per_hour_batchB"] / values["prompts_per_hour_batch1"])
    for kind in ("eager", "compiled"):
        bound = values[f"decode_{kind}"]
        assert 0 < bound["fraction_of_bound"] == values[f"decode_fraction_{kind}"] < 1
        assert close(bound["fraction_of_bound"], bound["tokens_per_s_batch1"] / bound["bound_tokens_per_s"])
    assert values["compile_s"] > 0 and values["both_step_s_batchB_compiled"] > 0
    assert values["dtype"] == "float32" and values["image_tokens"] == 64


def test_targets_have_verdicts_and_the_24_gb_check_is_not_applicable_on_cpu(suite):
    data = suite[0]
    rows = {t["key"]: t for t in data["targets"]}
    assert set(rows) == set(GPU_TARGETS)
    for key, row in rows.items():
        op, limit, _ = GPU_TARGETS[key]
        if key == "memory_batch1_gb":
            assert row["verdict"] == "n/a" and "RSS" in row["note"]
        else:
            assert row["verdict"] == ("met" if (row["value"] <= limit if op == "<=" else row["value"] >= limit) else "missed")
    memory = data["models"]["tiny"]["memory"]
    assert memory["reward"] == "geneval" and set(memory["batches"]) == {"1", "2"}
    assert data["models"]["tiny"]["memory_largest_batch_within_limit"] == "n/a on CPU"


def test_parts_that_do_not_fit_the_budget_are_skipped_with_their_reason(tmp_path):
    data = main([*FAST, "--budget-s", "1", "--out", str(tmp_path)])  # the build alone is estimated at 2 s
    assert data["parts"][0]["status"] == "skipped" and "budget: estimated 2 s" in data["not_measured"][0]["reason"]
    assert {n["part"] for n in data["not_measured"][1:]} == set(PARTS)
    assert not data["complete"] and json.loads((tmp_path / "gpu_bench.json").read_text())["not_measured"]
    assert "not measured" in (tmp_path / "gpu_bench.md").read_text()


def test_a_part_running_past_the_time_limit_is_interrupted_and_what_came_before_is_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu.ModelRun, "decode", lambda self: time.sleep(60))
    start = time.perf_counter()
    data = main([*FAST, "--parts", "generate,decode,throughput", "--budget-s", "8", "--out", str(tmp_path)])
    assert time.perf_counter() - start < 20
    status = {p["part"]: p["status"] for p in data["parts"]}
    assert status == {"build": "measured", "generate": "measured", "decode": "interrupted"}
    assert data["stopped_at_time_limit"] and {"decode", "throughput"} <= {n["part"] for n in data["not_measured"]}
    assert json.loads((tmp_path / "gpu_bench.json").read_text())["models"]["tiny"]["generate_s_batch1"] > 0


def test_cuda_runs_the_real_shapes_and_every_option_is_checked():
    plan = parse_args(["--device", "cuda"]).plan
    assert [m for m, _ in plan] == ["7b", "1b"] and set().union(*(set(p) for _, p in plan)) == set(PARTS)
    assert all(parts[0] == "generate" for _, parts in plan)  # every other part is estimated from it
    assert parse_args(["--device", "cpu"]).plan == [("small", list(PARTS))]
    with pytest.raises(ValueError, match="unknown model shapes or parts"):
        gpu.run_suite(parse_args(["--device", "cpu", "--model", "3b"]))


def test_gpu_bandwidth_comes_from_the_memory_clock_and_bus_width(monkeypatch):
    import types

    import torch

    h100 = types.SimpleNamespace(memory_clock_rate=2_619_000, memory_bus_width=5120)  # kHz, bits (H100 SXM)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: h100)
    assert gpu.device_bandwidth_gbs(torch.device("cuda", 0)) == pytest.approx(3352, rel=1e-3)  # the 3.35 TB/s spec
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: types.SimpleNamespace())
    assert gpu.device_bandwidth_gbs(torch.device("cuda", 0)) is None  # a torch that does not report them
    assert gpu.device_bandwidth_gbs(torch.device("cpu")) is None
