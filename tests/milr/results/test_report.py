"""``milr.report``: the numbers it prints, and the page as a browser loads it."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from milr.results import report
from rewards import wise
from tests.run_folders import FakePrompt, Step, fake_run


def judged(pid: int, cra: list[tuple[int, int, int]], monitor: tuple[float, float], method: str) -> FakePrompt:
    steps = [
        Step((0.7 * c + 0.2 * r + 0.1 * a) / 2, text=f"think {pid} step {i}",
             details={"prompt_id": pid, "judge": "j", "consistency": float(c), "realism": float(r), "aesthetic_quality": float(a)})
        for i, (c, r, a) in enumerate(cra)
    ]
    meta = {"Prompt": f"prompt {pid}", "prompt": f"prompt {pid}", "prompt_id": pid}
    return FakePrompt(f"wise_{pid:04d}", meta, [steps], monitors=[{"clip": {"initial": monitor[0], "selected": monitor[1]}}], method=method)


@pytest.fixture()
def runs(tmp_path):
    base = fake_run(tmp_path / "base", [judged(i, [(0, 0, 0)], (0.3, 0.3), "base") for i in (1, 2, 401, 950)])
    milr = fake_run(tmp_path / "milr", [
        judged(1, [(0, 0, 0), (2, 2, 2)], (0.3, 0.5), "milr"),
        judged(2, [(0, 0, 0), (1, 0, 0)], (0.3, 0.1), "milr"),  # reward up, monitor down: flagged
        judged(401, [(0, 0, 0), (2, 0, 0)], (0.3, 0.3), "milr"),
        judged(950, [(0, 0, 0)], (0.3, 0.3), "milr"),
    ])
    for run in (base, milr):
        wise.main([str(run)])
    return base, milr


def test_paired_difference_and_bootstrap_interval(runs):
    base, milr = (report.load(r) for r in runs)
    diffs = np.array([1.0, 0.35, 0.7, 0.0])  # WiScore of each prompt's selected image minus base's (0)
    p = report.paired(base, milr, report.reward_metric, resamples=4000)
    assert p["n"] == 4 and p["diff"] == pytest.approx(diffs.mean())
    assert p["low"] < p["diff"] < p["high"] and p["low"] >= 0.0 and p["high"] <= 1.0
    official = report.paired(base, milr, report.official_metric("wise"), resamples=100)
    assert official["diff"] == pytest.approx(diffs.mean())
    assert report.paired(base, milr, report.monitor_metric("clip"), 100)["diff"] == pytest.approx((0.2 - 0.2) / 4)
    assert report.bootstrap(np.array([0.5])) == (None, None)  # one prompt: no interval, not a fake one


def test_report_tables_hold_official_scores_monitors_costs_and_flags(runs):
    path = report.main([str(r) for r in runs])
    md = (runs[0] / "report.md").read_text()
    assert path == runs[0] / "report.html"
    # official WISE per category, the monitor's mean beside it, and the missing overall said so
    assert "| CULTURE | 0.000 (n=2) | 0.300 | 0.675 (n=2) | 0.300 |" in md
    assert "| CHEMISTRY | 0.000 (n=1) | 0.300 | 0.000 (n=1) | 0.300 |" in md
    assert "996 of prompt_ids 1-1000 missing" in md
    assert "| milr | 4 | 4 | 0.000 | 0.512 | 0.300 → 0.300 | 1 |" in md  # one reward-hacking flag
    assert "| base | 1.00 | 1.00 | 1.50 | 0.00 | 0 / 0 |" in md
    assert "| milr | official wise | 4 | +0.512 |" in md


def probe(page: str) -> str:
    """The page plus a script that records, after load, how many images decoded."""
    script = ("<script>window.addEventListener('load',()=>{const imgs=[...document.images];"
              "document.body.dataset.images=imgs.length;document.body.dataset.decoded=imgs.filter(i=>i.complete&&i.naturalWidth>0).length;"
              "document.body.dataset.charts=document.querySelectorAll('svg polyline').length;});</script>")
    return page.replace("</body>", script + "</body>")


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (apt-get install chromium); CI installs it")
def test_the_page_loads_in_headless_chromium_with_every_image_and_curve(runs, tmp_path):
    page = report.main([str(r) for r in runs] + ["--out", str(tmp_path / "report")])
    text = page.read_text()
    sources = re.findall(r'<img src="data:image/png;base64,([^"]+)"', text)
    assert len(sources) == 2 * 2 * 4  # initial + selected, two runs, four prompts
    selected = (runs[1] / "wise_0002" / "samples" / "0000.png").read_bytes()
    assert base64.b64encode(selected).decode() in sources  # the file itself, embedded
    probed = tmp_path / "probe.html"
    probed.write_text(probe(text))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000"]
    dom = subprocess.run(["chromium", *flags, "--dump-dom", probed.as_uri()], capture_output=True, text=True, timeout=120).stdout
    body = re.search(r"<body([^>]*)>", dom).group(1)
    assert 'data-images="16"' in body and 'data-decoded="16"' in body and 'data-charts="4"' in body
    shot = tmp_path / "shot.png"
    subprocess.run(["chromium", *flags, f"--screenshot={shot}", "--window-size=1400,1800", page.as_uri()], capture_output=True, timeout=120)
    assert shot.stat().st_size > 10_000


def test_pairs_are_the_repeats_both_runs_have_and_prompts_missing_a_value_are_left_out(tmp_path):
    def prompt(key, rewards, monitors=None):
        return FakePrompt(key, {"prompt": key}, [[Step(r)] for r in rewards], monitors=monitors)

    a = report.load(fake_run(tmp_path / "a", [prompt("p1", [0.2, 0.9]), prompt("p2", [0.5]), prompt("p3", [0.1])]))
    b = report.load(fake_run(tmp_path / "b", [prompt("p1", [0.4]), prompt("p2", [0.5], [{"clip": {"initial": 0.1, "selected": 0.2}}]), prompt("p4", [0.3])]))
    p = report.paired(a, b, report.reward_metric, resamples=100)
    assert p["n"] == 2 and p["diff"] == pytest.approx((0.2 + 0.0) / 2)  # p1 pairs repeat 0 only; p3/p4 unpaired
    assert report.paired(a, b, report.monitor_metric("clip"), 100)["n"] == 0  # a has no monitor: nothing made up


def test_large_images_are_embedded_as_thumbnails_and_missing_ones_say_so(tmp_path):
    Image.new("RGB", (384, 384), (10, 200, 30)).save(tmp_path / "big.png")
    uri = report.data_uri(tmp_path / "big.png")
    assert uri.startswith("data:image/jpeg;base64,")
    with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as thumb:
        assert thumb.size == (256, 256)
    assert report.data_uri(tmp_path / "absent.png") is None and "n/a" in report.figure(None, "initial")


def test_reward_against_reward_calls_is_plotted_when_traces_record_them(tmp_path):
    def prompt(key, steps):
        return FakePrompt(key, {"prompt": key}, [[Step(r, calls=c) for r, c in steps]])

    bon = report.load(fake_run(tmp_path / "bon", [prompt("p1", [(0.2, 1), (0.5, 2), (0.4, 3)]), prompt("p2", [(0.6, 1)])]))
    rloo = report.load(fake_run(tmp_path / "rloo", [prompt("p1", [(0.3, 3), (0.9, 5)]), prompt("p2", [(0.1, 3)])]))
    assert report.calls_curve(bon) == ([1, 2, 3], pytest.approx([0.4, 0.55, 0.55]))  # a stopped prompt keeps its best
    assert report.calls_curve(rloo) == ([3, 4, 5], pytest.approx([0.2, 0.2, 0.5]))  # starts once every stage 0 is scored
    page = report.render_html([bon, rloo], resamples=10, limit=None)
    assert "best reward so far against reward calls" in page and page.count("<polyline") == 6
    plain = report.load(fake_run(tmp_path / "plain", [prompt("p1", [(0.2, None)])]))
    assert report.calls_curve(plain) == ([], []) and "against reward calls" not in report.render_html([plain], 10, None)
