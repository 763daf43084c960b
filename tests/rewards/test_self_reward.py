"""Self reward on the tiny random Janus backbone: shared weights, Janus' understanding input,
yes/no probability, the authors' JSON verdict."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import JanusProcessor, PreTrainedTokenizerFast
from transformers.models.janus.image_processing_pil_janus import JanusImageProcessorPil

from data.prompt import Prompt
from milr.backbone import JanusBackbone
from milr.prompts import chat
from rewards.base import build, score
from rewards.self_reward import (
    JSON_QUESTION,
    PROB_QUESTION,
    SYSTEM_PROMPT,
    SelfReward,
    VerdictError,
    answer_token_ids,
    parse_verdict,
    question,
    yes_probability,
)

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "rewards" / "self_reward.yaml"
PROMPTS = [Prompt("a red apple", 0), Prompt("two black dogs and three brown cats on a wooden table", 1), Prompt("a blue cup", 2)]


@pytest.fixture(scope="module")
def backbone() -> JanusBackbone:
    return JanusBackbone.tiny(seed=0, grid=8)


@pytest.fixture(scope="module")
def chatty_backbone() -> JanusBackbone:
    """Tiny Janus whose greedy text depends on the decode loop: an untied random ``lm_head`` (the
    tied one just repeats the last token) and sharper attention (else positions hardly matter)."""
    bb = JanusBackbone.tiny(seed=1, grid=8)
    head = torch.randn(bb.model.lm_head.weight.shape, generator=torch.Generator().manual_seed(0))
    bb.model.lm_head.weight = torch.nn.Parameter(head, requires_grad=False)
    with torch.no_grad():
        for layer in bb.model.model.language_model.layers:
            layer.self_attn.q_proj.weight.mul_(8.0)
            layer.self_attn.k_proj.weight.mul_(8.0)
    return bb


def images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    sizes = [(128, 128), (90, 140), (200, 120)]
    return [Image.fromarray(rng.integers(0, 256, (*sizes[i % 3], 3), dtype=np.uint8)) for i in range(n)]


def judge(backbone, **kwargs) -> SelfReward:
    r = SelfReward(**kwargs)
    r.setup(device="cpu", dtype=torch.float32, backbone=backbone)
    return r


# ---------------------------------------------------------------- pure rules
@pytest.mark.parametrize(
    "answer, expected",
    [
        ('{"Thought": "one apple, red", "Score": 0, "Reason": ""}', 1.0),
        ('{"Thought": "two apples", "Score": -1, "Reason": "count"}', 0.0),
        ('```json\n{\n  "Thought": "ok",\n  "Score": 0,\n  "Reason": ""\n}\n```', 1.0),
        ('{"Thought": "the cup is green", "Score":-1, "Reason": "the cup is gre', 0.0),  # cut by the token limit
        ('{"Score": "0"}', 1.0),
        ('{"Score": -1.0}', 0.0),
    ],
)
def test_parse_verdict_valid(answer, expected):
    assert parse_verdict(answer) == expected


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "Yes, the image matches.",
        '{"Thought": "the model stopped before the verdict',
        '{"Score": 1}',
        '{"Score": "yes"}',
        '{"Score": 0} {"Score": -1}',  # e.g. both examples of the prompt echoed back
        '{"score": 0}',
    ],
)
def test_parse_verdict_invalid_raises(answer):
    with pytest.raises(VerdictError):
        parse_verdict(answer)


def test_yes_probability_is_yes_share_of_yes_plus_no():
    logits = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.05, 0.35], [0.5, 0.0 + 1e-9, 0.25, 0.25, 1e-9]]))
    score, p_yes, p_no = yes_probability(logits, yes_ids=[0, 1], no_ids=[2])
    assert torch.allclose(p_yes, torch.tensor([0.3, 0.5]), atol=1e-6)
    assert torch.allclose(p_no, torch.tensor([0.3, 0.25]), atol=1e-6)
    assert torch.allclose(score, torch.tensor([0.5, 2 / 3]), atol=1e-6)
    shifted = logits.clone()
    shifted[:, 3:] += 7.0  # other tokens change P(yes) and P(no) but not their ratio
    assert torch.allclose(yes_probability(shifted, [0, 1], [2])[0], score, atol=1e-6)


def test_questions_fill_the_prompt_verbatim():
    assert question(PROB_QUESTION, "a red apple") == 'Does this image match the prompt "a red apple"? Answer yes or no.'
    text = question(JSON_QUESTION, "a {weird} prompt")
    assert text.startswith('I\'ve generated this image based on the initial caption: "a {weird} prompt".\n')
    assert '"Score": 0 or -1,' in text and text.endswith('"Reason": "The image contains three dogs instead of one dog."\n}')


def test_answer_tokens_skip_bare_space_pieces(backbone):
    tok = backbone.tokenizer  # tiny BPE: "yes" -> y|es, " Yes" -> ' '|Y|es
    assert answer_token_ids(tok, "yes") == sorted(tok.convert_tokens_to_ids(["y", "Ġy", "Y"]))
    assert answer_token_ids(tok, "no") == sorted(tok.convert_tokens_to_ids(["n", "Ġn", "N"]))


def test_answer_tokens_take_whole_word_pieces():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["yes no Yes No yes no Yes No"] * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok)
    assert answer_token_ids(fast, "yes") == sorted(fast.convert_tokens_to_ids(["yes", "Ġyes", "Yes", "ĠYes"]))
    assert answer_token_ids(fast, "no") == sorted(fast.convert_tokens_to_ids(["no", "Ġno", "No", "ĠNo"]))


# ---------------------------------------------------------------- wiring
def test_registered_and_yaml():
    assert isinstance(build("self_reward"), SelfReward)
    spec = yaml.safe_load(CONFIG.read_text())["model"]["reward"]
    module, name = spec["class_path"].rsplit(".", 1)
    built = getattr(importlib.import_module(module), name)(**spec["init_args"])
    assert isinstance(built, SelfReward) and (built.mode, built.max_new_tokens) == ("prob", 128)
    with pytest.raises(ValueError, match="mode"):
        SelfReward(mode="logits")


def test_without_backbone_evaluate_raises():
    never_set_up = SelfReward()
    set_up_without = SelfReward()
    set_up_without.setup(device="cpu", dtype=torch.float32)
    for r in (never_set_up, set_up_without):
        with pytest.raises(RuntimeError, match=r"setup\(backbone=\.\.\.\)"):
            r.evaluate(images(1), PROMPTS[:1])


def test_shares_the_backbone_and_holds_no_parameters(backbone):
    params = {id(p) for p in backbone.model.parameters()}
    r = judge(backbone)
    r.evaluate(images(2), PROMPTS[:2])
    assert r.model is backbone.model
    for value in vars(r).values():
        assert not isinstance(value, (torch.nn.Module, torch.Tensor)), f"reward holds its own {type(value)}"
    assert {id(p) for p in backbone.model.parameters()} == params
    assert not any(p.requires_grad for p in backbone.model.parameters())


def test_mismatched_image_token_is_rejected(backbone, monkeypatch):
    monkeypatch.setattr(backbone.model.config, "image_token_id", backbone.model.config.image_token_id + 1)
    with pytest.raises(ValueError, match="image_placeholder"):
        judge(backbone)


# ---------------------------------------------------------------- prob mode
def test_prob_scores_shape_range_details(backbone):
    out = score(judge(backbone), images(3), PROMPTS)  # validates shape [B], finite, inside [0, 1]
    assert out.scores.shape == (3,) and len(set(out.scores.tolist())) == 3
    for s, d in zip(out.scores, out.details):
        assert d["mode"] == "prob" and 0 < d["p_yes"] < 1 and 0 < d["p_no"] < 1
        assert s.item() == pytest.approx(d["p_yes"] / (d["p_yes"] + d["p_no"]), abs=1e-6)


def test_prob_batched_equals_one_by_one(backbone):
    batched = judge(backbone, batch_size=3).evaluate(images(3), PROMPTS).scores
    single = judge(backbone, batch_size=1).evaluate(images(3), PROMPTS).scores
    assert torch.allclose(batched, single, atol=1e-5)


def test_prob_equals_manual_computation_through_janus_processor(backbone):
    """transformers' JanusProcessor (placeholder expansion) + the model's logits, by hand."""
    tok = backbone.tokenizer
    image, prompt = images(2)[1], PROMPTS[1]
    processor = JanusProcessor(
        image_processor=JanusImageProcessorPil(size={"height": 128, "width": 128}, image_mean=[0.5] * 3, image_std=[0.5] * 3),
        tokenizer=tok,
        num_image_tokens=backbone.num_image_tokens,
    )
    text = chat(f"<image_placeholder>\n{question(PROB_QUESTION, prompt.text)}", system=SYSTEM_PROMPT)
    inputs = processor(text=[text], images=[image])
    assert int((inputs.input_ids == backbone.model.config.image_token_id).sum()) == 64
    with torch.no_grad():
        probs = backbone.model(input_ids=inputs.input_ids, pixel_values=inputs.pixel_values).logits[0, -1].softmax(-1)
    yes = probs[tok.convert_tokens_to_ids(["y", "Ġy", "Y"])].sum()
    no = probs[tok.convert_tokens_to_ids(["n", "Ġn", "N"])].sum()
    out = judge(backbone).evaluate([image], [prompt])
    assert out.scores[0].item() == pytest.approx((yes / (yes + no)).item(), abs=1e-5)
    assert out.details[0]["p_yes"] == pytest.approx(yes.item(), rel=1e-4)


# ---------------------------------------------------------------- json mode
def test_json_greedy_answers_equal_transformers_generate(chatty_backbone):
    bb = chatty_backbone
    r = judge(bb, mode="json", max_new_tokens=8)
    questions = [question(JSON_QUESTION, PROMPTS[0].text), "What is in the image?"]  # different lengths: left padding
    inputs = r._inputs(images(2), questions)
    inputs.pop("position_ids")  # generate derives them from the attention mask
    out = bb.model.generate(**inputs, max_new_tokens=8, do_sample=False, pad_token_id=bb.pad_id, eos_token_id=bb.eos_id)
    expected = [bb.tokenizer.decode(row, skip_special_tokens=True).strip() for row in out[:, inputs["input_ids"].shape[1] :].tolist()]
    answers = r.generate(images(2), questions)
    assert answers == expected and len(set(answers[0])) > 2


def test_json_random_judge_without_verdict_raises(backbone):
    with pytest.raises(VerdictError, match="Score"):
        judge(backbone, mode="json", max_new_tokens=4).evaluate(images(1), PROMPTS[:1])


def test_json_verdicts_become_scores(backbone, monkeypatch):
    r = judge(backbone, mode="json")
    asked = []
    answers = ['{"Thought": "fine", "Score": 0, "Reason": ""}', '{"Thought": "wrong colour", "Score": -1, "Reason": "blue"}']

    def answer(imgs, questions):
        asked.extend(questions)
        return answers[: len(questions)]

    monkeypatch.setattr(r, "generate", answer)
    out = score(r, images(2), PROMPTS[:2])
    assert out.scores.tolist() == [1.0, 0.0]
    assert [d["answer"] for d in out.details] == answers and out.details[0]["mode"] == "json"
    assert asked == [question(JSON_QUESTION, p.text) for p in PROMPTS[:2]]
