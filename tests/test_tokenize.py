"""Tokenisers: shapes, locality, bounded patch length, the factory and Standardize."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from swifthydra.exceptions import InvalidInputError
from swifthydra.nn.tokenize import (
    TOKENIZERS,
    FeatureTokenizer,
    PatchTokenizer,
    RowTokenizer,
    Standardize,
    make_tokenizer,
)


@pytest.mark.parametrize(
    ("name", "cls", "seq_len"),
    [("row", RowTokenizer, 1), ("feature", FeatureTokenizer, 10), ("patch", PatchTokenizer, 10)],
)
def test_factory_builds_each_tokenizer(name, cls, seq_len):
    tok = make_tokenizer(name, 10, 6)
    assert isinstance(tok, cls)
    assert tok.seq_len == seq_len
    out = tok(torch.randn(4, 10))
    assert out.shape == (4, seq_len, 6)


def test_unknown_tokenizer_lists_the_choices():
    with pytest.raises(InvalidInputError) as err:
        make_tokenizer("pixels", 10, 6)
    for choice in TOKENIZERS:
        assert choice in str(err.value)


def test_factory_rejects_options_for_tokenizers_without_any():
    with pytest.raises(InvalidInputError, match="does not take"):
        make_tokenizer("row", 10, 6, max_tokens=4)
    with pytest.raises(InvalidInputError, match="does not take"):
        make_tokenizer("feature", 10, 6, feature_dim=4)
    with pytest.raises(InvalidInputError):
        make_tokenizer("feature", 0, 6)


def _changed_tokens(tok, n_features, j):
    x = torch.randn(2, n_features)
    x2 = x.clone()
    x2[:, j] += 3.0
    diff = (tok(x) - tok(x2)).abs().amax(dim=(0, 2))
    return torch.nonzero(diff > 0).flatten().tolist()


def test_feature_token_depends_only_on_its_feature():
    tok = make_tokenizer("feature", 7, 5)
    for j in range(7):
        assert _changed_tokens(tok, 7, j) == [j]


def test_patch_token_depends_only_on_its_patch():
    tok = make_tokenizer("patch", 10, 5, patch_size=3)  # patches [0-2] [3-5] [6-8] [9 + padding]
    assert tok.seq_len == 4
    for j in range(10):
        assert _changed_tokens(tok, 10, j) == [j // 3]


def test_patch_tokenizer_handles_wide_tables():
    tok = make_tokenizer("patch", 1555, 8)
    assert tok.seq_len <= 32
    assert tok.patch_size == math.ceil(1555 / 32)
    out = tok(torch.randn(3, 1555))
    assert out.shape == (3, tok.seq_len, 8)
    assert torch.isfinite(out).all()


@settings(max_examples=60, deadline=None)
@given(
    n_features=st.integers(1, 300),
    max_tokens=st.integers(1, 40),
    patch_size=st.one_of(st.none(), st.integers(1, 20)),
)
def test_patch_length_is_bounded_and_covers_all_features(n_features, max_tokens, patch_size):
    tok = PatchTokenizer(n_features, 4, patch_size=patch_size, max_tokens=max_tokens)
    p, length = tok.patch_size, tok.seq_len
    assert 1 <= length <= max_tokens
    assert length * p >= n_features > (length - 1) * p  # every feature in exactly one patch
    if patch_size is not None:
        assert p >= patch_size
    assert tok(torch.zeros(2, n_features)).shape == (2, length, 4)


def test_patch_rejects_bad_sizes():
    with pytest.raises(InvalidInputError):
        PatchTokenizer(5, 4, max_tokens=0)
    with pytest.raises(InvalidInputError):
        PatchTokenizer(5, 4, patch_size=0)


def test_standardize_fits_mean_and_scale_and_clips():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 3, generator=g) * torch.tensor([2.0, 5.0, 0.0]) + torch.tensor(
        [1.0, -3.0, 7.0]
    )
    s = Standardize(3, clip=10.0).fit(x)
    z = s(x)
    torch.testing.assert_close(z[:, :2].mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close(z[:, :2].std(0, unbiased=False), torch.ones(2), atol=1e-5, rtol=0)
    assert s.scale[2] == 1.0  # constant column: scale 1, not a division by zero
    far = s(torch.tensor([[1e20, -1e20, 7.0]]))
    assert far.tolist() == [[10.0, -10.0, 0.0]]
    assert set(dict(s.named_buffers())) == {"mean", "scale"}  # travel with the state_dict


def test_row_tokenizer_with_feature_embeddings_is_piecewise_linear_per_feature():
    torch.manual_seed(0)
    tok = make_tokenizer("row", 3, 5, feature_dim=4)
    assert tok.seq_len == 1
    x = torch.zeros(200, 3)
    x[:, 1] = torch.linspace(-3, 3, 200)
    out = tok(x)[:, 0]  # (200, 5)
    assert out.shape == (200, 5)
    slopes = out.diff(dim=0)
    assert not torch.allclose(slopes[0], slopes[-1], atol=1e-5)  # not linear in x_1: ReLU kinks
    plain = make_tokenizer("row", 3, 5)
    plain_slopes = plain(x)[:, 0].diff(dim=0)
    torch.testing.assert_close(plain_slopes[0], plain_slopes[-1], atol=1e-5, rtol=1e-4)  # linear
    with pytest.raises(InvalidInputError, match="feature_dim"):
        make_tokenizer("row", 3, 5, feature_dim=-1)
