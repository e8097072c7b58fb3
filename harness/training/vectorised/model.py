"""A BERT-style encoder classifier over parameters stacked along a leading run axis K.

Every matmul is one batched kernel for all K runs (baddbmm over [K, tokens, features]); attention
runs with batch K*B through scaled_dot_product_attention (or an explicit softmax when attention
dropout must draw per-run masks). The parameters of all runs live in one flat [K, P] buffer and
each named parameter is a leaf view of it, so the optimiser updates every run in a few kernels.
Query, key and value weights are laid out next to each other, so a layer's QKV is one [K, 3H, H] view.

Dropout and Mixout masks come from harness.training.vectorised.hashrng: keyed by the run's order seed, the
step and the site, indexed by a fixed (maximal) shape, so a run's masks do not depend on its group.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from harness.training.vectorised import hashrng

_QKV = re.compile(r"^(.*\.attention\.self\.)(query|key|value)\.(weight|bias)$")


class UnsupportedModel(ValueError):
    """A model this engine cannot stack (not a BERT-style *ForSequenceClassification)."""


@dataclass(frozen=True)
class Arch:
    """What the forward needs from the HF config (after the recipe's dropout override)."""

    prefix: str  # "bert."
    hidden: int
    heads: int
    layers: int
    eps: float
    num_labels: int
    pad_id: int
    p_hidden: float
    p_attn: float
    p_cls: float
    max_len: int  # the spec's max_seq_length: fixes the mask index strides
    max_batch: int

    @staticmethod
    def of(model: nn.Module, max_len: int, max_batch: int) -> Arch:
        config = model.config
        if getattr(config, "model_type", "") != "bert" or not hasattr(model, "bert"):
            raise UnsupportedModel(f"{type(model).__name__} ({getattr(config, 'model_type', '?')}): not a BERT model")
        if getattr(config, "hidden_act", "gelu") != "gelu":
            raise UnsupportedModel(f"hidden_act {config.hidden_act!r}: the stacked forward implements 'gelu'")
        if getattr(config, "position_embedding_type", "absolute") != "absolute":
            raise UnsupportedModel("position_embedding_type must be 'absolute'")
        if getattr(model.bert, "pooler", None) is None:
            raise UnsupportedModel("the model has no pooler")
        cls_dropout = getattr(getattr(model, "dropout", None), "p", config.hidden_dropout_prob)
        return Arch(
            prefix="bert.",
            hidden=config.hidden_size,
            heads=config.num_attention_heads,
            layers=config.num_hidden_layers,
            eps=config.layer_norm_eps,
            num_labels=config.num_labels,
            pad_id=config.pad_token_id if config.pad_token_id is not None else 0,
            p_hidden=float(config.hidden_dropout_prob),
            p_attn=float(config.attention_probs_dropout_prob),
            p_cls=float(cls_dropout),
            max_len=max_len,
            max_batch=max_batch,
        )


@dataclass(frozen=True)
class Layout:
    """Where each named parameter sits in the flat [K, P] buffer."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    offsets: tuple[int, ...]
    size: int

    @staticmethod
    def of(model: nn.Module) -> Layout:
        named = dict(model.named_parameters())
        order: list[str] = []
        for name in named:
            match = _QKV.match(name)
            if match is None:
                order.append(name)
            elif match.group(2) == "query":  # q, k, v weights then q, k, v biases, adjacent
                base, kind = match.group(1), match.group(3)
                order += [f"{base}{part}.{kind}" for part in ("query", "key", "value")]
        offsets, at = [], 0
        for name in order:
            offsets.append(at)
            at += named[name].numel()
        return Layout(tuple(order), tuple(tuple(named[n].shape) for n in order), tuple(offsets), at)

    def slice_of(self, name: str) -> slice:
        i = self.names.index(name)
        return slice(self.offsets[i], self.offsets[i] + math.prod(self.shapes[i]))


def stack_parameters(models: list[nn.Module], layout: Layout, device: torch.device) -> torch.Tensor:
    """The flat [K, P] float32 buffer holding every model's parameters in `layout` order."""
    flat = torch.empty(len(models), layout.size, dtype=torch.float32)
    for k, model in enumerate(models):
        named = dict(model.named_parameters())
        for name, offset, shape in zip(layout.names, layout.offsets, layout.shapes, strict=True):
            flat[k, offset : offset + math.prod(shape)] = named[name].detach().reshape(-1).float()
    return flat.to(device)


def leaf_views(flat: torch.Tensor, layout: Layout, requires_grad: bool = True) -> dict[str, torch.Tensor]:
    """name -> a [K, *shape] leaf view of `flat` (updating flat in place updates the views)."""
    k = flat.shape[0]
    views = {}
    for name, offset, shape in zip(layout.names, layout.offsets, layout.shapes, strict=True):
        view = flat[:, offset : offset + math.prod(shape)].view(k, *shape)
        views[name] = view.requires_grad_(requires_grad)
    return views


class Masks:
    """Dropout / Mixout masks of one training step: per-run keys [S, K] and cached index hashes."""

    def __init__(self, seeds: torch.Tensor, arch: Arch) -> None:
        self.seeds = seeds  # [K] int64 on the device
        self.arch = arch
        self.keys: torch.Tensor | None = None
        self._index: dict[str, torch.Tensor] = {}
        self.sites = 4 + 4 * arch.layers

    def at_step(self, step: int) -> None:
        sites = torch.arange(self.sites + 1024, device=self.seeds.device, dtype=torch.int64)
        self.keys = hashrng.stream_keys(self.seeds[None, :], step, sites[:, None])  # [S, K]

    def _hashed_index(self, kind: str, shape: tuple[int, ...]) -> torch.Tensor:
        cached = self._index.get(kind)
        if cached is None:
            cached = hashrng.index_hash(shape, self.seeds.device)
            self._index[kind] = cached
        return cached

    def keep(self, site: int, kind: str, full: tuple[int, ...], shape: tuple[int, ...], p: float) -> torch.Tensor:
        """A keep mask [K, *shape]; element e uses the draw of e inside the maximal shape `full`."""
        index = self._hashed_index(kind, full)[tuple(slice(0, n) for n in shape)]
        assert self.keys is not None, "call at_step first"
        return hashrng.keep_from_index(self.keys[site], index, p)

    def dropout(self, x: torch.Tensor, site: int, kind: str, full: tuple[int, ...], p: float) -> torch.Tensor:
        if p == 0:
            return x
        keep = self.keep(site, kind, full, tuple(x.shape[1:]), p)
        return torch.where(keep, x * (1.0 / (1.0 - p)), torch.zeros((), dtype=x.dtype, device=x.device))


def _linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """x [K, N, in], w [K, out, in], b [K, out] -> [K, N, out] in one batched kernel."""
    return torch.baddbmm(b.unsqueeze(1).to(x.dtype), x, w.transpose(1, 2).to(x.dtype))


def _layer_norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    """Per-run LayerNorm over the last axis; x [K, ..., H], w and b [K, H]."""
    shape = (w.shape[0],) + (1,) * (x.dim() - 2) + (w.shape[1],)
    y = F.layer_norm(x.float(), x.shape[-1:], eps=eps)
    return y * w.view(shape) + b.view(shape)


class MixoutWeights:
    """Training-time Mixout (Lee et al. 2020) of named weights toward their initial values (see recipes/mixout.py)."""

    def __init__(self, names: frozenset[str], p: float, targets: dict[str, torch.Tensor]) -> None:
        self.names, self.p, self.targets = names, p, targets

    def mix(self, params: dict[str, torch.Tensor], masks: Masks) -> dict[str, torch.Tensor]:
        if not self.names or self.p == 0:
            return params
        out = dict(params)
        for site, name in enumerate(sorted(self.names)):
            w, w0 = params[name], self.targets[name]
            shape = tuple(w.shape[1:])
            keep = masks.keep(masks.sites + site, f"mixout:{shape}", shape, shape, self.p)
            out[name] = w0 + keep * (w - w0) / (1 - self.p)
        return out


def forward(
    params: dict[str, torch.Tensor],
    arch: Arch,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    token_type_ids: torch.Tensor,
    masks: Masks | None = None,
) -> torch.Tensor:
    """Logits [K, B, num_labels] for inputs [K, B, T]; masks None = eval mode (no dropout, no Mixout)."""
    k, b, t = input_ids.shape
    h, nh = arch.hidden, arch.heads
    d = h // nh
    pre = arch.prefix
    emb = f"{pre}embeddings."
    word = params[f"{emb}word_embeddings.weight"]  # [K, V, H]
    runs = torch.arange(k, device=input_ids.device).view(k, 1, 1)
    x = word[runs, input_ids]  # [K, B, T, H]: a gather, no copy of the [K, V, H] table
    x = x + params[f"{emb}position_embeddings.weight"][:, :t].unsqueeze(1)
    x = x + params[f"{emb}token_type_embeddings.weight"][runs, token_type_ids]
    x = _layer_norm(x, params[f"{emb}LayerNorm.weight"], params[f"{emb}LayerNorm.bias"], arch.eps)
    full_hidden = (arch.max_batch, arch.max_len, h)
    if masks is not None:
        x = masks.dropout(x, 0, "hidden", full_hidden, arch.p_hidden)
    dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
    keep_key = attention_mask.reshape(k * b, 1, 1, t).bool()
    use_manual = masks is not None and arch.p_attn > 0
    if use_manual:
        additive = torch.zeros(k * b, 1, 1, t, dtype=torch.float32, device=x.device)
        additive = additive.masked_fill(~keep_key, torch.finfo(torch.float32).min)
    for i in range(arch.layers):
        lp = f"{pre}encoder.layer.{i}."
        sp = f"{lp}attention.self."
        w_qkv = torch.cat([params[f"{sp}{n}.weight"] for n in ("query", "key", "value")], 1)
        b_qkv = torch.cat([params[f"{sp}{n}.bias"] for n in ("query", "key", "value")], 1)
        qkv = _linear(x.reshape(k, b * t, h).to(dtype), w_qkv, b_qkv)  # [K, B*T, 3H]
        qkv = qkv.view(k * b, t, 3, nh, d).permute(2, 0, 3, 1, 4)  # [3, K*B, nh, T, d]
        q, kk, v = qkv[0], qkv[1], qkv[2]
        if use_manual:
            scores = torch.matmul(q, kk.transpose(-1, -2)).float() * (1.0 / math.sqrt(d)) + additive
            probs = torch.softmax(scores, dim=-1)
            probs = masks.dropout(  # type: ignore[union-attr]
                probs.view(k, b, nh, t, t),
                1 + 4 * i,
                "attn",
                (arch.max_batch, nh, arch.max_len, arch.max_len),
                arch.p_attn,
            ).view(k * b, nh, t, t)
            ctx = torch.matmul(probs.to(v.dtype), v)
        else:
            ctx = F.scaled_dot_product_attention(q, kk, v, attn_mask=keep_key)
        ctx = ctx.transpose(1, 2).reshape(k, b * t, h)
        ao = f"{lp}attention.output."
        y = _linear(ctx, params[f"{ao}dense.weight"], params[f"{ao}dense.bias"]).view(k, b, t, h)
        if masks is not None:
            y = masks.dropout(y, 2 + 4 * i, "hidden", full_hidden, arch.p_hidden)
        x = _layer_norm(y + x, params[f"{ao}LayerNorm.weight"], params[f"{ao}LayerNorm.bias"], arch.eps)
        inter = _linear(
            x.reshape(k, b * t, h).to(dtype), params[f"{lp}intermediate.dense.weight"],
            params[f"{lp}intermediate.dense.bias"],
        )  # fmt: skip
        inter = F.gelu(inter)
        y = _linear(inter, params[f"{lp}output.dense.weight"], params[f"{lp}output.dense.bias"]).view(k, b, t, h)
        if masks is not None:
            y = masks.dropout(y, 3 + 4 * i, "hidden", full_hidden, arch.p_hidden)
        x = _layer_norm(y + x, params[f"{lp}output.LayerNorm.weight"], params[f"{lp}output.LayerNorm.bias"], arch.eps)
    pooled = torch.tanh(
        _linear(x[:, :, 0].to(dtype), params[f"{pre}pooler.dense.weight"], params[f"{pre}pooler.dense.bias"])
    )  # [K, B, H]
    if masks is not None:
        pooled = masks.dropout(pooled, 4 * arch.layers + 1, "pooled", (arch.max_batch, h), arch.p_cls)
    return _linear(pooled, params["classifier.weight"], params["classifier.bias"]).float()
