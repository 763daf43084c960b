"""Loading a checkpoint as a researcher's folder would hold it: the original deepseek-ai layout is
refused before any weight is read, lm_head survives tie_weights(), the tokenizer is checked."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import train_free_runner
from milr.backbone import CheckpointError, JanusBackbone, check_tokenizer
from milr.tiny import tiny_janus
from tests.real_geometry import FIXTURE


@pytest.fixture(scope="module")
def untied(tmp_path_factory) -> Path:
    """A saved tiny checkpoint laid out like the converted ones: its own lm_head, no tie key."""
    model, tokenizer = tiny_janus(seed=0, grid=4)
    model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.lm_head.weight))
    folder = tmp_path_factory.mktemp("untied")
    model.config.tie_word_embeddings = False
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config.pop("tie_word_embeddings", None)
    config.get("text_config", {}).pop("tie_word_embeddings", None)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_lm_head_is_loaded_and_never_overwritten_by_the_embeddings(untied):
    weights = load_file(str(next(untied.glob("*.safetensors"))))
    backbone = JanusBackbone(str(untied), device="cpu", dtype="float32")
    backbone.model.tie_weights()
    torch.testing.assert_close(backbone.model.lm_head.weight, weights["lm_head.weight"])
    assert not torch.equal(backbone.model.lm_head.weight, backbone.model.get_input_embeddings().weight)


def test_the_original_deepseek_ai_folder_is_refused_in_one_line_before_anything(tmp_path, capsys):
    folder = tmp_path / "Janus-Pro-7B"
    folder.mkdir()
    shutil.copy(FIXTURE / "deepseek_ai_janus_pro_7b_config_original.json", folder / "config.json")
    with pytest.raises(SystemExit) as exit_:
        train_free_runner.main(["--model.backbone.name_or_path", str(folder), "--output_dir", str(tmp_path / "out")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "'multi_modality'" in err and "deepseek-community/Janus-Pro-1B" in err and "hf download" in err
    assert not (tmp_path / "out").exists()
    with pytest.raises(CheckpointError, match="not a transformers Janus checkpoint"):
        JanusBackbone(str(folder), device="cpu")


def test_a_tokenizer_that_drops_spaces_or_pads_with_another_id_is_refused():
    model, tokenizer = tiny_janus(seed=0, grid=4)
    check_tokenizer(tokenizer, model.generation_config, "tiny")  # the good one passes
    model.generation_config.pad_token_id = tokenizer.pad_token_id + 1
    with pytest.raises(CheckpointError, match="pads with id"):
        check_tokenizer(tokenizer, model.generation_config, "tiny")

    class Spaceless:
        pad_token_id = 0

        def encode(self, text, add_special_tokens=False):
            return list(text.replace(" ", ""))

        def decode(self, ids, skip_special_tokens=True):
            return "".join(ids)

    with pytest.raises(CheckpointError, match="does not round-trip"):
        check_tokenizer(Spaceless(), model.generation_config, "tiny")
