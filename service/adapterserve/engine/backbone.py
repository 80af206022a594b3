"""The frozen backbone: loaded once, walked layer by layer so adapters can act on each row.

We reuse the checkpoint's own modules (embeddings, linears, LayerNorms, pooler) and write only the
encoder loop ourselves: that keeps the pretrained numerics while letting an `AdapterBatch` insert
per-row deltas at every site (see service/adapterserve/adapters/batch.py).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..adapters.activations import get_activation
from ..adapters.batch import EMPTY, AdapterBatch
from ..adapters.prefix import extend
from ..formats.registry import BackboneShape

log = logging.getLogger(__name__)

SUPPORTED_MODEL_TYPES = {"bert", "roberta", "xlm-roberta", "camembert", "electra"}
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class BackboneInfo:
    name: str
    model_type: str
    hidden_size: int
    num_layers: int
    max_length: int
    has_pooler: bool
    pooling: str  # sentence-embedding pooling: mean | cls | max
    normalize: bool


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("ADAPTERSERVE_DEVICE=cuda but no CUDA device is visible")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if device.type == "cpu" and dtype == "float16":
        raise RuntimeError("float16 is not supported on CPU; use float32 or bfloat16")
    if dtype == "int8":
        if device.type != "cpu":
            raise RuntimeError("ADAPTERSERVE_DTYPE=int8 runs on the CPU only (the onnx runtime); use float16 on CUDA")
        return torch.float32  # the torch modules (adapters, heads, pooler) stay float; the onnx graph is int8
    return DTYPES[dtype]


def sentence_pooling(path: str) -> tuple[str, bool]:
    """Pooling and normalisation as the checkpoint's sentence-transformers config says; mean otherwise."""
    root = Path(path)
    pooling, normalize = "mean", False
    modules = root / "modules.json"
    if modules.is_file():
        for m in json.loads(modules.read_text()):
            kind = m.get("type", "")
            if kind.endswith("Pooling"):
                cfg = json.loads((root / m.get("path", "") / "config.json").read_text())
                if cfg.get("pooling_mode_cls_token"):
                    pooling = "cls"
                elif cfg.get("pooling_mode_max_tokens"):
                    pooling = "max"
            elif kind.endswith("Normalize"):
                normalize = True
    return pooling, normalize


class Backbone:
    def __init__(self, model: torch.nn.Module, tokenizer, info: BackboneInfo, device: torch.device, dtype: torch.dtype):
        self.model, self.tokenizer, self.info = model, tokenizer, info
        self.device, self.dtype = device, dtype
        cfg = model.config
        self._act = get_activation(cfg.hidden_act if isinstance(cfg.hidden_act, str) else "gelu")
        self._heads = cfg.num_attention_heads
        self._pooler = model.pooler if info.has_pooler else None
        self._project = getattr(model, "embeddings_project", None)
        from .runtime import TorchRuntime

        # What runs `encode` for the batches (engine/runtime.py); build_state may put another runtime here.
        self.runtime = TorchRuntime(self)

    @property
    def shape(self) -> BackboneShape:
        return BackboneShape(
            self.info.hidden_size, self.info.num_layers, self.model.config.intermediate_size, self.info.has_pooler
        )

    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        adapters: AdapterBatch = EMPTY,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Last hidden states [B, T, H] and, when the batch needs it, the pooler output [B, H]."""
        m = self.model
        x = adapters.embeddings(self._embed(input_ids, token_type_ids, adapters), m.embeddings.LayerNorm)
        if self._project is not None:  # ELECTRA with embedding_size != hidden_size, as ElectraModel does
            x = self._project(x)
        B, T, H = x.shape
        nh, hd = self._heads, H // self._heads
        # Boolean key mask: True = attend. Broadcasts over heads and query positions.
        text_mask = attention_mask.bool()
        key_mask = text_mask[:, None, None, :]
        for i, layer in enumerate(m.encoder.layer):
            att = layer.attention
            q = adapters.linear(x, att.self.query, i, "attention.self.query")
            k = adapters.linear(x, att.self.key, i, "attention.self.key")
            v = adapters.linear(x, att.self.value, i, "attention.self.value")
            q, k, v = (t.view(B, T, nh, hd).transpose(1, 2) for t in (q, k, v))
            prefix = adapters.prefix(i, x)
            if prefix is None:
                ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)
            else:  # this layer's prefix keys/values (padded per row, masked) come before the text's
                k, v, mask = extend(k, v, text_mask, prefix, nh)
                ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
            ctx = ctx.transpose(1, 2).reshape(B, T, H)
            h = adapters.linear(ctx, att.output.dense, i, "attention.output.dense")
            x = adapters.sublayer(h, x, att.output.LayerNorm, i, "mh")
            inter = self._act(adapters.linear(x, layer.intermediate.dense, i, "intermediate.dense"))
            h = adapters.linear(inter, layer.output.dense, i, "output.dense")
            x = adapters.sublayer(h, x, layer.output.LayerNorm, i, "output")
        pooled = None
        if adapters.needs_pooler:
            if self._pooler is None:
                raise ValueError("a head needs the pooler, which this backbone checkpoint does not have")
            pooled = adapters.pooler(x, self._pooler.dense)
        return x, pooled

    def _embed(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None, adapters: AdapterBatch):
        """The embeddings sub-module's output (before the adapters' LayerNorm bias shift). Rows with prompt
        tokens get them in place of their leading slots; rows with a PEFT prefix start their positions later."""
        emb = self.model.embeddings
        shifts = adapters.position_shifts() if (adapters.has_prompts or adapters.has_prefixes) else []
        if not adapters.has_prompts and not any(shifts):
            return emb(input_ids=input_ids, token_type_ids=token_type_ids)
        B, T = input_ids.shape
        # RoBERTa-style embeddings number positions from padding_idx + 1 (padded slots' ids are never attended)
        first = emb.padding_idx + 1 if getattr(emb, "padding_idx", None) is not None else 0
        start = torch.tensor(shifts, device=input_ids.device).unsqueeze(1) + first
        limit = emb.position_embeddings.num_embeddings - 1
        positions = (start + torch.arange(T, device=input_ids.device)).clamp(max=limit)
        words = adapters.word_embeddings(emb.word_embeddings(input_ids))
        return emb(inputs_embeds=words, token_type_ids=token_type_ids, position_ids=positions)

    def sentence_embeddings(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.info.pooling == "cls":
            emb = hidden[:, 0]
        elif self.info.pooling == "max":
            emb = hidden.masked_fill(~attention_mask.bool()[..., None], float("-inf")).max(dim=1).values
        else:
            m = attention_mask.to(hidden.dtype)[..., None]
            emb = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
        if self.info.normalize:
            emb = F.normalize(emb.float(), p=2, dim=-1).to(emb.dtype)
        return emb


def load_backbone(name_or_path: str, device: str = "auto", dtype: str = "auto", max_length: int = 0) -> Backbone:
    from transformers import AutoModel, AutoTokenizer

    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model, loading = AutoModel.from_pretrained(
        name_or_path, dtype=torch.float32, output_loading_info=True, attn_implementation="sdpa"
    )
    mtype = model.config.model_type
    if mtype not in SUPPORTED_MODEL_TYPES or not hasattr(model, "encoder"):
        raise RuntimeError(
            f"backbone {name_or_path!r} has model_type {mtype!r}; "
            f"supported BERT-family types: {sorted(SUPPORTED_MODEL_TYPES)}"
        )
    missing = set(loading.get("missing_keys", []))
    has_pooler = getattr(model, "pooler", None) is not None and not any(k.startswith("pooler.") for k in missing)
    if getattr(model, "pooler", None) is not None and not has_pooler:
        log.warning("backbone %s has no pooler weights: heads that use the pooler will be refused", name_or_path)
    other_missing = [k for k in missing if not k.startswith("pooler.")]
    if other_missing:
        raise RuntimeError(f"backbone checkpoint {name_or_path!r} lacks weights: {sorted(other_missing)[:5]}")
    model.requires_grad_(False)
    model.eval()
    model.to(device=dev, dtype=dt)
    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    limit = model.config.max_position_embeddings
    if mtype in {"roberta", "xlm-roberta", "camembert"}:
        limit -= 2  # RoBERTa's positions start after the padding index
    tok_limit = getattr(tokenizer, "model_max_length", limit) or limit
    limit = min(limit, tok_limit if tok_limit < 10**6 else limit)
    if max_length:
        limit = min(limit, max_length)
    pooling, normalize = sentence_pooling(name_or_path) if Path(name_or_path).is_dir() else ("mean", False)
    info = BackboneInfo(
        name=name_or_path,
        model_type=mtype,
        hidden_size=model.config.hidden_size,
        num_layers=model.config.num_hidden_layers,
        max_length=limit,
        has_pooler=has_pooler,
        pooling=pooling,
        normalize=normalize,
    )
    log.info("backbone loaded", extra={"backbone": name_or_path, "device": str(dev), "dtype": str(dt)})
    return Backbone(model, tokenizer, info, dev, dt)
