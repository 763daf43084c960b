"""The shared VLM-judge back-ends: OpenAI-compatible HTTP client (against a local fake server) and local Qwen2.5-VL."""

from __future__ import annotations

import base64
import io
import json
import logging
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from rewards import base, judges
from rewards.hub import MissingCheckpointError
from rewards.base import TransientRewardError
from rewards.judges import JudgeError, JudgeParseError, JudgeUnavailable, OpenAIJudge, QwenVLJudge, cache_key, conversation
from tests.rewards.tiny_models import tiny_qwen_vl

SECRET = "sk-test-DO-NOT-LEAK-0123456789abcdef"


@pytest.fixture(autouse=True)
def local_server_without_proxies(monkeypatch):
    """The fake judge server is on 127.0.0.1: no proxy may intercept it."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


def image(color=(200, 30, 30), size=(16, 12)) -> Image.Image:
    return Image.new("RGB", size, color)


def ok(content: str) -> tuple:
    return ("json", 200, {"choices": [{"message": {"role": "assistant", "content": content}}]})


class FakeChatServer:
    """OpenAI-compatible ``/chat/completions`` on 127.0.0.1 answering from a script of responses.

    Script items: ("json", status, obj) | ("raw", status, bytes) | ("sleep", seconds, next_item).
    When the script runs out, every request gets ``default``. Requests are recorded.
    """

    def __init__(self, default=None):
        self.script: list[tuple] = []
        self.default = default or ok("Score: 1")
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    item = server.script.pop(0) if server.script else server.default
                if item[0] == "sleep":
                    time.sleep(item[1])
                    item = item[2]
                kind, status, payload = item
                data = payload if kind == "raw" else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    with FakeChatServer() as s:
        yield s


@pytest.fixture
def sleeps(monkeypatch):
    """Record backoff delays instead of sleeping them."""
    delays: list[float] = []
    monkeypatch.setattr(base, "time", SimpleNamespace(sleep=delays.append))  # rewards.base.retry sleeps; not the server's time.sleep
    return delays


def make_judge(server, **kw) -> OpenAIJudge:
    kw = {"model": "judge-model", "base_url": server.url, "api_key_env": "FAKE_JUDGE_KEY", "timeout": 2.0,
          "max_retries": 3, "backoff": 0.01, "max_workers": 1, **kw}
    return OpenAIJudge(kw.pop("model"), **kw)


def parse_score(answer: str) -> int:
    if not answer.startswith("Score: "):
        raise ValueError(f"not a score: {answer!r}")
    return int(answer.removeprefix("Score: "))


# --------------------------------------------------------------------------- remote judge


def test_request_carries_model_settings_key_and_png_image(server, monkeypatch):
    monkeypatch.setenv("FAKE_JUDGE_KEY", SECRET)
    server.script = [ok("Score: 2")]
    img = image()
    judge = make_judge(server, temperature=0.0, max_tokens=123)
    [(value, answer)] = judge.ask([conversation("rate this", img, system="be strict")], parse_score)
    assert (value, answer) == (2, "Score: 2")
    [request] = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == f"Bearer {SECRET}"
    body = request["body"]
    assert (body["model"], body["temperature"], body["max_tokens"]) == ("judge-model", 0.0, 123)
    system, user = body["messages"]
    assert system == {"role": "system", "content": [{"type": "text", "text": "be strict"}]}
    assert user["role"] == "user" and user["content"][0] == {"type": "text", "text": "rate this"}
    url = user["content"][1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert sent.format == "PNG" and sent.convert("RGB").tobytes() == img.convert("RGB").tobytes()


def test_timeout_is_retried_then_succeeds(server, monkeypatch, sleeps):
    monkeypatch.setenv("FAKE_JUDGE_KEY", SECRET)
    server.script = [("sleep", 1.0, ok("Score: 1")), ok("Score: 0")]
    judge = make_judge(server, timeout=0.2)
    assert judge.complete(conversation("q")) == "Score: 0"
    assert len(server.requests) == 2 and sleeps == [0.01]


def test_timeout_without_retries_is_an_error(server, monkeypatch, sleeps):
    monkeypatch.setenv("FAKE_JUDGE_KEY", SECRET)
    server.script = [("sleep", 1.0, ok("Score: 1"))]
    judge = make_judge(server, timeout=0.2, max_retries=0)
    with pytest.raises(JudgeError, match="failed after 1 attempt"):
        judge.complete(conversation("q"))
    assert sleeps == []


def test_5xx_and_429_are_retried_with_exponential_backoff(server, monkeypatch, sleeps):
    monkeypatch.setenv("FAKE_JUDGE_KEY", SECRET)
    server.script = [("json", 503, {"error": "busy"}), ("json", 429, {"error": "slow down"}), ok("Score: 1")]
    judge = make_judge(server, backoff=0.5, backoff_max=10.0)
    assert judge.complete(conversation("q")) == "Score: 1"
    assert len(server.requests) == 3
    assert sleeps == [0.5, 1.0]


def test_backoff_is_capped_and_retries_are_bounded(server, monkeypatch, sleeps):
    monkeypatch.setenv("FAKE_JUDGE_KEY", SECRET)
    server.default = ("json", 500, {"error": "down"})
    judge = make_judge(server, max_retries=4, backoff=1.0, backoff_max=3.0)
    with pytest.raises(JudgeUnavailable, match=r"failed after 5 attempt\(s\).*HTTP 500") as err:
        judge.complete(conversation("q"))
    assert len(server.requests) == 5
    assert sleeps == [1.0, 2.0, 3.0, 3.0]
    assert isinstance(err.value, TransientRewardError)  # the run's reward_retries may ask again later


def test_malformed_response_payload_is_retried(server, monkeypatch, sleeps):
    monkeypatch.setenv("FAKE_JUDGE_KEY", SECRET)
    server.script = [("raw", 200, b"<html>proxy error</html>"), ("json", 200, {"choices": []}), ok("Score: 1")]
    assert make_judge(server).complete(conversation("q")) == "Score: 1"
    assert len(server.requests) == 3


def test_client_error_is_not_retried_and_key_is_redacted(server, monkeypatch, sleeps):
    monkeypatch.setenv("FAKE_JUDGE_KEY", SECRET)
    # some providers echo the key they rejected
    server.script = [("json", 401, {"error": {"message": f"Incorrect API key provided: {SECRET}"}})]
    with pytest.raises(JudgeError) as err:
        make_judge(server).complete(conversation("q"))
    assert len(server.requests) == 1 and sleeps == []
    assert not isinstance(err.value, TransientRewardError)  # a rejected request is not asked again
    assert "HTTP 401" in str(err.value) and "[REDACTED]" in str(err.value)
    assert SECRET not in "".join(traceback.format_exception(err.value))


def test_unparseable_answers_are_reasked_then_an_error(server, monkeypatch, sleeps):
    monkeypatch.setenv("FAKE_JUDGE_KEY", SECRET)
    server.default = ok("I cannot rate this image.")
    judge = make_judge(server, parse_attempts=3)
    with pytest.raises(JudgeParseError, match=r"after 3 attempt\(s\).*I cannot rate"):
        judge.ask([conversation("q", image())], parse_score)
    assert len(server.requests) == 3


def test_unparseable_answer_then_good_answer_is_used(server, monkeypatch):
    monkeypatch.setenv("FAKE_JUDGE_KEY", SECRET)
    server.script = [ok("hmm"), ok("Score: 1")]
    assert make_judge(server).ask([conversation("q")], parse_score) == [(1, "Score: 1")]
    assert len(server.requests) == 2


def test_key_never_appears_in_logs_errors_answers_or_cache(server, monkeypatch, sleeps, caplog, tmp_path):
    monkeypatch.setenv("FAKE_JUDGE_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    server.script = [
        ("json", 500, {"error": f"upstream rejected {SECRET}"}),
        ok("garbled"),
        ok("Score: 1"),
        ("json", 403, {"error": f"key {SECRET} revoked"}),
    ]
    judge = make_judge(server, cache_dir=str(tmp_path / "cache"))
    results = judge.ask([conversation("q", image())], parse_score)
    with pytest.raises(JudgeError) as err:
        judge.ask([conversation("other", image())], parse_score)
    assert "retry" in caplog.text and "unparseable" in caplog.text  # the failures were logged ...
    assert SECRET not in caplog.text  # ... without the key
    assert SECRET not in json.dumps(results)
    assert SECRET not in "".join(traceback.format_exception(err.value))
    files = list((tmp_path / "cache").iterdir())
    assert files and all(SECRET not in f.read_text() for f in files)


def test_missing_key_variable_is_named_in_the_error(server, monkeypatch):
    monkeypatch.delenv("FAKE_JUDGE_KEY", raising=False)
    with pytest.raises(JudgeError, match="FAKE_JUDGE_KEY is not set"):
        make_judge(server).complete(conversation("q"))
    assert server.requests == []


def test_empty_key_variable_name_sends_no_authorization(server):
    make_judge(server, api_key_env="").complete(conversation("q"))
    assert "Authorization" not in server.requests[0]["headers"]


def test_extra_body_is_sent(server, monkeypatch):
    monkeypatch.setenv("FAKE_JUDGE_KEY", SECRET)
    make_judge(server, extra_body={"chat_template_kwargs": {"enable_thinking": False}}).complete(conversation("q"))
    assert server.requests[0]["body"]["chat_template_kwargs"] == {"enable_thinking": False}


def test_disk_cache_avoids_a_second_request(server, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_JUDGE_KEY", SECRET)
    server.script = [ok("Score: 1"), ok("Score: 0")]
    cache = tmp_path / "cache"
    conv = conversation("q", image())
    assert make_judge(server, cache_dir=str(cache)).ask([conv], parse_score) == [(1, "Score: 1")]
    # a new judge (new process) with the same cache: same pixels + text + model -> no request
    assert make_judge(server, cache_dir=str(cache)).ask([conversation("q", image())], parse_score) == [(1, "Score: 1")]
    assert len(server.requests) == 1
    # a different image is a different key
    assert make_judge(server, cache_dir=str(cache)).ask([conversation("q", image((0, 0, 0)))], parse_score)[0][0] == 0
    assert len(server.requests) == 2
    [entry, *_] = [json.loads(f.read_text()) for f in cache.glob("*.json")]
    assert set(entry) == {"model", "answer"}


def test_unparseable_answers_are_not_cached(server, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_JUDGE_KEY", SECRET)
    server.default = ok("no score here")
    with pytest.raises(JudgeParseError):
        make_judge(server, cache_dir=str(tmp_path), parse_attempts=2).ask([conversation("q")], parse_score)
    assert list(tmp_path.glob("*.json")) == []


def test_concurrent_requests_keep_batch_order(server, monkeypatch):
    monkeypatch.setenv("FAKE_JUDGE_KEY", SECRET)
    server.script = [("sleep", 0.3, ok("Score: 1")), ok("Score: 2"), ok("Score: 3")]
    judge = make_judge(server, max_workers=3)
    answers = judge.generate([conversation(f"q{i}") for i in range(3)])
    # each answer belongs to the request that got it, whatever the completion order
    by_prompt = {r["body"]["messages"][0]["content"][0]["text"]: i for i, r in enumerate(server.requests)}
    assert answers == [f"Score: {by_prompt[f'q{i}'] + 1}" for i in range(3)]


def test_cache_key_depends_on_model_text_and_pixels():
    base = cache_key("m", conversation("q", image()))
    assert base == cache_key("m", conversation("q", image()))
    assert base != cache_key("m2", conversation("q", image()))
    assert base != cache_key("m", conversation("q2", image()))
    assert base != cache_key("m", conversation("q", image((0, 0, 1))))
    assert base != cache_key("m", conversation("q", image(), system="s"))


# --------------------------------------------------------------------------- local Qwen2.5-VL judge

@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory):
    return str(tiny_qwen_vl(tmp_path_factory.mktemp("tiny-qwen2.5-vl")))


def test_local_judge_batched_generation_matches_one_by_one(tiny_qwen):
    convs = [
        conversation(image((255, 0, 0), (40, 30)), "Final Score"),
        conversation("Rate the image please, then give Consistency", image((0, 0, 255), (28, 56)), system="Rate."),
        conversation(image((0, 255, 0)), "Rate"),
    ]
    batched = QwenVLJudge(tiny_qwen, max_new_tokens=6, batch_size=3)
    single = QwenVLJudge(tiny_qwen, max_new_tokens=6, batch_size=1)
    answers = batched.generate(convs)
    assert len(answers) == 3 and all(isinstance(a, str) and a for a in answers)
    # left padding: a row's greedy answer does not depend on the rest of its batch
    assert answers == single.generate(convs)
    model = batched._model
    batched.generate(convs[:1])
    assert batched._model is model  # loaded once


def test_local_judge_sees_the_image(tiny_qwen):
    judge = QwenVLJudge(tiny_qwen, max_new_tokens=4)
    judge.generate([conversation(image(), "Rate")])
    processor = judge._processor
    text = processor.apply_chat_template(conversation(image(), "Rate"), tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|>")
    inputs = processor(text=[text], images=[image()], return_tensors="pt")
    n_image_tokens = int((inputs["input_ids"] == processor.image_token_id).sum())
    assert n_image_tokens == int(inputs["image_grid_thw"].prod()) // 4 > 0  # placeholder expanded per 2x2 merge
    assert inputs["mm_token_type_ids"].sum() == n_image_tokens  # M-RoPE knows where the image is


def test_local_judge_does_not_reask_after_unparseable_answer(tiny_qwen, monkeypatch):
    judge = QwenVLJudge(tiny_qwen, max_new_tokens=3)
    calls = []
    monkeypatch.setattr(judge, "generate", lambda convs: calls.append(convs) or ["gibberish"] * len(convs))
    with pytest.raises(JudgeParseError, match=r"after 1 attempt"):
        judge.ask([conversation(image(), "Rate")], parse_score)
    assert len(calls) == 1  # greedy decoding would only repeat itself


def test_local_judge_place_moves_dtype(tiny_qwen):
    judge = QwenVLJudge(tiny_qwen, max_new_tokens=2)
    judge.place("cpu", torch.bfloat16)
    judge.generate([conversation(image(), "Rate")])
    assert next(judge._model.parameters()).dtype == torch.bfloat16


def test_local_judge_missing_weights_names_the_checkpoint(tmp_path):
    missing = str(tmp_path / "no-such-qwen")
    with pytest.raises(MissingCheckpointError, match="no-such-qwen") as err:
        QwenVLJudge(missing, what="test judge").generate([conversation(image(), "Rate")])
    assert "test judge" in str(err.value)
