"""The benchmark configs carry the authors' per-script settings; reward fragments bring their own
stop rule and budget; the reference preset switches every quirk on."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import train_free_runner

ROOT = Path(__file__).resolve().parents[1]

# Read from miyapeng/MILR's run scripts (named in each config); thresholds on milr's [0, 1] scale
# (theirs + 1). Columns: model, reward class, mode, text_ratio, image_ratio, lr, max_steps, threshold, data.path
AUTHORS = {
    "janus_pro_7b_geneval": ("Janus-Pro-7B", "rewards.geneval.GenEvalReward", "both", 0.2, 0.02, 0.03, 30, 0.9,
                             "data/benchmarks/geneval/evaluation_metadata.jsonl"),  # geneval_both.sh @7297895
    "janus_pro_1b_geneval": ("Janus-Pro-1B", "rewards.geneval.GenEvalReward", "image", 0.2, 0.02, 0.03, 30, 0.9,
                             "data/benchmarks/geneval/evaluation_metadata.jsonl"),  # geneval_both_1B.sh @7297895
    "janus_pro_7b_t2i_compbench": ("Janus-Pro-7B", "rewards.t2i_compbench.T2ICompBenchReward", "both", 0.2, 0.02, 0.03, 20, 0.4,
                                   "data/benchmarks/t2i_compbench/complex_val.txt"),  # ..._complex.sh @d7b42fbe: -0.6
    "janus_pro_1b_t2i_compbench": ("Janus-Pro-1B", "rewards.t2i_compbench.T2ICompBenchReward", "image", 0.2, 0.02, 0.03, 20, 0.9,
                                   "data/benchmarks/t2i_compbench/color_val.txt"),  # ..._color.sh @7297895 (1B): -0.1
    "janus_pro_7b_wise": ("Janus-Pro-7B", "rewards.wise.WiseReward", "both", 0.2, 0.02, 0.03, 30, 0.5, None),  # Wise/*.sh: -0.50
    "janus_pro_1b_wise": ("Janus-Pro-1B", "rewards.wise.WiseReward", "both", 0.2, 0.02, 0.03, 30, 0.5, None),  # no 1B script: 7B's
}
# Every reward fragment's (reward_threshold, max_steps): the authors' script for that reward.
FRAGMENTS = {
    "geneval.yaml": (0.9, 30), "t2i_compbench.yaml": (0.4, 20), "wise.yaml": (0.5, 30), "wise_local.yaml": (0.5, 30),
    "mixed.yaml": (0.8, 20), "unified_reward.yaml": (0.75, 20), "self_reward.yaml": (0.9, 20), "clip_score.yaml": (None, 20),
    "pickscore.yaml": (None, 20), "hpsv2.yaml": (None, 20), "vlm_yes_no.yaml": (0.9, 20),
}
QUIRKS = {"prompt_format": "reference", "image_mode_think": False, "latent_dtype": "bfloat16",
          "image_loss_tokens": "argmax", "select": "last", "estimator": "reference", "samples_per_step": 1}
DEFAULTS = {"prompt_format": "janus", "image_mode_think": True, "latent_dtype": "float32",
            "image_loss_tokens": "sampled", "select": "best", "estimator": "reference", "samples_per_step": 1}


def printed(capsys, *configs: str) -> dict:
    args = [a for c in configs for a in ("--config", str(ROOT / c))]
    with pytest.raises(SystemExit):
        train_free_runner.main([*args, "--print_config"])
    return yaml.safe_load(capsys.readouterr().out)


def test_every_benchmark_model_pair_has_a_config():
    names = {p.stem for p in (ROOT / "configs").glob("janus_pro_*.yaml")}
    assert names == set(AUTHORS)


@pytest.mark.parametrize("name", sorted(AUTHORS))
def test_benchmark_config_has_the_authors_settings_and_quirks_off(capsys, name):
    model, reward, mode, text_ratio, image_ratio, lr, steps, threshold, path = AUTHORS[name]
    config = printed(capsys, f"configs/{name}.yaml")
    m = config["model"]
    assert m["backbone"]["init_args"]["name_or_path"] == f"deepseek-community/{model}"
    assert m["reward"]["class_path"] == reward
    got = (m["mode"], m["text_ratio"], m["image_ratio"], m["lr"], m["optimizer"], m["max_steps"], m["reward_threshold"])
    assert got == (mode, text_ratio, image_ratio, lr, "adam", steps, threshold)
    assert config["data"]["path"] == path
    assert {k: m[k] for k in DEFAULTS} == DEFAULTS and m["step_order"] == "joint"
    assert "miyapeng/MILR src/scripts/" in (ROOT / "configs" / f"{name}.yaml").read_text()  # the script is named


@pytest.mark.parametrize("name", sorted(AUTHORS))
def test_the_reference_preset_switches_every_quirk_on_and_keeps_the_benchmark_settings(capsys, name):
    m = printed(capsys, f"configs/{name}.yaml", "configs/presets/reference.yaml")["model"]
    assert {k: m[k] for k in QUIRKS} == QUIRKS
    assert (m["mode"], m["max_steps"], m["reward_threshold"]) == (AUTHORS[name][2], AUTHORS[name][6], AUTHORS[name][7])


def test_every_reward_fragment_brings_its_own_threshold_and_step_budget(capsys):
    assert {p.name for p in (ROOT / "configs" / "rewards").glob("*.yaml")} == set(FRAGMENTS)
    for fragment, (threshold, steps) in FRAGMENTS.items():
        raw = yaml.safe_load((ROOT / "configs" / "rewards" / fragment).read_text())["model"]
        assert "reward_threshold" in raw and "max_steps" in raw, fragment
        m = printed(capsys, "configs/janus_pro_7b_geneval.yaml", f"configs/rewards/{fragment}")["model"]
        assert (m["reward_threshold"], m["max_steps"]) == (threshold, steps), fragment


def test_the_compare_script_runs_every_method_at_equal_reward_calls_and_reports(tmp_path):
    """configs/compare/run.sh on the tiny demo (2 prompts, no threshold, 4 steps: 5 reward calls;
    rloo K = 2 gets max_steps 1, 1 + 2 · 2 = 5 calls too)."""
    import json
    import os
    import subprocess
    import sys

    from milr.results.runs import read_run

    options = ["--config", str(ROOT / "configs" / "tiny.yaml"), "--data.prompts", "[a red apple, a blue car]", "--model.max_steps", "4",
               "--model.reward_threshold", "null", "--model.reward.init_args.calibration_samples", "16", "--trainer.enable_progress_bar", "false"]
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run([str(ROOT / "configs" / "compare" / "run.sh"), str(tmp_path), *options], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "budget 5 reward calls per prompt (rloo: 5, max_steps 1)" in done.stdout
    expected = {"milr": ("milr", 5), "base": ("base", 1), "best_of_n": ("best_of_n", 5), "milr_rloo": ("milr", 5), "anti_reward": ("anti_reward", 5)}
    for name, (method, calls) in expected.items():
        run = read_run(tmp_path / name)
        assert run.method == method and [r.get("reward_calls") for p in run.prompts for r in p.repeats] == [calls, calls]
        assert (tmp_path / "tensorboard" / name).is_dir()
    assert json.loads((tmp_path / "milr_rloo" / "00000" / "result.json").read_text())["repeats"][0]["steps"] == 1
    page = (tmp_path / "report.html").read_text()
    assert "against reward calls" in page and page.count("<img ") == 2 * 2 * 5
