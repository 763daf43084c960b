"""BLIP-VQA yes-probabilities, as T2I-CompBench's ``inference='vqa_prob'`` computes them.

Model: ``Salesforce/blip-vqa-capfilt-large`` (``BlipForQuestionAnswering``), the HF
conversion of the official ``model_base_vqa_capfilt_large.pth``. The official pipeline is
rebuilt by hand because HF's ``generate`` differs from it:
- images are resized to 480x480 (bicubic, CLIP mean/std) like the official ``configs/vqa.yaml``
  and the vision position embeddings interpolated (the HF checkpoint is stored at 384);
- the question's first token ([CLS]) is replaced by [ENC] (HF leaves [CLS]); [ENC] is the
  tokenizer's "[ENC]" token when it has one, else the last id of the text vocabulary (30523
  = where BLIP's tokenizer adds it, after [DEC] = ``bos_token_id`` 30522);
- the decoder gets one [DEC] token and its first-step logits give
  ``p(yes) / (p(yes) + p(no))``.
Batching: questions share a batch only with questions of the same token length, so nothing
is ever padded. The official code pads a batch to its longest question and lets the decoder
attend to the padding (``question_atts`` all ones; transformers 5's BLIP text model also
drops cross-attention masks), so its answers depend slightly on the batch; here every answer
equals the unpadded batch-of-one answer.
"""

from __future__ import annotations

from typing import Optional

import torch
from PIL import Image
from transformers import AutoTokenizer, BlipForQuestionAnswering
from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

from rewards.hub import LazyModel, load_pretrained


class BlipVqa(LazyModel):
    """Lazily loaded BLIP VQA model answering yes/no questions about images, batched."""

    def __init__(self, checkpoint: str = "Salesforce/blip-vqa-capfilt-large", image_size: int = 480, batch_size: int = 16) -> None:
        super().__init__(checkpoint, batch_size)
        self.image_size = image_size

    def _load(self) -> None:
        what = "T2I-CompBench BLIP-VQA"
        self.model = load_pretrained(BlipForQuestionAnswering.from_pretrained, self.checkpoint, what=what)
        self.processor = load_pretrained(
            BlipImageProcessorPil.from_pretrained,
            self.checkpoint,
            what=what,
            size={"height": self.image_size, "width": self.image_size},
        )
        self.tokenizer = load_pretrained(AutoTokenizer.from_pretrained, self.checkpoint, what=what)
        text_config = self.model.config.text_config
        self.enc_token_id = self._token_id("[ENC]", default=text_config.vocab_size - 1)
        self.dec_token_id = text_config.bos_token_id
        self.yes_id, self.no_id = self._token_id("yes"), self._token_id("no")

    def _token_id(self, token: str, default: Optional[int] = None) -> int:
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == self.tokenizer.unk_token_id:
            if default is None:
                raise ValueError(f"BLIP tokenizer of {self.checkpoint!r} has no {token!r} token")
            return default
        return token_id

    @torch.no_grad()
    def yes_probabilities(self, images: list[Image.Image], questions: list[list[str]]) -> list[list[float]]:
        """``questions[i]`` asked about ``images[i]``; returns the same nested layout."""
        self.load()
        step = self.batch_size
        image_embeds = torch.cat([self._encode_images(images[i : i + step]) for i in range(0, len(images), step)])
        pairs = [(i, q) for i, qs in enumerate(questions) for q in qs]
        token_ids = self.tokenizer([q for _, q in pairs], truncation=True, max_length=35).input_ids
        probs: list[float] = [0.0] * len(pairs)
        by_length: dict[int, list[int]] = {}
        for k, ids in enumerate(token_ids):
            by_length.setdefault(len(ids), []).append(k)
        for group in by_length.values():
            for start in range(0, len(group), self.batch_size):
                chunk = group[start : start + self.batch_size]
                answers = self._ask(image_embeds[[pairs[k][0] for k in chunk]], torch.tensor([token_ids[k] for k in chunk]))
                for k, p in zip(chunk, answers):
                    probs[k] = p
        out, k = [], 0
        for qs in questions:
            out.append(probs[k : k + len(qs)])
            k += len(qs)
        return out

    def _encode_images(self, images: list[Image.Image]) -> torch.Tensor:
        pixels = self.processor([im.convert("RGB") for im in images], return_tensors="pt").pixel_values
        interpolate = self.image_size != self.model.config.vision_config.image_size
        pixels = pixels.to(device=self.device, dtype=self.dtype)
        return self.model.vision_model(pixel_values=pixels, interpolate_pos_encoding=interpolate).last_hidden_state

    def _ask(self, image_embeds: torch.Tensor, input_ids: torch.Tensor) -> list[float]:
        """Yes-probabilities of equal-length questions ``input_ids`` [N, L] about ``image_embeds``."""
        input_ids = input_ids.to(self.device)
        input_ids[:, 0] = self.enc_token_id
        image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=self.device)
        question_states = self.model.text_encoder(
            input_ids=input_ids, encoder_hidden_states=image_embeds, encoder_attention_mask=image_mask
        ).last_hidden_state
        dec = torch.full((len(input_ids), 1), self.dec_token_id, dtype=torch.long, device=self.device)
        logits = self.model.text_decoder(input_ids=dec, encoder_hidden_states=question_states).logits[:, 0].float()
        # p(yes) / (p(yes) + p(no)) of one softmax == sigmoid(l_yes - l_no)
        return torch.sigmoid(logits[:, self.yes_id] - logits[:, self.no_id]).tolist()
