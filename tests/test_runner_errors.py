"""User mistakes stop the runner before any model loads: exit status 2, one line naming the
option and the fix, no traceback, nothing written into the output folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import train_free_runner

ROOT = Path(__file__).resolve().parents[1]


def fail(capsys, out: Path, *args: str) -> str:
    """Run the runner with ``args``; assert exit 2, an untouched ``out`` and one error line."""
    out.mkdir(exist_ok=True)
    (out / "keep.txt").write_text("earlier results")
    with pytest.raises(SystemExit) as exit_:
        train_free_runner.main(["--output_dir", str(out), *args])
    assert exit_.value.code == 2
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.err + captured.out
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--model.text_ratio", "1.5"], "model.text_ratio must be in [0, 1]"),
        (["--model.image_ratio", "-0.1"], "model.image_ratio must be in [0, 1]"),
        (["--model.lr", "-0.03"], "model.lr must be >= 0"),
        (["--model.max_steps", "-1"], "model.max_steps must be >= 0"),
        (["--data.batch_size", "0"], "data.batch_size must be >= 1"),
        (["--model.samples_per_step", "0"], "model.samples_per_step must be >= 1"),
        (["--model.estimator", "rloo"], "model.samples_per_step must be >= 2 with estimator 'rloo'"),
        (["--model.reward_threshold", "-0.1"], "model.reward_threshold must be in [0, 1]"),
        (["--data.start", "6"], "data.start=6 selects no prompt of prompt list: its indices run from 0 to 5"),
        (["--data.start", "-1"], "data.start must be >= 0"),
        (["--model.backbone.name_or_path", "./no/such/janus"], "model.backbone.name_or_path: checkpoint folder not found: ./no/such/janus"),
        (["--model.lr", "fast"], 'Parser key "model.lr": Expected a <class \'float\'>. Got value: fast (see --help)'),
        (["--model.no_such_option", "1"], "unrecognized arguments: --model.no_such_option 1"),
    ],
)
def test_a_bad_option_is_one_line_naming_it(capsys, tmp_path, args, expected):
    assert expected in fail(capsys, tmp_path / "out", *args)


def test_prompt_file_problems_name_the_file_and_line(capsys, tmp_path):
    empty, malformed = tmp_path / "empty.txt", tmp_path / "broken.jsonl"
    empty.write_text("\n\n")
    malformed.write_text('{"prompt": "a cat"}\n{"prompt": \n')
    assert f"data.path: {empty}: contains no prompts" in fail(capsys, tmp_path / "out", "--data.path", str(empty))
    assert f"data.path: {malformed}:2: malformed JSON" in fail(capsys, tmp_path / "out", "--data.path", str(malformed))
    missing = tmp_path / "missing.txt"
    assert f"data.path: prompt file not found: {missing}" in fail(capsys, tmp_path / "out", "--data.path", str(missing))
    long = tmp_path / "long.txt"
    long.write_text("a cat\n" + "b" * 3000 + "\n")
    assert f"{long}:2: prompt 1 is 3000 characters long" in fail(capsys, tmp_path / "out", "--data.path", str(long))


def test_an_output_dir_that_is_a_file_or_not_writable_is_refused(capsys, tmp_path):
    a_file = tmp_path / "results.txt"
    a_file.write_text("not a folder")
    for out, expected in [
        (a_file, f"--output_dir {a_file} is a file, not a folder"),
        (a_file / "sub", f"--output_dir {a_file / 'sub'}: {a_file} is a file"),
        (Path("/proc/milr-out"), "--output_dir /proc/milr-out is not writable"),
    ]:
        with pytest.raises(SystemExit) as exit_:
            train_free_runner.main(["--output_dir", str(out)])
        assert exit_.value.code == 2
        assert expected in capsys.readouterr().err
    assert a_file.read_text() == "not a folder"


def test_a_reward_fragment_as_the_only_config_asks_for_a_main_config_first(capsys, tmp_path):
    line = fail(capsys, tmp_path / "out", "--config", str(ROOT / "configs" / "rewards" / "wise.yaml"))
    assert "only sets the reward: add a main config first" in line and "--config configs/janus_pro_7b_geneval.yaml" in line


def test_a_real_bug_still_shows_its_traceback(tmp_path):
    """Errors that are not the user's options (here a reward that crashes) keep their traceback."""
    code = (
        "import train_free_runner; train_free_runner.main(['--config', 'configs/tiny.yaml', '--output_dir', %r, '--model.reward', "
        "'tests.helpers.FailingReward', '--model.reward.fail_on', '1', '--model.max_steps', '1'])" % str(tmp_path)
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "reward server went away" in proc.stderr


def test_help_lists_milrs_options_with_the_configs_values_and_points_at_the_full_list(capsys):
    with pytest.raises(SystemExit) as exit_:
        train_free_runner.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--model.max_steps 8" in out  # configs/tiny.yaml's value (the tests' default config), not the class default (20)
    assert "share of the think-text tokens whose latents are optimised" in out
    assert "--model.backbone.name_or_path tiny" in out and "--data.batch_size 4" in out
    assert "--help-all" in out and "--trainer.accelerator" not in out
    with pytest.raises(SystemExit):
        train_free_runner.main(["--help-all"])
    assert "--trainer.accelerator" in capsys.readouterr().out


def test_a_plain_function_reward_works_from_the_command_line(tmp_path):
    summary = train_free_runner.main(
        ["--output_dir", str(tmp_path), "--model.reward", "tests.helpers.mean_brightness", "--model.max_steps", "1",
         "--trainer.enable_progress_bar", "false"]
    )
    assert summary["prompts"] == 6
