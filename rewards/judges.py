"""Vision-language judges shared by the VLM-judge rewards (WISE, UnifiedReward).

A judge answers chat conversations (OpenAI-style messages whose content parts are text or a
PIL image) with text. Two back-ends: any OpenAI-compatible chat endpoint over plain HTTP
(``OpenAIJudge``) and a local Qwen2.5-VL or Qwen3-VL through transformers (``QwenVLJudge``). Rewards
never see raw failures as scores: ``Judge.ask`` re-asks when an answer does not parse and
raises once the attempts are spent. A remote judge that stays unreachable raises
``JudgeUnavailable``, a ``TransientRewardError``, so the caller's ``CallPolicy`` may retry it.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import http.client
import io
import json
import logging
import os
import tempfile
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, TypeVar, Union

import torch
from PIL import Image

from rewards.base import TransientRewardError, retry
from rewards.hub import load_pretrained

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: OpenAI-style chat messages; content parts are {"type": "text", "text": str} or {"type": "image", "image": PIL}
Conversation = list[dict[str, Any]]


class JudgeError(RuntimeError):
    """The judge could not produce a usable answer (network, HTTP or unparseable output)."""


class JudgeUnavailable(JudgeError, TransientRewardError):
    """The judge did not answer (network error, timeout, HTTP 429 or 5xx): worth asking again later."""


class JudgeParseError(JudgeError):
    """The judge answered, but not in the format the reward's rules can read."""


def conversation(*parts: Union[str, Image.Image], system: Optional[str] = None) -> Conversation:
    """One user turn made of ``parts`` in order (text and images), optionally after a system turn."""
    content = [{"type": "text", "text": p} if isinstance(p, str) else {"type": "image", "image": p} for p in parts]
    messages: Conversation = [{"role": "system", "content": [{"type": "text", "text": system}]}] if system else []
    return messages + [{"role": "user", "content": content}]


def conversation_images(conv: Conversation) -> list[Image.Image]:
    return [part["image"] for message in conv for part in message["content"] if part["type"] == "image"]


def png_bytes(image: Image.Image) -> bytes:
    """PNG encoding, as the official WISE judge sends images (lossless, so the cache key is the pixels)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def cache_key(model: str, conv: Conversation) -> str:
    """sha256 over the judge model, every message's role and text, and every image's PNG bytes."""
    digest = hashlib.sha256(model.encode())
    for message in conv:
        digest.update(b"\x00role\x00" + message["role"].encode())
        for part in message["content"]:
            if part["type"] == "text":
                digest.update(b"\x00text\x00" + part["text"].encode())
            else:
                digest.update(b"\x00image\x00" + png_bytes(part["image"]))
    return digest.hexdigest()


class Judge:
    """Base class: batched ``generate`` plus parse-and-retry (``ask``) and an optional disk cache.

    Only answers that parse are cached, so a malformed answer is re-asked, never replayed.
    """

    #: greedy local decoding repeats itself, so re-asking after a parse failure is pointless
    deterministic: bool = False

    def __init__(self, model: str, *, parse_attempts: int = 3, cache_dir: Optional[str] = None) -> None:
        if parse_attempts < 1:
            raise ValueError("parse_attempts must be >= 1")
        self.model = model
        self.parse_attempts = parse_attempts
        self.cache_dir = Path(cache_dir) if cache_dir else None

    def generate(self, conversations: list[Conversation]) -> list[str]:
        raise NotImplementedError

    def ask(self, conversations: list[Conversation], parse: Callable[[str], T]) -> list[tuple[T, str]]:
        """``(parse(answer), answer)`` per conversation; ``parse`` raises ``ValueError`` on bad answers."""
        results: list[Optional[tuple[T, str]]] = [None] * len(conversations)
        keys = [cache_key(self.model, c) for c in conversations] if self.cache_dir else [None] * len(conversations)
        for i, key in enumerate(keys):
            if (cached := self._cache_get(key)) is not None:
                with contextlib.suppress(ValueError):  # the parsing rules changed since: ask again
                    results[i] = (parse(cached), cached)
        pending = [i for i, result in enumerate(results) if result is None]
        attempts = 1 if self.deterministic else self.parse_attempts
        last_answer = ""
        for attempt in range(1, attempts + 1):
            if not pending:
                break
            answers = self.generate([conversations[i] for i in pending])
            failed = []
            for i, answer in zip(pending, answers):
                try:
                    results[i] = (parse(answer), answer)
                except ValueError as err:
                    logger.warning("judge %s: unparseable answer (attempt %d/%d): %s", self.model, attempt, attempts, err)
                    failed.append(i)
                    last_answer = answer
                    continue
                self._cache_put(keys[i], answer)
            pending = failed
        if pending:
            raise JudgeParseError(
                f"judge {self.model}: {len(pending)} answer(s) could not be parsed after {attempts} attempt(s) "
                f"(batch items {pending}); last answer: {last_answer[:300]!r}"
            )
        return results  # type: ignore[return-value]

    def _cache_get(self, key: Optional[str]) -> Optional[str]:
        if key is None or not (path := self.cache_dir / f"{key}.json").is_file():
            return None
        return json.loads(path.read_text())["answer"]

    def _cache_put(self, key: Optional[str], answer: str) -> None:
        if key is None:
            return
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        # atomic write: concurrent runs sharing a cache never read half a file
        with tempfile.NamedTemporaryFile("w", dir=self.cache_dir, suffix=".tmp", delete=False) as f:
            json.dump({"model": self.model, "answer": answer}, f)
        os.replace(f.name, self.cache_dir / f"{key}.json")


class OpenAIJudge(Judge):
    """Any OpenAI-compatible ``/chat/completions`` endpoint (OpenAI, Azure-compatible proxies, vLLM).

    The API key is read from the environment variable named ``api_key_env`` at request time and is
    scrubbed from every log line and error; an empty ``api_key_env`` sends no Authorization header
    (local vLLM servers). Network errors, timeouts, 429 and 5xx are retried with exponential
    backoff (``backoff * 2**i`` seconds, capped at ``backoff_max``) ``max_retries`` times per
    request (``rewards.base.retry``), then raise ``JudgeUnavailable``.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str = "https://api.openai.com/v1",
        api_key_env: str = "OPENAI_API_KEY",
        temperature: float = 0.0,
        max_tokens: int = 2000,
        timeout: float = 60.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        backoff_max: float = 60.0,
        max_workers: int = 4,
        extra_body: Optional[dict[str, Any]] = None,
        parse_attempts: int = 3,
        cache_dir: Optional[str] = None,
    ) -> None:
        super().__init__(model, parse_attempts=parse_attempts, cache_dir=cache_dir)
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.api_key_env = api_key_env
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.max_workers = max_workers
        self.extra_body = dict(extra_body or {})

    def generate(self, conversations: list[Conversation]) -> list[str]:
        if len(conversations) <= 1 or self.max_workers <= 1:
            return [self.complete(c) for c in conversations]
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(conversations))) as pool:
            return list(pool.map(self.complete, conversations))

    def complete(self, conv: Conversation) -> str:
        """One chat completion, with bounded retries on transient failures."""
        body = json.dumps(
            {
                "model": self.model,
                "messages": [openai_message(m) for m in conv],
                "temperature": self.temperature,
                "max_tokens": self.max_tokens,
                **self.extra_body,
            }
        ).encode()
        key = self._api_key()
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}

        def log_retry(n: int, err: Exception, delay: float) -> None:
            logger.warning("judge %s: %s; retry %d/%d in %.2fs", self.model, err, n, self.max_retries, delay)

        try:
            return retry(lambda: self._post(body, headers, key), retries=self.max_retries, backoff=self.backoff,
                         backoff_max=self.backoff_max, on_retry=log_retry)
        except JudgeUnavailable as err:
            raise JudgeUnavailable(
                f"judge {self.model} at {self.url}: failed after {self.max_retries + 1} attempt(s); last error: {err}"
            ) from None

    def _post(self, body: bytes, headers: dict[str, str], key: str) -> str:
        """One request: the answer text, ``JudgeUnavailable`` for a transient failure, ``JudgeError`` for a rejected request."""
        try:
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return _answer_text(json.loads(response.read()))
        except urllib.error.HTTPError as err:
            detail = err.read()[:300].decode(errors="replace")
            reason = _redact(f"HTTP {err.code} {err.reason}: {detail}", key)
            if err.code != 429 and err.code < 500:
                raise JudgeError(f"judge {self.model} at {self.url}: request rejected, {reason}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException, ValueError) as err:
            reason = _redact(f"{type(err).__name__}: {err}", key)
        raise JudgeUnavailable(reason)

    def _api_key(self) -> str:
        if not self.api_key_env:
            return ""
        key = os.environ.get(self.api_key_env, "")
        if not key:
            raise JudgeError(
                f"judge {self.model}: environment variable {self.api_key_env} is not set; export the API key "
                "there (or set api_key_env to an empty string for an endpoint without authentication)"
            )
        return key


def openai_message(message: dict[str, Any]) -> dict[str, Any]:
    """Our message -> OpenAI wire format: images become base64 PNG data URLs, as in WISE's gpt_eval."""
    parts = []
    for part in message["content"]:
        if part["type"] == "text":
            parts.append({"type": "text", "text": part["text"]})
        else:
            data = base64.b64encode(png_bytes(part["image"])).decode()
            parts.append({"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}})
    return {"role": message["role"], "content": parts}


def _answer_text(payload: Any) -> str:
    """``choices[0].message.content``; anything else is a malformed response (``ValueError``, retried)."""
    try:
        content = payload["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as err:
        raise ValueError(f"malformed chat completion response ({type(err).__name__}: {err})") from None
    if not isinstance(content, str):
        raise ValueError(f"malformed chat completion response: content is {type(content).__name__}")
    return content


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "[REDACTED]") if secret else text


#: the Qwen VL model types a local judge loads: model class, processor class (names in ``transformers``)
QWEN_VL_CLASSES: dict[str, tuple[str, str]] = {
    "qwen2_5_vl": ("Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor"),
    "qwen3_vl": ("Qwen3VLForConditionalGeneration", "Qwen3VLProcessor"),
}


@functools.cache
def image_only_processor_class(processor_class: type) -> type:
    """``processor_class`` (a Qwen VL processor) without its video processor.

    transformers' Qwen VL video processors need torchvision, which milr does not depend on, so
    ``AutoProcessor`` cannot build these processors here. Judges only send images; the subclass
    keeps the official image path (image-pad expansion, ``mm_token_type_ids`` for M-RoPE) and
    reads the same checkpoint files (image processor config, tokenizer, chat template).
    """

    class ImageOnlyProcessor(processor_class):
        @classmethod
        def get_attributes(cls) -> list[str]:
            return [name for name in super().get_attributes() if name != "video_processor"]

    ImageOnlyProcessor.__name__ = ImageOnlyProcessor.__qualname__ = f"ImageOnly{processor_class.__name__}"
    return ImageOnlyProcessor


class QwenVLJudge(Judge):
    """A local Qwen2.5-VL or Qwen3-VL (``*ForConditionalGeneration`` + its processor, chosen by the
    checkpoint's ``model_type``): greedy answers (``generate``) or first-answer-token logits
    (``next_token_logits``).

    Loaded lazily on first use and once; ``place`` sets the device/dtype (the reward's ``setup``).
    Batches are left-padded so every row's answer starts at the same position.
    """

    deterministic = True

    def __init__(
        self,
        model_name_or_path: str = "Qwen/Qwen2.5-VL-7B-Instruct",
        *,
        what: str = "Qwen2.5-VL judge",
        max_new_tokens: int = 512,
        batch_size: int = 4,
        cache_dir: Optional[str] = None,
    ) -> None:
        super().__init__(model_name_or_path, parse_attempts=1, cache_dir=cache_dir)
        self.what = what
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self._model: Any = None
        self._processor: Any = None

    def place(self, device: Union[torch.device, str], dtype: torch.dtype) -> None:
        self.device, self.dtype = torch.device(device), dtype
        if self._model is not None:
            self._model.to(device=self.device, dtype=self.dtype)

    def _load(self) -> None:
        import transformers

        config = load_pretrained(transformers.AutoConfig.from_pretrained, self.model, what=self.what)
        if config.model_type not in QWEN_VL_CLASSES:
            raise ValueError(f"{self.what}: {self.model!r} is a {config.model_type!r} model; supported: {sorted(QWEN_VL_CLASSES)}")
        model_class, processor_class = (getattr(transformers, name) for name in QWEN_VL_CLASSES[config.model_type])
        model = load_pretrained(model_class.from_pretrained, self.model, what=self.what, dtype=self.dtype)
        processor = load_pretrained(image_only_processor_class(processor_class).from_pretrained, self.model, what=f"{self.what} processor")
        processor.tokenizer.padding_side = "left"
        self._model, self._processor = model.to(self.device).eval(), processor

    @property
    def tokenizer(self) -> Any:
        if self._model is None:
            self._load()
        return self._processor.tokenizer

    def _batches(self, conversations: list[Conversation]) -> Iterator[Any]:
        """Model inputs of ``batch_size`` conversations at a time: chat template with the
        generation prompt, left-padded, images expanded to their placeholder tokens."""
        if self._model is None:
            self._load()
        for start in range(0, len(conversations), self.batch_size):
            chunk = conversations[start : start + self.batch_size]
            texts = [self._processor.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chunk]
            images = [image.convert("RGB") for c in chunk for image in conversation_images(c)]
            inputs = self._processor(text=texts, images=images or None, padding=True, return_tensors="pt").to(self.device)
            if "pixel_values" in inputs:
                inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
            yield inputs

    @torch.inference_mode()
    def generate(self, conversations: list[Conversation]) -> list[str]:
        answers: list[str] = []
        for inputs in self._batches(conversations):
            output = self._model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
            new_tokens = output[:, inputs["input_ids"].shape[1] :]
            answers += self._processor.batch_decode(new_tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        return answers

    @torch.inference_mode()
    def next_token_logits(self, conversations: list[Conversation]) -> torch.Tensor:
        """fp32 logits ``[N, V]`` (on the CPU) of each conversation's first answer token: one forward pass, no decoding."""
        return torch.cat([self._model(**inputs, logits_to_keep=1, use_cache=False).logits[:, -1].float().cpu() for inputs in self._batches(conversations)])
