"""Our encoder walk (Backbone.encode) against the Hugging Face model it walks, for every listed model type.

Each case is a tiny random checkpoint built here with transformers and saved to a temporary folder, with the
tiny BERT's tokenizer; rows without an adapter must give the model's own last hidden states.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from adapterserve.engine.backbone import SUPPORTED_MODEL_TYPES, load_backbone

from ..conftest import TINY

SMALL = dict(
    vocab_size=30522,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=128,
)


def _config(model_type: str):
    from transformers import BertConfig, CamembertConfig, ElectraConfig, RobertaConfig, XLMRobertaConfig

    if model_type == "electra":
        # embedding_size != hidden_size: ElectraModel then projects the embeddings (embeddings_project)
        return ElectraConfig(embedding_size=16, **SMALL)
    cls = {"bert": BertConfig, "roberta": RobertaConfig, "xlm-roberta": XLMRobertaConfig, "camembert": CamembertConfig}
    return cls[model_type](**SMALL)


def _save_random(model_type: str, folder):
    from transformers import AutoModel

    torch.manual_seed(0)
    model = AutoModel.from_config(_config(model_type))
    model.eval()
    model.save_pretrained(folder)
    for f in TINY.iterdir():
        if f.name.startswith(("tokenizer", "vocab", "special_tokens")):
            shutil.copy(f, folder / f.name)
    return model


@pytest.mark.parametrize("model_type", sorted(SUPPORTED_MODEL_TYPES))
def test_encoder_walk_matches_the_hf_model(tmp_path, model_type):
    reference = _save_random(model_type, tmp_path)
    backbone = load_backbone(str(tmp_path), device="cpu", dtype="float32")
    assert backbone.info.model_type == model_type
    texts = ["a short one", "a rather longer sentence that needs more word pieces than the first"]
    enc = backbone.tokenizer(texts, padding=True, return_tensors="pt")
    types = enc.get("token_type_ids")
    with torch.inference_mode():
        ours, _ = backbone.encode(enc["input_ids"], enc["attention_mask"], types)
        theirs = reference(**enc).last_hidden_state
    mask = enc["attention_mask"].bool()
    diff = (ours - theirs)[mask].abs().max().item()
    assert diff < 1e-5, (model_type, diff)
