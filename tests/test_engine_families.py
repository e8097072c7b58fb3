"""Every encoder family the seed-group engine stacks (harness.experiment.engines.VECTORISED_FAMILIES) against the loop.

Per family: a tiny random-weight encoder built from its transformers config class (no download), saved
as a model folder with a character tokenizer; its runs trained in a group must equal the same runs
trained by the loop (tests/test_engine_reference.py's comparison), and every dropout of the family must
draw from the hash (no torch RNG left: two training forwards under different torch seeds agree).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import transformers as hf
from conftest import _char_vocab
from test_engine_reference import assert_same_run, context

from harness.experiment.engines import VECTORISED_FAMILIES, model_type
from harness.experiment.spec import Recipe, RunSpec
from harness.training import hashdropout
from harness.training.loop import fine_tune
from harness.training.models import load_classifier
from harness.training.vectorised.engine import train_group

TINY = {"vocab_size": len(_char_vocab()), "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 37, "max_position_embeddings": 80, "pad_token_id": 0}  # fmt: skip
DROPOUT = {"hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1}
TOKEN_TYPES = ["input_ids", "token_type_ids", "attention_mask"]
NO_TOKEN_TYPES = ["input_ids", "attention_mask"]

# family -> (its config class, the tiny config's fields, the inputs its tokenizer gives); one per VECTORISED_FAMILIES.
FAMILIES: dict[str, tuple[type, dict[str, Any], list[str]]] = {
    "bert": (hf.BertConfig, {**TINY, **DROPOUT, "hidden_act": "gelu_new"}, TOKEN_TYPES),  # any activation
    "roberta": (hf.RobertaConfig, {**TINY, **DROPOUT, "bos_token_id": 2, "eos_token_id": 3}, NO_TOKEN_TYPES),
    "xlm-roberta": (hf.XLMRobertaConfig, {**TINY, **DROPOUT, "bos_token_id": 2, "eos_token_id": 3}, NO_TOKEN_TYPES),
    "electra": (hf.ElectraConfig, {**TINY, **DROPOUT, "embedding_size": 16}, TOKEN_TYPES),
    "deberta-v2": (  # DeBERTa-v3's settings: relative attention in buckets, c2p + p2c, no absolute positions
        hf.DebertaV2Config,
        {**TINY, **DROPOUT, "relative_attention": True, "position_buckets": 16, "pos_att_type": ["p2c", "c2p"],
         "position_biased_input": False, "norm_rel_ebd": "layer_norm", "share_att_key": True,
         "max_relative_positions": -1, "pooler_dropout": 0.1, "type_vocab_size": 0},
        NO_TOKEN_TYPES,
    ),
    "distilbert": (
        hf.DistilBertConfig,
        {"vocab_size": TINY["vocab_size"], "dim": 32, "n_layers": 2, "n_heads": 4, "hidden_dim": 37,
         "max_position_embeddings": 80, "pad_token_id": 0, "dropout": 0.1, "attention_dropout": 0.1,
         "seq_classif_dropout": 0.1},
        NO_TOKEN_TYPES,
    ),
    "mpnet": (hf.MPNetConfig, {**TINY, **DROPOUT, "bos_token_id": 2, "eos_token_id": 3}, NO_TOKEN_TYPES),
    "modernbert": (  # local attention (window 8) in one layer of two, global in the other
        hf.ModernBertConfig,
        {**TINY, "bos_token_id": 2, "eos_token_id": 3, "cls_token_id": 2, "sep_token_id": 3,
         "global_attn_every_n_layers": 2, "local_attention": 8, "embedding_dropout": 0.1, "mlp_dropout": 0.1,
         "attention_dropout": 0.1, "classifier_dropout": 0.1},
        NO_TOKEN_TYPES,
    ),
}  # fmt: skip
RECIPE = Recipe(lr=1e-2, batch_size=8, max_steps=8, warmup_ratio=0.2, weight_decay=0.01, grad_clip=1.0)


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """family -> a folder with the tiny random encoder (no task head: the run adds it) and a tokenizer."""
    vocab = _char_vocab()
    out = {}
    for family, (config_class, fields, inputs) in FAMILIES.items():
        folder = tmp_path_factory.mktemp(family)
        hf.BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True,
                         model_input_names=inputs).save_pretrained(folder)  # fmt: skip
        torch.manual_seed(0)
        hf.AutoModel.from_config(config_class(**fields)).save_pretrained(folder)
        out[family] = folder
    return out


def test_every_vectorised_family_is_tested_here() -> None:
    assert sorted(FAMILIES) == sorted(VECTORISED_FAMILIES)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_runs_in_a_group_equal_the_runs_trained_by_the_loop(
    family: str, family_dirs: dict[str, Path], tiny_glue_dir: Path
) -> None:
    assert model_type(str(family_dirs[family])) == family  # the parser sees the family it will train
    fields = {"sample_size": 24, "eval_protocol": "heldout", "max_seq_length": 32, "num_evals": 2}
    specs = [RunSpec("sst2", str(family_dirs[family]), RECIPE, i, o, **fields) for i, o in ((1, 11), (2, 12))]
    grouped = train_group(specs, context(tiny_glue_dir))
    assert all("trained one run at a time" not in r.run["notes"] for r in grouped)  # really stacked
    for spec, result in zip(specs, grouped, strict=True):
        assert_same_run(result, fine_tune(spec, context(tiny_glue_dir))[0])
    assert grouped[0].run["loss_mean"] != pytest.approx(grouped[1].run["loss_mean"], abs=1e-6)  # two runs


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_draws_every_dropout_mask_from_the_hash(family: str, family_dirs: dict[str, Path]) -> None:
    model = load_classifier(str(family_dirs[family]), 2)
    draws = hashdropout.install(model, order_seed=5)
    ids = torch.randint(5, 60, (4, 20), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0
    model.eval()
    plain = model(input_ids=ids, attention_mask=mask).logits
    model.train()
    outs = []
    for torch_seed in (0, 1):
        torch.manual_seed(torch_seed)
        draws.at(step=3)
        outs.append(model(input_ids=ids, attention_mask=mask).logits)
    assert torch.equal(outs[0], outs[1])  # torch's RNG changed, the masks did not
    assert not torch.allclose(outs[0], plain)  # dropout is on
    draws.at(step=4)
    assert not torch.equal(model(input_ids=ids, attention_mask=mask).logits, outs[0])  # a new step draws anew


def test_a_group_of_a_family_off_the_list_trains_its_runs_in_the_loop(tmp_path: Path, tiny_glue_dir: Path) -> None:
    """A hub model's family is only known in the worker: off the list, its group trains one run at a time through
    the loop (the same numbers, a note), never a failed run."""
    vocab = _char_vocab()
    hf.BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}).save_pretrained(tmp_path)
    config = hf.AlbertConfig(vocab_size=len(vocab), embedding_size=16, hidden_size=32, num_hidden_layers=2,
                             num_attention_heads=4, intermediate_size=37, max_position_embeddings=80)  # fmt: skip
    hf.AlbertModel(config).save_pretrained(tmp_path)
    fields = {"sample_size": 16, "eval_protocol": "heldout", "max_seq_length": 32, "num_evals": 2}
    specs = [RunSpec("sst2", str(tmp_path), RECIPE, i, o, **fields) for i, o in ((1, 11), (2, 12))]
    grouped = train_group(specs, context(tiny_glue_dir))
    for spec, result in zip(specs, grouped, strict=True):
        assert "model family 'albert'" in result.run["notes"] and "one run at a time" in result.run["notes"]
        assert_same_run(result, fine_tune(spec, context(tiny_glue_dir))[0])
