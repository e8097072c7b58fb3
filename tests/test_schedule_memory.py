"""The memory estimate of a seed group (harness/schedule/memory.py) against numbers computed by hand."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from harness.experiment.spec import Recipe, RunSpec
from harness.schedule.memory import (
    PROCESS_RESERVE,
    SAFETY,
    ModelShape,
    group_memory,
    max_group_size,
    max_seeds_for,
    model_shape,
    slot_budget,
    specs_memory,
)

MINILM = ModelShape(vocab_size=30522, hidden_size=384, num_layers=6, num_heads=12, intermediate_size=1536,
                    max_positions=512, type_vocab_size=2, num_labels=2)  # fmt: skip
TINY = ModelShape(vocab_size=10, hidden_size=4, num_layers=1, num_heads=2, intermediate_size=8, max_positions=6,
                  type_vocab_size=2, num_labels=3)  # fmt: skip


def test_parameter_count_of_a_tiny_bert_by_hand() -> None:
    # embeddings (10 + 6 + 2) x 4 + LayerNorm 8 = 80; layer: QKVO 4 x (16 + 4) = 80, FFN 4x8+8 + 8x4+4 = 76,
    # 2 LayerNorms 16 -> 172; pooler 16 + 4 = 20; classifier 4 x 3 + 3 = 15
    assert TINY.parameters == 80 + 172 + 20 + 15


def test_parameter_count_matches_transformers() -> None:
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=3, num_attention_heads=4,
                        intermediate_size=24, max_position_embeddings=20, type_vocab_size=2, num_labels=3)  # fmt: skip
    model = BertForSequenceClassification(config)
    shape = ModelShape(50, 16, 3, 4, 24, 20, 2, 3)
    assert shape.parameters == sum(p.numel() for p in model.parameters())


def test_group_estimate_of_a_tiny_bert_by_hand() -> None:
    est = group_memory(TINY, k=3, batch_size=2, seq_len=5, precision="fp32", pretrained_copy=True)
    p = 287
    assert est.state == 3 * 16 * p and est.copies == 3 * 4 * p
    # fp32 per token per layer: 34 x 4 + 8 x 8 + 9 x 2 heads x 5 tokens = 136 + 64 + 90 = 290 bytes
    assert est.activations == 3 * 2 * 5 * 1 * 290
    assert est.total == pytest.approx(SAFETY * (3 * 20 * p + 3 * 2 * 5 * 290), abs=1)
    bf16 = group_memory(TINY, k=1, batch_size=2, seq_len=5, precision="bf16")
    assert bf16.copies == 2 * p and bf16.activations == 2 * 5 * (18 * 4 + 4 * 8 + 5 * 2 * 5)


def test_estimate_covers_the_measured_h200_peak_without_gross_excess() -> None:
    """docs/gpu-check.md: MiniLM-L6, batch 16, max length 64, bf16, K = 64 peaked at 32.66 GiB on an H200."""
    est = group_memory(MINILM, k=64, batch_size=16, seq_len=64, precision="bf16")
    measured = 32.66 * 2**30
    assert measured <= est.total <= 1.5 * measured
    assert group_memory(MINILM, 64, 16, 64, "bf16").total == pytest.approx(64 * est.per_seed)


def test_largest_group_that_fits_and_the_slot_budget() -> None:
    one = group_memory(TINY, 1, 2, 5).total
    assert max_group_size(TINY, 2, 5, budget=10 * one) == 10
    assert max_group_size(TINY, 2, 5, budget=10 * one - 1) == 9
    assert max_group_size(TINY, 2, 5, budget=0) == 1  # one run is tried anyway; the OOM retry is the fallback
    assert slot_budget(10 * 2**30, 2) == (10 * 2**30 - 2 * PROCESS_RESERVE) // 2
    assert slot_budget(PROCESS_RESERVE, 2) == 0


def _write_config(folder: Path, **over: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = {"vocab_size": 10, "hidden_size": 4, "num_hidden_layers": 3, "num_attention_heads": 2,
              "intermediate_size": 8, "max_position_embeddings": 6, "type_vocab_size": 2, **over}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_shape_read_from_the_config_without_torch(tmp_path: Path) -> None:
    spec = RunSpec("mnli", str(_write_config(tmp_path / "m")), Recipe(), 1, 1)
    assert model_shape(spec) == dataclasses.replace(TINY, num_layers=3)  # MNLI: 3 labels
    assert model_shape(dataclasses.replace(spec, model_layers=1)).num_layers == 1
    assert model_shape(dataclasses.replace(spec, model=str(tmp_path / "none"))) is None
    est = specs_memory([spec, spec])
    assert est is not None and est.k == 2
    assert est.total == group_memory(model_shape(spec), 2, 16, 128).total


def test_max_seeds_for_a_spec_follows_its_recipe(tmp_path: Path) -> None:
    spec = RunSpec("rte", str(_write_config(tmp_path / "m")), Recipe(batch_size=4), 1, 1, max_seq_length=8)
    one = specs_memory([spec]).total
    assert max_seeds_for(spec, 7 * one) == 7
    assert max_seeds_for(spec, None) is None
    prior = dataclasses.replace(spec, recipe=Recipe(batch_size=4, prior_wd=0.1))
    assert specs_memory([prior]).copies > 0 and max_seeds_for(prior, 7 * one) < 7
