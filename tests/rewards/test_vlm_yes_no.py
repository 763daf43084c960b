"""The yes/no VLM judge: its questions, and P("Yes") from tiny random Qwen2.5-VL and Qwen3-VL."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from data.prompt import Prompt
from rewards import build
from rewards.base import from_config, score
from rewards.hub import MissingCheckpointError
from rewards.judges import conversation
from rewards.vlm_yes_no import ANSWER_FORMAT, VLMYesNoReward, clause_question, plural, questions_for
from tests.rewards.tiny_models import tiny_clip, tiny_qwen3_vl, tiny_qwen_vl

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "rewards" / "vlm_yes_no.yaml"
BENCH, DOG = {"class": "bench", "count": 1}, {"class": "dog", "count": 1}
POSITION = {"tag": "position", "include": [{"class": "teddy bear", "count": 1}, {**DOG, "position": ["right of", 0]}]}
PROMPTS = [
    Prompt("a photo of a red bench", 0, {"tag": "colors", "include": [{**BENCH, "color": "red"}]}),
    Prompt("a photo of a dog right of a teddy bear", 1, POSITION),
    Prompt("a cat on a sofa.", 2),
]


@pytest.fixture(scope="module", params=["qwen2_5_vl", "qwen3_vl"])
def checkpoint(request, tmp_path_factory) -> str:
    build_tiny = {"qwen2_5_vl": tiny_qwen_vl, "qwen3_vl": tiny_qwen3_vl}[request.param]
    return str(build_tiny(tmp_path_factory.mktemp(request.param)))


def images() -> list[Image.Image]:
    return [Image.new("RGB", (48, 40), (200, 30, 30)), Image.new("RGB", (40, 40), (20, 90, 200)), Image.new("RGB", (64, 32), "white")]


def reward(checkpoint: str, **kwargs) -> VLMYesNoReward:
    r = VLMYesNoReward(model_name_or_path=checkpoint, **kwargs)
    r.setup(device="cpu", dtype=torch.float32)
    return r


# --------------------------------------------------------------------------- questions
@pytest.mark.parametrize("item, expected", [
    (BENCH, "Is there a bench in the image?"),
    ({"class": "orange", "count": 1}, "Is there an orange in the image?"),
    ({**BENCH, "color": "red"}, "Is there a red bench in the image?"),
    ({"class": "cat", "count": 3}, "Are there exactly three cats in the image?"),
    ({"class": "wine glass", "count": 2, "color": "purple"}, "Are there exactly two purple wine glasses in the image?"),
    ({"class": "person", "count": 4}, "Are there exactly four people in the image?"),
    ({"class": "dog", "count": 12}, "Are there exactly 12 dogs in the image?"),
])  # fmt: skip
def test_one_question_per_clause_with_count_and_colour(item, expected):
    assert clause_question(item, [item]) == expected


def test_position_clause_names_the_other_object():
    include = [{"class": "apple", "count": 1, "color": "green"}, {"class": "sheep", "count": 2, "position": ["above", 0]}]
    assert clause_question(include[1], include) == "Are there exactly two sheep above a green apple in the image?"
    assert questions_for(PROMPTS[1], "auto") == ["Is there a teddy bear in the image?", "Is there a dog to the right of a teddy bear in the image?"]


@pytest.mark.parametrize("noun, expected", [("bench", "benches"), ("bus", "buses"), ("box", "boxes"), ("hair drier", "hair driers"),
                                            ("knife", "knives"), ("skis", "skis"), ("teddy bear", "teddy bears")])
def test_plural(noun, expected):
    assert plural(noun) == expected


def test_modes_choose_the_whole_prompt_or_the_clauses():
    assert questions_for(PROMPTS[0], "prompt") == ["Does this image show: a photo of a red bench?"]
    assert questions_for(PROMPTS[2], "auto") == ["Does this image show: a cat on a sofa?"]  # no clauses: the whole prompt
    assert questions_for(PROMPTS[0], "include") == ["Is there a red bench in the image?"]
    with pytest.raises(ValueError, match="prompt 2: questions 'include' needs GenEval-style metadata"):
        questions_for(PROMPTS[2], "include")
    with pytest.raises(ValueError, match="questions must be"):
        VLMYesNoReward(questions="clauses")


def test_defaults_registry_and_yaml():
    for r in (build("vlm_yes_no"), from_config(CONFIG)):
        assert isinstance(r, VLMYesNoReward) and r.judge.model == "Qwen/Qwen2.5-VL-7B-Instruct" and r.questions == "auto"


# --------------------------------------------------------------------------- tiny Qwen VL judges
def test_score_is_the_product_of_each_questions_p_yes(checkpoint):
    r = reward(checkpoint)
    out = score(r, images(), PROMPTS)  # validates [B], finite, in [0, 1], JSON details
    assert [len(d["questions"]) for d in out.details] == [1, 2, 1]
    for s, d in zip(out.scores.tolist(), out.details):
        assert 0.0 < s == pytest.approx(float(torch.tensor(d["p_yes"], dtype=torch.float64).prod()), rel=1e-6)
    # P("Yes") by hand: softmax of the first answer token's logits, summed over the "yes" spellings
    yes_ids = r._yes_ids
    assert len(yes_ids) >= 2 and all(r.judge.tokenizer.decode([i]).strip().lower().startswith("y") for i in yes_ids)
    [logits] = r.judge.next_token_logits([conversation(images()[1], "Is there a teddy bear in the image?" + ANSWER_FORMAT)])
    assert out.details[1]["p_yes"][0] == pytest.approx(float(logits.softmax(-1)[yes_ids].sum()), rel=1e-5)


def test_batch_of_three_equals_three_batches_of_one_and_repeats(checkpoint):
    together = reward(checkpoint, batch_size=8)
    batched = together.evaluate(images(), PROMPTS).scores
    alone = torch.cat([reward(checkpoint, batch_size=1).evaluate([im], [p]).scores for im, p in zip(images(), PROMPTS)])
    assert torch.allclose(batched, alone, rtol=1e-4, atol=1e-7)
    assert torch.equal(batched, together.evaluate(images(), PROMPTS).scores)


def test_one_forward_pass_per_batch_of_questions_and_no_generation(checkpoint, monkeypatch):
    r = reward(checkpoint, batch_size=3)
    r.evaluate(images()[:1], PROMPTS[:1])  # load
    model = r.judge._model
    rows: list[int] = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda *a, **kw: rows.append(len(kw["input_ids"])) or forward(*a, **kw))
    monkeypatch.setattr(model, "generate", lambda *a, **kw: pytest.fail("the yes/no judge must not generate"))
    r.evaluate(images(), PROMPTS)  # 1 + 2 + 1 questions
    assert rows == [3, 1]


def test_the_question_reaches_the_model_after_the_image(checkpoint):
    r = reward(checkpoint)
    r.evaluate(images()[:1], PROMPTS[:1])
    processor = r.judge._processor
    text = processor.apply_chat_template(conversation(images()[0], "Is there a red bench in the image?" + ANSWER_FORMAT),
                                         tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|vision_end|>Is there a red bench in the image? Please answer yes or no.<|im_end|>\n<|im_start|>assistant\n")


def test_dtype_follows_setup(checkpoint):
    r = VLMYesNoReward(model_name_or_path=checkpoint)
    r.setup(device="cpu", dtype=torch.bfloat16)
    out = score(r, images()[:1], PROMPTS[:1])
    assert next(r.judge._model.parameters()).dtype == torch.bfloat16 and 0.0 <= float(out.scores[0]) <= 1.0


# --------------------------------------------------------------------------- errors
def test_missing_checkpoint_is_one_line_with_the_download_command():
    with pytest.raises(MissingCheckpointError) as err:
        build("vlm_yes_no").evaluate(images()[:1], PROMPTS[:1])
    message = str(err.value)
    assert "\n" not in message and message.startswith("yes/no VLM judge: could not load checkpoint 'Qwen/Qwen2.5-VL-7B-Instruct'")
    assert "`hf download Qwen/Qwen2.5-VL-7B-Instruct`" in message


def test_a_checkpoint_of_another_model_type_is_refused(tmp_path):
    clip = tiny_clip(tmp_path / "clip")
    with pytest.raises(ValueError, match=r"is a 'clip' model; supported: \['qwen2_5_vl', 'qwen3_vl'\]"):
        reward(str(clip)).evaluate(images()[:1], PROMPTS[:1])
