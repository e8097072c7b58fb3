"""R3F: zero with zero noise; equals the symmetric KL computed by hand on a tiny model."""

import pytest
import torch
from conftest import tiny_bert

from harness.experiment.config import Recipe
from harness.training.recipes import r3f, regularization_loss


def batch() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    mask = torch.ones(4, 8, dtype=torch.long)
    mask[1, 5:] = 0
    return {
        "input_ids": torch.randint(1, 100, (4, 8), generator=gen),
        "attention_mask": mask,
        "token_type_ids": torch.zeros(4, 8, dtype=torch.long),
        "labels": torch.tensor([0, 1, 2, 1]),
    }


def test_none_when_lambda_is_zero():
    model = tiny_bert(num_labels=3)
    b = batch()
    assert regularization_loss(model, b, model(**b).logits, Recipe()) is None


@pytest.mark.parametrize("noise", ["uniform", "normal"])
def test_zero_with_zero_noise(noise):
    model = tiny_bert(num_labels=3).eval()
    b = batch()
    logits = model(**b).logits
    loss = regularization_loss(model, b, logits, Recipe(r3f_lambda=1.0, r3f_eps=0.0, r3f_noise=noise))
    assert loss.item() == pytest.approx(0.0, abs=1e-7)


def test_equals_symmetric_kl_by_hand(monkeypatch):
    model = tiny_bert(num_labels=3).eval()
    b = batch()
    fixed = 0.5 * torch.randn(4, 8, 32, generator=torch.Generator().manual_seed(1))
    monkeypatch.setattr(r3f, "sample_noise", lambda like, kind, eps: fixed)
    lam = 0.7
    clean = model(**b).logits
    loss = regularization_loss(model, b, clean, Recipe(r3f_lambda=lam, r3f_eps=0.5))

    with torch.no_grad():
        emb = model.bert.embeddings.word_embeddings(b["input_ids"]) + fixed
        noisy = model(inputs_embeds=emb, attention_mask=b["attention_mask"], token_type_ids=b["token_type_ids"]).logits
        p = torch.softmax(clean.double(), -1)
        q = torch.softmax(noisy.double(), -1)
        kl_pq = (p * (p.log() - q.log())).sum()
        kl_qp = (q * (q.log() - p.log())).sum()
        expected = lam * (kl_pq + kl_qp) / 4
    assert expected.item() > 1e-4  # the noise does change the outputs
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()  # differentiable through both passes
    assert model.classifier.weight.grad is not None


def test_regression_uses_squared_difference(monkeypatch):
    model = tiny_bert(num_labels=1).eval()
    b = batch()
    b["labels"] = torch.rand(4)
    fixed = 0.5 * torch.randn(4, 8, 32, generator=torch.Generator().manual_seed(1))
    monkeypatch.setattr(r3f, "sample_noise", lambda like, kind, eps: fixed)
    clean = model(**b).logits
    loss = regularization_loss(model, b, clean, Recipe(r3f_lambda=2.0))
    with torch.no_grad():
        emb = model.bert.embeddings.word_embeddings(b["input_ids"]) + fixed
        noisy = model(inputs_embeds=emb, attention_mask=b["attention_mask"], token_type_ids=b["token_type_ids"]).logits
    assert loss.item() == pytest.approx(2.0 * ((noisy - clean) ** 2).mean().item(), rel=1e-5)


def test_noise_distributions():
    like = torch.zeros(200, 500)
    torch.manual_seed(0)
    u = r3f.sample_noise(like, "uniform", 0.1)
    assert u.abs().max().item() <= 0.1 and u.std().item() == pytest.approx(0.1 / 3**0.5, rel=0.02)
    n = r3f.sample_noise(like, "normal", 0.1)
    assert n.std().item() == pytest.approx(0.1, rel=0.02) and abs(n.mean().item()) < 0.002
