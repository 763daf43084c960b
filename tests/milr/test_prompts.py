"""Golden strings: the exact chat texts each stage of each mode feeds Janus, in both prompt formats.

The expected strings are written out by hand from the authors' code (miyapeng/MILR
``ori_generation_janus.py`` / ``opt_generation_janus.py`` / ``opt_generation_janus_text_image.py``)
and DeepSeek's SFT template (deepseek-ai/Janus ``conversation.py``: ``{system}\\n\\n{role}: {msg}\\n\\n{role}:``,
each message stripped, the whole string stripped, the role label pasted as given).
"""

from __future__ import annotations

import pytest

import milr
from milr.prompts import chat, image_prompt, think_prompt, think_text
from tests.helpers import ConstantReward

THINK_BODY = (
    'You are asked to generate an image based on this prompt: "a red apple"\n'
    "Provide a brief, precise visualization of all elements in the prompt. Your description should:\n"
    "1. Include every object mentioned in the prompt\n"
    "2. Specify visual attributes (color, number, shape, texture) if specified in the prompt\n"
    "3. Clarify relationships (e.g., spatial) between objects if specified in the prompt\n"
    "4. Be concise (50 words or less)\n"
    "5. Focus only on what's explicitly stated in the prompt\n"
    "6. Do not elaborate beyond the attributes or relationships specified in the prompt\n"
    "Do not miss objects. Output your visualization directly without explanation:"
)
SYSTEM = "You are a helpful assistant that receives an image prompt and generate a visualization of the prompt."
THINK_REFERENCE = SYSTEM + "\n\nUser: " + THINK_BODY + "\n\nAssistant:"
THINK_JANUS = SYSTEM + "\n\n<|User|>: " + THINK_BODY + "\n\n<|Assistant|>:"

DECODED = " A shiny red apple.\n"  # a think text as the tokenizer decodes it: leading space, trailing newline
# reference: the think text kept as decoded inside the message; only the message's ends are stripped
REF_WITH_THINK = "User: a red apple.  A shiny red apple.\n\nAssistant:"
REF_TEXT_REGEN = "<|User|>: a red apple.  A shiny red apple.\n\n<|Assistant|>:"
REF_IMAGE_MODE = "User: a red apple\n\nAssistant:"
JANUS_WITH_THINK = "<|User|>: a red apple. A shiny red apple.\n\n<|Assistant|>:"
JANUS_BARE = "<|User|>: a red apple\n\n<|Assistant|>:"


def test_think_prompts():
    assert think_prompt("a red apple", "reference") == THINK_REFERENCE
    assert think_prompt("a red apple", "janus") == THINK_JANUS == think_prompt("a red apple")


def test_image_prompts_and_think_whitespace():
    ref = think_text(DECODED, "reference")
    assert ref == DECODED
    assert image_prompt("a red apple", ref, "reference") == REF_WITH_THINK
    assert image_prompt("a red apple", ref, "reference", text_regeneration=True) == REF_TEXT_REGEN
    assert image_prompt("a red apple", None, "reference") == REF_IMAGE_MODE
    assert image_prompt("a red apple", "", "reference") == "User: a red apple.\n\nAssistant:"  # "{prompt}. " stripped
    janus = think_text(DECODED, "janus")
    assert janus == "A shiny red apple."
    assert image_prompt("a red apple", janus, "janus") == JANUS_WITH_THINK
    assert image_prompt("a red apple", janus, "janus", text_regeneration=True) == JANUS_WITH_THINK
    assert image_prompt("a red apple", "", "janus") == image_prompt("a red apple", None, "janus") == JANUS_BARE


def test_deepseek_template_edges():
    assert chat("  hi  ", system="sys", roles=("User", "Assistant")) == "sys\n\nUser: hi\n\nAssistant:"
    assert chat("", roles=("User", "Assistant")) == "User:Assistant:"  # an empty message drops the separator
    with pytest.raises(ValueError, match="prompt_format"):
        image_prompt("a", "b", "chatml")


def _expected(fmt, mode, **kw):
    """(think prompt, stage-0 image prompt, image prompt of every later step) per the authors' code."""
    bare = mode == "image" and kw.get("image_mode_think") is False  # the authors' image mode: no think text
    if fmt == "janus":
        return (None, JANUS_BARE, JANUS_BARE) if bare else (THINK_JANUS, JANUS_WITH_THINK, JANUS_WITH_THINK)
    if bare:
        return None, REF_IMAGE_MODE, REF_IMAGE_MODE
    if mode == "text":
        return THINK_REFERENCE, REF_WITH_THINK, REF_TEXT_REGEN
    return THINK_REFERENCE, REF_WITH_THINK, REF_WITH_THINK


CASES = [
    ("text", {}), ("both", {}), ("image", {}), ("image", {"image_mode_think": False}),
    ("both", {"step_order": "interleaved_text_image"}), ("both", {"step_order": "text_image"}), ("both", {"step_order": "image_text"}),
]


@pytest.mark.parametrize("fmt", ["janus", "reference"])
@pytest.mark.parametrize(("mode", "kw"), CASES)
def test_every_stage_of_every_mode_feeds_the_formats_strings(tiny, monkeypatch, fmt, mode, kw):
    """Through MILRModule: the think text is fixed to ``DECODED`` (as the tokenizer might decode
    it), and every string the backbone tokenises is recorded."""
    real_think, real_encode, encoded = tiny.think, tiny.encode, []

    def think(prompts, prefixes=None, **options):
        out = real_think(prompts, prefixes, **options)
        out.texts = [DECODED] * len(prompts)
        return out

    def encode(text, reserve=0):
        encoded.append(text)
        return real_encode(text, reserve)

    monkeypatch.setattr(tiny, "think", think)
    monkeypatch.setattr(tiny, "encode", encode)
    milr.optimize(["a red apple"], tiny, ConstantReward(0.5), mode=mode, prompt_format=fmt, image_ratio=0.25,
                  text_ratio=0.5, lr=5.0, max_steps=3, **kw)
    thinks = [t for t in encoded if t.startswith(SYSTEM)]
    images = [t.removesuffix(tiny.boi_token) for t in encoded if t.endswith(tiny.boi_token)]
    think_expected, stage0, later = _expected(fmt, mode, **kw)
    assert set(thinks) == ({think_expected} if think_expected else set())
    assert images[0] == stage0 and set(images[1:]) <= {later}
    if stage0 != later:
        assert later in images[1:]
