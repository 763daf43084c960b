"""The decode loops: shapes, KV-cache equivalence, hidden states = head inputs, parity with
transformers' own image generation, and loading errors."""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

from milr.backbone import CheckpointError, JanusBackbone
from milr.prompts import image_prompt, think_prompt

PROMPTS = ["a red apple", "two blue cups on a wooden table"]


def test_think_with_cache_gives_the_same_tokens_as_the_uncached_reference_way(tiny):
    cached = tiny.think(PROMPTS, max_new_tokens=10)
    uncached = tiny.think(PROMPTS, max_new_tokens=10, use_cache=False)
    assert [t.tolist() for t in cached.ids] == [t.tolist() for t in uncached.ids]
    assert all(len(t) == 10 for t in cached.ids)  # a random model never says EOS in 10 tokens


def test_think_batched_with_left_padding_matches_one_prompt_at_a_time(tiny):
    batched = tiny.think(PROMPTS, max_new_tokens=8)
    for i, p in enumerate(PROMPTS):
        assert tiny.think([p], max_new_tokens=8).ids[0].tolist() == batched.ids[i].tolist()


def test_think_hidden_states_are_the_lm_head_inputs(tiny):
    out = tiny.think(PROMPTS[:1], max_new_tokens=6, record_hidden=True)
    hidden, ids = out.hidden[0], out.ids[0]
    assert hidden.shape == (6, tiny.hidden_size)
    assert torch.equal(tiny.text_logits(hidden).argmax(-1), ids)
    # the same vectors from one uncached forward over prompt + generated tokens
    full = torch.tensor([tiny.encode(think_prompt(PROMPTS[0])) + ids.tolist()])
    ref = tiny.lm(input_ids=full).last_hidden_state[0, -7:-1]
    torch.testing.assert_close(hidden, ref, rtol=1e-4, atol=1e-5)


def test_think_forced_prefix_is_kept_and_continued(tiny):
    free = tiny.think(PROMPTS[:1], max_new_tokens=8).ids[0]
    prefix = torch.tensor([5, 9, 11])
    forced = tiny.think(PROMPTS[:1], [prefix], max_new_tokens=8).ids[0]
    assert forced[:3].tolist() == [5, 9, 11] and len(forced) == 8
    assert tiny.think(PROMPTS[:1], [free[:3]], max_new_tokens=8).ids[0].tolist() == free.tolist()


def test_think_prefix_with_eos_ends_the_text_there(tiny):
    out = tiny.think(PROMPTS[:1], [torch.tensor([7, tiny.eos_id, 8])], max_new_tokens=8)
    assert out.ids[0].tolist() == [7]


@pytest.mark.parametrize("fmt", ["janus", "reference"])
def test_think_from_kept_prompt_rows_gives_the_tokens_and_states_of_a_fresh_prefill(tiny, fmt):
    """Think prompts prefilled apart (another batch, other padding) and a mix of forced prefixes
    (none, short, long, with EOS): the same text and hidden states as one uncached re-run."""
    prompts = [PROMPTS[1], PROMPTS[0], PROMPTS[1], PROMPTS[0]]
    prefixes = [torch.tensor([], dtype=torch.long), torch.tensor([5]), torch.tensor([7, 9, 11, 13]), torch.tensor([7, tiny.eos_id])]
    rows = [tiny.think_rows([think_prompt(PROMPTS[0], fmt)])[0], *tiny.think_rows([think_prompt(PROMPTS[1], fmt)])]
    kept = [rows[1], rows[0], rows[1], rows[0]]
    got = tiny.think(prompts, prefixes, max_new_tokens=8, record_hidden=True, prompt_format=fmt, prompt_rows=kept)
    fresh = tiny.think(prompts, prefixes, max_new_tokens=8, record_hidden=True, prompt_format=fmt)
    reference = tiny.think(prompts, prefixes, max_new_tokens=8, prompt_format=fmt, use_cache=False)
    assert [t.tolist() for t in got.ids] == [t.tolist() for t in fresh.ids] == [t.tolist() for t in reference.ids]
    assert got.texts == fresh.texts and got.ids[3].tolist() == [7]
    for a, b in zip(got.hidden, fresh.hidden):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="3 prefilled think prompts for 4 prompts"):
        tiny.think(prompts, prompt_rows=kept[:3])


@pytest.mark.parametrize("static_cache", [False, True])
def test_image_context_from_rows_prefilled_apart_samples_what_one_batched_prefill_samples(tiny, static_cache):
    bb = JanusBackbone.tiny(seed=0, grid=4, static_cache=True) if static_cache else tiny
    prompts = [image_prompt("two dogs and a ball on the grass", None), image_prompt("a cat", None), image_prompt("a red cup", None)]
    rows = {p: bb.image_rows([p])[0] for p in prompts}
    kept = bb.image_context([prompts[1], prompts[0], prompts[1]], [rows[prompts[1]], rows[prompts[0]], rows[prompts[1]]])
    fresh = tiny.image_context([prompts[1], prompts[0], prompts[1]])
    gens = lambda: [torch.Generator().manual_seed(i) for i in range(3)]  # noqa: E731
    for record, prefix in ((4, None), (0, torch.tensor([[1, 2], [3, 4], [5, 6]]))):
        a, b = bb.sample_image(kept, gens(), prefix, record_hidden=record), tiny.sample_image(fresh, gens(), prefix, record_hidden=record)
        assert torch.equal(a.tokens, b.tokens)
        if record:
            torch.testing.assert_close(a.hidden, b.hidden, rtol=1e-4, atol=1e-5)
    assert all(r.length == len(bb.encode(p + bb.boi_token)) for p, r in rows.items())  # decoding never grew a row


def _hf_generate(bb: JanusBackbone, prompt: str, seed: int) -> torch.Tensor:
    ids = bb.tokenizer([prompt + bb.boi_token], return_tensors="pt").input_ids
    cfg = bb.model.generation_config
    cfg.pad_token_id, cfg.bos_token_id = bb.pad_id, bb.bos_id
    cfg.generation_kwargs = {"boi_token_id": bb.boi_id}
    torch.manual_seed(seed)
    return bb.model.generate(ids, attention_mask=torch.ones_like(ids), generation_mode="image", do_sample=True, top_k=0, guidance_scale=5.0)


def test_image_loop_reproduces_transformers_generate_exactly(tiny8):
    prompt = image_prompt("a red apple", "a shiny red apple")
    ours = tiny8.sample_image(tiny8.image_context([prompt]), [torch.Generator().manual_seed(3)])
    assert ours.tokens.shape == (1, 64)
    assert torch.equal(ours.tokens, _hf_generate(tiny8, prompt, 3))


def test_image_hidden_states_are_the_generation_head_inputs(tiny):
    prompt = image_prompt("a red apple", None)
    sample = tiny.sample_image(tiny.image_context([prompt]), [torch.Generator().manual_seed(0)], record_hidden=5)
    assert sample.hidden.shape == (1, 5, 2, tiny.hidden_size)
    # uncached forward of [cond; uncond] prompt + the first 4 image tokens
    ctx = tiny.image_context([prompt])
    tokens = sample.tokens[:, :4]
    cond = torch.tensor([tiny.encode(prompt + tiny.boi_token)])
    uncond = torch.where((cond == tiny.bos_id) | (cond == tiny.boi_id), cond, torch.full_like(cond, tiny.pad_id))
    embeds = torch.cat([
        tiny.model.get_input_embeddings()(torch.cat([cond, uncond])),
        tiny.model.prepare_embeddings_for_image_generation(torch.cat([tokens, tokens])),
    ], 1)
    ref = tiny.lm(inputs_embeds=embeds).last_hidden_state[:, -5:]  # [2, 5, d]
    torch.testing.assert_close(sample.hidden[0].transpose(0, 1), ref, rtol=1e-4, atol=1e-5)
    assert ctx.rows[0].length == cond.shape[1]  # the prefilled prompt is left as it was


def test_forced_image_prefix_is_kept_and_context_is_reusable(tiny):
    ctx = tiny.image_context([image_prompt("a cat", None), image_prompt("two dogs and a ball", None)])
    prefix = torch.tensor([[1, 2, 3], [4, 5, 6]])
    gens = lambda: [torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)]  # noqa: E731
    first = tiny.sample_image(ctx, gens(), prefix)
    again = tiny.sample_image(ctx, gens(), prefix)  # the context's cache was copied, not consumed
    assert torch.equal(first.tokens[:, :3], prefix)
    assert torch.equal(first.tokens, again.tokens)
    assert first.tokens.shape == (2, tiny.num_image_tokens)


def test_decode_images_gives_rgb_images_of_sixteen_pixels_per_token_side_or_less(tiny):
    images = tiny.decode_images(torch.zeros(2, tiny.num_image_tokens, dtype=torch.long))
    assert len(images) == 2 and images[0].mode == "RGB" and images[0].size == (16, 16)


def test_missing_checkpoint_is_a_clear_error_naming_it(tmp_path):
    with pytest.raises(CheckpointError, match="no-such-janus") as err:
        JanusBackbone(str(tmp_path / "no-such-janus"), device="cpu")
    assert "hf download" in str(err.value)


def test_a_missing_hub_checkpoint_names_its_own_download_command():
    with pytest.raises(CheckpointError, match=r"hf download deepseek-community/Janus-Pro-1B`"):
        JanusBackbone("deepseek-community/Janus-Pro-1B", device="cpu")  # HF_HUB_OFFLINE=1: nothing is fetched


def test_backbone_is_frozen(tiny):
    assert not any(p.requires_grad for p in tiny.model.parameters())
    assert not tiny.model.training


def test_over_long_prompt_is_a_clear_error(tiny):
    with pytest.raises(ValueError, match="prompt too long"):
        tiny.think(["apple " * 3000])


def test_empty_prompt_is_a_clear_error(tiny):
    import milr

    with pytest.raises(ValueError, match="empty prompt"):
        milr.optimize(["  "], tiny, lambda images, prompts: None)


def test_static_kv_cache_samples_the_same_tokens_as_the_dynamic_one(tiny):
    static = JanusBackbone.tiny(seed=0, grid=4, static_cache=True)
    prompts = [image_prompt("a cat", None), image_prompt("two dogs and a ball on the grass", None)]
    prefix = torch.tensor([[1, 2], [3, 4]])
    gens = lambda: [torch.Generator().manual_seed(5), torch.Generator().manual_seed(6)]  # noqa: E731
    for p in (None, prefix):
        dyn = tiny.sample_image(tiny.image_context(prompts), gens(), p)
        sta = static.sample_image(static.image_context(prompts), gens(), p)
        assert torch.equal(dyn.tokens, sta.tokens)


def test_static_decode_cache_is_refilled_in_place_for_each_context(tiny):
    static = JanusBackbone.tiny(seed=0, grid=4, static_cache=True)
    batches = [[image_prompt("a cat", None)], [image_prompt("two dogs", None)]]  # same length bucket
    contexts = [static.image_context(b) for b in batches]
    addresses = set()
    for i in (0, 1, 0):  # a context used after another one still decodes its own prompt
        sta = static.sample_image(contexts[i], [torch.Generator().manual_seed(i)], record_hidden=16)
        dyn = tiny.sample_image(tiny.image_context(batches[i]), [torch.Generator().manual_seed(i)], record_hidden=16)
        assert torch.equal(sta.tokens, dyn.tokens)
        torch.testing.assert_close(sta.hidden, dyn.hidden)  # every cached key and value was the right one
        addresses.add(static._decode_cache.layers[0].keys.data_ptr())
    assert len(addresses) == 1  # the tensors CUDA graphs replay on never move


def test_compiled_decode_step_samples_the_same_tokens_and_compiles_twice_across_batch_sizes(tiny):
    torch._dynamo.reset()
    counters.clear()  # reset() keeps the counters: graphs compiled by earlier tests (the bench's) would count
    compiled = JanusBackbone.tiny(seed=0, grid=4, compile=True)
    prompts = [image_prompt(t, None) for t in ("a cat", "a dog", "a car")]
    for batch in (prompts[:2], prompts[:2], prompts[2:], prompts):  # batch sizes 2, 2, 1, 3: a run's refill and tail
        gens = [torch.Generator().manual_seed(i) for i in range(len(batch))]
        got = compiled.sample_image(compiled.image_context(batch), gens)
        gens = [torch.Generator().manual_seed(i) for i in range(len(batch))]
        assert torch.equal(got.tokens, tiny.sample_image(tiny.image_context(batch), gens).tokens)
    assert counters["stats"]["unique_graphs"] == 2  # the first shape, then one graph with dynamic sizes


def test_the_real_loading_code_loads_a_local_checkpoint_folder(tmp_path):
    from milr.tiny import tiny_janus

    model, tokenizer = tiny_janus(seed=0, grid=4)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded = JanusBackbone.from_pretrained(str(tmp_path), dtype="float32", device="cpu", max_think_tokens=6)
    reference = JanusBackbone.tiny(seed=0, grid=4, max_think_tokens=6)
    assert loaded.think(PROMPTS).ids[0].tolist() == reference.think(PROMPTS).ids[0].tolist()
    assert (loaded.boi_id, loaded.pad_id, loaded.num_image_tokens) == (reference.boi_id, reference.pad_id, 16)
    assert loaded.model.config.text_config._attn_implementation == "sdpa"


def test_auto_device_is_this_process_gpu_under_a_launcher(monkeypatch):
    from milr.backbone import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("auto") == torch.device("cuda", 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")


def test_think_with_generators_samples_each_row_reproducibly_from_its_own_generator(tiny):
    prompts = ["a red cube", "two dogs"]
    draw = lambda seeds: tiny.think(prompts, generators=[torch.Generator().manual_seed(s) for s in seeds]).texts  # noqa: E731
    assert draw([1, 2]) == draw([1, 2])  # the generators decide every token
    assert draw([1, 2])[1] == tiny.think(prompts[1:], generators=[torch.Generator().manual_seed(2)]).texts[0]  # rows do not share draws
    assert len({t for s in range(6) for t in draw([s, s])}) > 2  # other seeds, other texts: sampled, not greedy
