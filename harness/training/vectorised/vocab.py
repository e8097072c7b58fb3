"""Word-embedding rows no training batch touches: kept out of the optimiser's work, with identical results.

A few-sample run looks up a few thousand of a vocabulary's 30,000+ rows, yet Adam's update streams the
whole [K, V, H] embedding (half of MiniLM's parameters) through a dozen passes every step. A row that no
training example of any run in the group contains has a zero gradient at every step, so its Adam moments
stay 0 and its Adam update is exactly 0: only decoupled weight decay changes it (prior WD pulls it toward
w0, which it already equals). So the group renumbers the vocabulary: the rows used in training first, the
others after them, and the word embedding last in the flat buffer. The optimiser then runs Adam on the
prefix [0, trained) only and weight decay on everything; moments and scratch are sized to the prefix.

Renumbering changes no number a run computes: input ids are mapped to the new row of the same vector,
evaluation examples (which may hold tokens training never saw) read the untouched rows as they are, the
embedding's padding_idx follows its row, and dropout masks are keyed by positions, not token ids.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from harness.training.loop import Encoded


@dataclass(frozen=True)
class VocabOrder:
    """The input embedding's parameter name, old row of each new row (`order`), new row of each old id
    (`remap`), and how many rows training uses (`used`, the first rows after renumbering)."""

    name: str
    order: torch.Tensor  # [V] long
    remap: torch.Tensor  # [V] long
    used: int
    width: int  # the embedding dimension

    @property
    def untrained_elements(self) -> int:
        """Elements at the end of the flat buffer that Adam never needs to touch."""
        return (len(self.order) - self.used) * self.width


def vocab_order(model: nn.Module, train_sets: list[Encoded]) -> VocabOrder | None:
    """The renumbering for this group, or None where it does not apply (no plain input embedding, the
    embedding shared with another module or buffer, or every row used)."""
    embedding = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if not isinstance(embedding, nn.Embedding):
        return None
    weight = embedding.weight
    names = [n for n, p in model.named_parameters(remove_duplicate=False) if p is weight]
    if len(names) != 1 or any(b.shape == weight.shape for b in model.buffers()):
        return None  # tied to an output layer, or a buffer shaped like it (a Mixout target): leave it alone
    vocab = weight.shape[0]
    seen = torch.zeros(vocab, dtype=torch.bool)
    ids = [i for encoded in train_sets for feature in encoded.features for i in feature["input_ids"]]
    seen[torch.tensor(ids, dtype=torch.long)] = True
    seen[[encoded.pad_id for encoded in train_sets]] = True  # batches are padded with it
    if embedding.padding_idx is not None:
        seen[embedding.padding_idx] = True
    used = int(seen.sum())
    if used == vocab:
        return None
    order = torch.cat([torch.nonzero(seen).flatten(), torch.nonzero(~seen).flatten()])
    remap = torch.empty_like(order)
    remap[order] = torch.arange(vocab)
    return VocabOrder(names[0], order, remap, used, math.prod(weight.shape[1:]))


def renumber_model(model: nn.Module, vocab: VocabOrder) -> None:
    """The template's embedding module: its padding_idx follows its row (its gradient stays zero there)."""
    embedding = model.get_input_embeddings()
    if embedding.padding_idx is not None:
        embedding.padding_idx = int(vocab.remap[embedding.padding_idx])


def renumber_inputs(inputs: dict[str, torch.Tensor], vocab: VocabOrder) -> None:
    """input_ids mapped in place to the renumbered rows (other fields are not token ids)."""
    ids = inputs["input_ids"]
    inputs["input_ids"] = vocab.remap.to(ids.device)[ids]
