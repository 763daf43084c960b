"""The benchmark: its JSON report on the tiny model, its reward schedule, and the model shapes."""

from __future__ import annotations

import contextlib
import io
import json
import os

import pytest
import torch
from PIL import Image

from data.prompt import Prompt
from milr.bench.cli import main
from milr.bench.default import render
from milr.bench.model_sizes import SHAPES, Shape, janus_config, llama_config, parameter_count, random_backbone
from milr.bench.output import stdout_to_stderr
from milr.bench.reward import BenchReward
from milr.bench.targets import TARGETS
from milr.tiny import tiny_tokenizer
from rewards.base import Reward, RewardOutput
from rewards.random_weights import write_geneval

ARGS = ["--model", "tiny", "--batch", "2", "--steps", "2", "--think-tokens", "8", "--prompts", "3", "--rss-prompts", "20"]


@pytest.fixture(scope="module")
def bench_run() -> tuple[str, str]:
    """One ``--json --profile`` run on the tiny model: (stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        main([*ARGS, "--json", "--profile"])
    return out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def report(bench_run) -> dict:
    return json.loads(bench_run[0])


def test_json_mode_prints_exactly_one_json_object_on_stdout(bench_run):
    stdout = bench_run[0]
    assert stdout.startswith("{") and stdout.endswith("}\n") and stdout.count("\n") == 1
    assert isinstance(json.loads(stdout), dict)


def test_native_and_python_prints_while_measuring_go_to_stderr(capfd):
    with stdout_to_stderr():
        print("from python")
        os.write(1, b"from native code\n")  # what the Rust tokenizer trainer does
    print("report")
    out, err = capfd.readouterr()
    assert out == "report\n"
    assert "from python" in err and "from native code" in err


def test_report_has_the_required_keys_and_the_requested_settings(report):
    for key in ("device", "model", "batch", "generate_s", "step_s", "step_over_generate", "image_over_both",
                "text_cache_speedup", "peak_mem_mb", "prompts_per_hour"):  # fmt: skip
        assert key in report
    assert (report["device"], report["model"], report["batch"], report["steps"]) == ("cpu", "tiny", 2, 2)
    assert set(report["step_s"]) == {"text", "image", "both"}
    assert set(report["prompts_per_hour"]) == {"1", "2"}
    assert report["threads"] == 1 and report["image_tokens"] == 64  # one CPU thread unless asked


def close(a: float, b: float) -> bool:
    """Equal up to the report's rounding to 4 significant digits."""
    return a == pytest.approx(b, rel=2e-3)


def test_times_are_positive_and_ratios_agree_with_the_times(report):
    assert report["generate_s"] >= report["generate_tokens_s"] > 0
    assert all(v > 0 for v in [*report["step_s"].values(), *report["stage0_s"].values(), *report["prompts_per_hour"].values()])
    assert report["peak_mem_mb"] > 10
    memory = report["host_memory"]
    assert memory["prompts"] == 20 and memory["rss_after_mb"] > 10
    assert report["rss_mb_per_1000"] == memory["mb_per_1000_prompts"] and "rss_mb_per_1000" in report["targets"]
    assert close(report["step_over_generate"], report["step_s"]["both"] / report["generate_s"])
    assert close(report["image_over_both"], report["step_s"]["image"] / report["step_s"]["both"])
    speed = report["think_tokens_per_s"]
    assert close(report["text_cache_speedup"], speed["cached"] / speed["uncached"])
    assert close(report["batch_speedup"], report["prompts_per_hour"]["2"] / report["prompts_per_hour"]["1"])


def test_step_shares_split_the_whole_step_and_image_mode_never_thinks_again(report):
    for shares in report["step_share"].values():
        assert set(shares) == {"decode", "reward", "update"}
        assert sum(shares.values()) == pytest.approx(1.0, abs=2e-3)
        assert shares["decode"] > shares["reward"]  # the bench reward is nearly free
    assert report["think_calls"]["image"] == 0


def test_targets_are_reported_with_their_limits_and_verdicts(report):
    assert set(report["targets"]) == set(TARGETS)
    for key, check in report["targets"].items():
        op, limit, where = TARGETS[key]
        assert check["value"] == report[key] and check["where"] == where
        assert check["met"] == (check["value"] <= limit if op == "<=" else check["value"] >= limit)


def test_prompt_reuse_times_both_rules_on_the_same_schedule_and_prefills_fewer_rows(report):
    before, after = report["prompt_reuse"]["before"], report["prompt_reuse"]["after"]
    assert before["steps"] == after["steps"] > 0 and before["step_s"] > 0 and after["step_s"] > 0
    assert close(report["prompt_reuse"]["after_over_before"], after["step_s"] / before["step_s"])
    assert after["think_rows"] == report["throughput_prompts"]  # each think prompt prefilled once
    assert after["image_rows"] < before["image_rows"]  # a refill no longer prefills the other rows again


def test_profile_goes_to_stderr_and_names_the_decode_loop(bench_run):
    stdout, stderr = bench_run
    assert "sample_image" in stderr and "cumulative" in stderr
    assert "sample_image" not in stdout


def test_table_mode_renders_every_step_and_target(report, capsys):
    render(report)
    text = capsys.readouterr().out
    rows = ("plain generate", "MILR step · text", "MILR step · image", "MILR step · both", "prompts/hour, batch 2")
    for row in (*rows, *TARGETS):
        assert row in text


def white(n: int) -> list[Image.Image]:
    return [Image.new("RGB", (8, 8), (255, 255, 255)) for _ in range(n)]


def test_bench_reward_never_passes_a_half_threshold_without_a_schedule():
    reward = BenchReward()
    scores = reward(white(2), [Prompt("a", 0), Prompt("b", 1)])
    assert scores.tolist() == [0.5, 0.5]  # a white image is the maximum: not above 0.5


def test_bench_reward_passes_prompt_i_at_step_one_plus_i_mod_s():
    reward = BenchReward(pass_after=3)
    prompts = [Prompt("p", i) for i in range(5)]
    passed_at = {}
    for step in range(4):
        scores = reward(white(5), prompts)
        for p, s in zip(prompts, scores.tolist()):
            if s > 0.5:
                passed_at.setdefault(p.index, step)
    assert passed_at == {0: 1, 1: 2, 2: 3, 3: 1, 4: 2}


class Recording(Reward):
    """Scores 0.8 and records its set-up and calls, to see that the bench pays the measured reward."""

    name = "recording"

    def __init__(self) -> None:
        self.setups, self.calls = [], 0

    def setup(self, **kwargs) -> None:
        super().setup(**kwargs)
        self.setups.append(self.device)

    def evaluate(self, images, prompts):
        self.calls += 1
        return RewardOutput(torch.full((len(images),), 0.8), [{"seen": p.index} for p in prompts])


def test_bench_reward_pays_the_measured_reward_and_halves_its_score_before_the_pass():
    inner = Recording()
    reward = BenchReward(inner, pass_after=2)
    reward.setup(device="cpu", dtype=torch.float32)
    first = reward.evaluate(white(2), [Prompt("a", 0), Prompt("b", 1)])
    second = reward.evaluate(white(2), [Prompt("a", 0), Prompt("b", 1)])
    assert (inner.setups, inner.calls, reward.name) == ([torch.device("cpu")], 2, "recording")
    assert first.scores.tolist() == pytest.approx([0.4, 0.4]) and second.scores.tolist() == pytest.approx([1.0, 0.4])
    assert first.details == [{"seen": 0}, {"seen": 1}]


GENEVAL_LINES = [
    '{"tag": "single_object", "include": [{"class": "dog", "count": 1}], "prompt": "a photo of a dog"}',
    '{"tag": "colors", "include": [{"class": "cup", "count": 1, "color": "red"}], "prompt": "a photo of a red cup"}',
]


def test_a_reward_config_and_a_prompt_file_are_measured_with_the_reward_in_every_step(tmp_path, capsys):
    config = write_geneval(tmp_path / "rw", size="tiny")
    prompts = tmp_path / "evaluation_metadata.jsonl"
    prompts.write_text("\n".join(GENEVAL_LINES) + "\n")
    args = ["--model", "tiny", "--batch", "2", "--steps", "2", "--think-tokens", "8", "--prompts", "3"]
    report = main([*args, "--reward-config", str(config), "--prompts-file", str(prompts), "--json"])
    assert json.loads(capsys.readouterr().out)["reward"] == report["reward"] == "geneval"
    assert report["prompts_file"] == str(prompts)
    for shares in report["step_share"].values():  # a real detector + CLIP costs a visible share
        assert shares["reward"] > 0.01
    assert set(report["prompts_per_hour"]) == {"1", "2"}  # 3 prompts cycle over the 2 lines, stops as scheduled


def test_real_shapes_have_janus_pro_sizes():
    one, seven = janus_config(SHAPES["1b"]), janus_config(SHAPES["7b"])
    assert (one.text_config.hidden_size, one.text_config.num_hidden_layers, one.text_config.num_attention_heads) == (2048, 24, 16)
    assert (seven.text_config.hidden_size, seven.text_config.num_hidden_layers, seven.text_config.num_attention_heads) == (4096, 30, 32)
    assert (one.text_config.intermediate_size, seven.text_config.intermediate_size) == (5632, 11008)
    for cfg in (one, seven):
        assert cfg.text_config.vocab_size == 102400 and cfg.vision_config.num_image_tokens == 576
        assert cfg.vq_config.num_embeddings == 16384 and cfg.vq_config.base_channels == 128
        assert list(cfg.vq_config.channel_multiplier) == [1, 1, 2, 2, 4] and cfg.vq_config.latent_channels == 256
        assert cfg.vq_config.image_token_embed_dim == cfg.text_config.hidden_size
    # published sizes: Janus-Pro-1B 2.09B, Janus-Pro-7B 7.42B parameters
    assert parameter_count(SHAPES["1b"]) == pytest.approx(2.09e9, rel=0.015)
    assert parameter_count(SHAPES["7b"]) == pytest.approx(7.42e9, rel=0.015)


def test_random_backbone_runs_the_given_shape_and_decodes_every_id_of_its_vocabulary():
    shape = Shape(
        "mini",
        text=llama_config(hidden=64, layers=2, heads=4, intermediate=128, vocab=1000),
        vision={"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2},
        vq={"num_embeddings": 512, "base_channels": 32, "channel_multiplier": [1, 1, 2], "latent_channels": 32, "num_res_blocks": 1},
        grid=4,
    )
    bb = random_backbone(shape, max_think_tokens=6)
    assert bb.model.config.text_config.vocab_size == 1000 and bb.num_image_tokens == 16
    assert bb.lm.config.hidden_size == 64 and len(bb.tokenizer) == 1000
    out = bb.think(["a red apple"])
    fillers = [i for i in out.ids[0].tolist() if i >= len(tiny_tokenizer())]
    assert fillers and all(f"<t{i}>" in out.texts[0] for i in fillers)  # the think text has its real length
    ctx = bb.image_context(["a red apple"])
    sample = bb.sample_image(ctx, [torch.Generator().manual_seed(0)])
    assert sample.tokens.shape == (1, 16) and int(sample.tokens.max()) < 512
    assert bb.decode_images(sample.tokens)[0].size == (16, 16)  # 3-level VQ: 4 px per token
