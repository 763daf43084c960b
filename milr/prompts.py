"""The chat texts MILR feeds Janus-Pro: the think ("visualisation") prompt and the image prompt.

Both go through DeepSeek's SFT template as ``VLChatProcessor.apply_sft_template_for_multi_turn_prompts``
builds it (deepseek-ai/Janus ``janus/utils/conversation.py``, ``SeparatorStyle.DeepSeek``): each
message stripped, ``{system}\\n\\n{role}: {message}\\n\\n{role}:``, the whole string stripped. The
role string is pasted as given, so the format is fixed by the role labels:

- ``janus`` (default): ``<|User|>`` / ``<|Assistant|>``, the labels Janus-Pro was trained with and
  its own inference examples use, at every stage; the think text is stripped.
- ``reference``: the MILR authors' strings byte for byte. Their conversations say ``User`` /
  ``Assistant`` for the think prompt, the stage-0 image prompt and every ``both`` / step-order /
  image-mode image prompt, but ``<|User|>`` / ``<|Assistant|>`` in their text-mode re-generation
  (``generate_image_from_prompt``). The think text is kept as decoded, so an empty one gives
  ``"{prompt}."`` (``"{prompt}. "`` stripped).

The think template and system prompt are the authors' (docs/authors_code.md).
"""

from __future__ import annotations

from typing import Literal

PromptFormat = Literal["janus", "reference"]
PROMPT_FORMATS = ("janus", "reference")

JANUS_ROLES = ("<|User|>", "<|Assistant|>")
PLAIN_ROLES = ("User", "Assistant")

THINK_SYSTEM = "You are a helpful assistant that receives an image prompt and generate a visualization of the prompt."

THINK_TEMPLATE = (
    'You are asked to generate an image based on this prompt: "{}"\n'
    "Provide a brief, precise visualization of all elements in the prompt. Your description should:\n"
    "1. Include every object mentioned in the prompt\n"
    "2. Specify visual attributes (color, number, shape, texture) if specified in the prompt\n"
    "3. Clarify relationships (e.g., spatial) between objects if specified in the prompt\n"
    "4. Be concise (50 words or less)\n"
    "5. Focus only on what's explicitly stated in the prompt\n"
    "6. Do not elaborate beyond the attributes or relationships specified in the prompt\n"
    "Do not miss objects. Output your visualization directly without explanation:"
)


def check_prompt_format(fmt: str) -> None:
    if fmt not in PROMPT_FORMATS:
        raise ValueError(f"prompt_format must be one of {PROMPT_FORMATS}, got {fmt!r}")


def chat(message: str, system: str = "", roles: tuple[str, str] = JANUS_ROLES) -> str:
    """One user turn and an open assistant turn in DeepSeek's SFT template."""
    head = f"{system}\n\n" if system else ""
    message = message.strip()
    user = f"{roles[0]}: {message}\n\n" if message else f"{roles[0]}:"
    return f"{head}{user}{roles[1]}:".strip()


def think_prompt(prompt: str, fmt: PromptFormat = "janus") -> str:
    check_prompt_format(fmt)
    return chat(THINK_TEMPLATE.format(prompt), system=THINK_SYSTEM, roles=JANUS_ROLES if fmt == "janus" else PLAIN_ROLES)


def think_text(decoded: str, fmt: PromptFormat = "janus") -> str:
    """The think text as the format uses it: stripped (``janus``) or as decoded (``reference``)."""
    check_prompt_format(fmt)
    return decoded.strip() if fmt == "janus" else decoded


def image_prompt(prompt: str, think: str | None, fmt: PromptFormat = "janus", *, text_regeneration: bool = False) -> str:
    """The image prompt: ``"{prompt}. {think}"``; the bare prompt when ``think`` is None (the
    authors' image mode) and, in ``janus``, also when it is empty. ``text_regeneration`` marks the
    authors' text-mode re-generation, the one place their labels are ``<|User|>``."""
    check_prompt_format(fmt)
    if fmt == "janus":
        return chat(f"{prompt}. {think}" if think else prompt)
    message = prompt if think is None else f"{prompt}. {think}"
    return chat(message, roles=JANUS_ROLES if text_regeneration else PLAIN_ROLES)
