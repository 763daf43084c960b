"""The chat texts MILR feeds Janus-Pro: the think ("visualisation") prompt and the image prompt.

Verbatim from the authors' code (REFERENCE.md §2-5), in DeepSeek's SFT chat format
(``{system}\\n\\n<|User|>: {message}\\n\\n<|Assistant|>:``).
"""

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


def chat(message: str, system: str = "") -> str:
    """DeepSeek SFT format used by Janus-Pro for both understanding and generation."""
    head = f"{system}\n\n" if system else ""
    return f"{head}<|User|>: {message}\n\n<|Assistant|>:"


def think_prompt(prompt: str) -> str:
    return chat(THINK_TEMPLATE.format(prompt), system=THINK_SYSTEM)


def image_prompt(prompt: str, think: str | None) -> str:
    """``"{prompt}. {think}"`` as in the reference; the plain prompt when there is no think text."""
    return chat(f"{prompt}. {think}" if think else prompt)
