"""Tests of the reward terms: entropy gain, deception, episode weighting and label-noise guard."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.distance import cdist
from scipy.special import digamma, gammaln

from swifthydra.exceptions import InvalidInputError
from swifthydra.rl.reward import (
    EntropyGain,
    HydraReward,
    boundary_deception,
    combine_reward,
    deception,
    entropy_gain,
    guard_violation,
    kl_entropy,
    knn_distances,
    normal_margin,
    reward_weights,
    select_top,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])




def _kl_entropy_numpy(p: np.ndarray, k: int) -> float:
    """Independent float64 Kozachenko–Leonenko reference."""
    n, d = p.shape
    dist = cdist(p, p)
    np.fill_diagonal(dist, np.inf)
    eps = np.sort(dist, axis=1)[:, k - 1]
    log_vd = d / 2 * np.log(np.pi) - gammaln(d / 2 + 1)
    return float(digamma(n) - digamma(k) + log_vd + d * np.mean(np.log(eps)))


@pytest.fixture
def anomalies() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn((40, 3), generator=g, dtype=torch.float64) * 0.5 + 5.0


# ---------------------------------------------------------------------------- k-NN distances
@pytest.mark.parametrize("device", DEVICES)
def test_knn_distances_match_brute_force(device: str) -> None:
    rng = np.random.default_rng(1)
    q, r = rng.normal(size=(23, 4)), rng.normal(size=(31, 4))
    got = knn_distances(
        torch.tensor(q, device=device), torch.tensor(r, device=device), 3, chunk_size=5
    )
    want = np.sort(cdist(q, r), axis=1)[:, :3]
    np.testing.assert_allclose(got.cpu().numpy(), want, rtol=1e-10)

    self_d = knn_distances(torch.tensor(r), torch.tensor(r), 2, exclude_self=True, chunk_size=7)
    full = cdist(r, r)
    np.fill_diagonal(full, np.inf)
    np.testing.assert_allclose(self_d.numpy(), np.sort(full, axis=1)[:, :2], rtol=1e-10)


def test_knn_distances_rejects_too_many_neighbours() -> None:
    with pytest.raises(InvalidInputError, match="neighbours"):
        knn_distances(torch.zeros(2, 2), torch.zeros(3, 2), 4)
    with pytest.raises(InvalidInputError, match="neighbours"):
        knn_distances(torch.zeros(3, 2), torch.zeros(3, 2), 3, exclude_self=True)
    with pytest.raises(InvalidInputError, match="features"):
        knn_distances(torch.zeros(2, 2), torch.zeros(3, 3), 1)


# ---------------------------------------------------------------------------- entropy
def test_kl_entropy_matches_reference_and_gaussian_truth() -> None:
    rng = np.random.default_rng(2)
    p = rng.normal(size=(3000, 2))
    assert kl_entropy(p, k=3) == pytest.approx(_kl_entropy_numpy(p, 3), rel=1e-6)
    true_h = 0.5 * 2 * math.log(2 * math.pi * math.e)  # N(0, I_2)
    assert abs(kl_entropy(p, k=3) - true_h) < 0.1


@pytest.mark.parametrize("normalize", [False, True])
def test_kl_entropy_gain_is_exact_difference(anomalies: torch.Tensor, normalize: bool) -> None:
    k = 4
    cands = torch.tensor(
        [[5.0, 5.0, 5.0], [5.3, 4.8, 5.1], [9.0, 0.0, 5.0], [5.0, 5.0, 7.0]], dtype=torch.float64
    )
    gain = EntropyGain(anomalies, k, normalize=normalize)(cands)
    a = anomalies.numpy()
    h0 = _kl_entropy_numpy(a, k)
    n, d = a.shape
    for i, c in enumerate(cands.numpy()):
        exact = _kl_entropy_numpy(np.vstack([a, c]), k) - h0
        if normalize:
            exact *= (n + 1) / d
        assert gain[i].item() == pytest.approx(exact, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("estimator", ["kl", "proxy"])
def test_far_candidate_gains_more_entropy_than_near_one(
    anomalies: torch.Tensor, estimator: str
) -> None:
    near = anomalies.mean(0, keepdim=True)  # centre of the anomaly cloud
    far = near + torch.tensor([[3.0, -2.0, 1.0]], dtype=torch.float64)
    gain = entropy_gain(torch.cat([near, far]), anomalies, k=5, estimator=estimator)
    assert gain[1] > gain[0] + 1.0


def test_proxy_is_centred_log_kth_distance(anomalies: torch.Tensor) -> None:
    x = torch.tensor([[7.0, 7.0, 7.0]], dtype=torch.float64)
    got = entropy_gain(x, anomalies, k=3, estimator="proxy")
    a = anomalies.numpy()
    own = np.sort(cdist(a, a), axis=1)[:, 3]  # column 0 is self
    want = np.log(np.sort(cdist(x.numpy(), a), axis=1)[0, 2]) - np.log(own).mean()
    assert got.item() == pytest.approx(want, rel=1e-9)


def test_entropy_gain_with_tiny_anomaly_sets() -> None:
    x = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    one = entropy_gain(x, torch.zeros(1, 2))
    assert torch.allclose(one, torch.log(torch.tensor([1.0, 3.0])))
    assert torch.equal(entropy_gain(x, torch.zeros(0, 2)), torch.zeros(2))
    two = entropy_gain(x, torch.tensor([[0.0, 0.0], [0.1, 0.0]]))
    assert torch.isfinite(two).all() and two[1] > two[0]


def test_entropy_gain_rejects_bad_input(anomalies: torch.Tensor) -> None:
    with pytest.raises(InvalidInputError, match="estimator"):
        EntropyGain(anomalies, estimator="exact")
    with pytest.raises(InvalidInputError, match="features"):
        EntropyGain(anomalies)(torch.zeros(2, 5))
    with pytest.raises(InvalidInputError, match="NaN"):
        EntropyGain(torch.tensor([[0.0, float("nan")], [1.0, 1.0]]))


# ---------------------------------------------------------------------------- deception & weights
def test_deception_grows_as_detector_probability_falls() -> None:
    w = torch.tensor([0.99, 0.5, 0.1, 1e-3])
    d = deception(w)
    assert torch.all(d[1:] > d[:-1])
    assert d[1].item() == pytest.approx(math.log(2.0), rel=1e-6)
    extreme = deception(torch.tensor([0.0, 1.0, -3.0, 7.0, float("nan")]), eps=1e-6)
    assert torch.isfinite(extreme).all()
    assert extreme[0].item() == pytest.approx(-math.log(1e-6), rel=1e-5)
    assert extreme[1].item() == 0.0 and extreme[4].item() == 0.0


def test_boundary_deception_peaks_at_the_detector_boundary() -> None:
    w = torch.tensor([0.999, 0.9, 0.5, 0.1, 1e-4])
    d = boundary_deception(w, center=0.0, width=1.0, scale=2.0)
    assert d[2].item() == pytest.approx(2.0, rel=1e-5)
    assert int(torch.argmax(d)) == 2
    assert d[0] < d[1] < d[2] and d[2] > d[3] > d[4]
    # the centre moves the peak: a threshold logit of 2 prefers W = sigmoid(2) ≈ 0.88
    shifted = boundary_deception(torch.tensor([0.5, 0.88, 0.99]), center=2.0, width=1.0)
    assert int(torch.argmax(shifted)) == 1
    extreme = boundary_deception(torch.tensor([0.0, 1.0, -3.0, 7.0, float("nan")]))
    assert torch.isfinite(extreme).all() and extreme[4].item() == 0.0
    with pytest.raises(InvalidInputError):
        boundary_deception(w, width=0.0)


def test_boundary_mode_ranks_mid_band_candidate_above_flagged_and_deep_normal() -> None:
    """'log' rewards the candidate scored deep among normals most; 'boundary' the one the
    detector is unsure about, above both the one it already flags and the deep-normal one."""
    anomalies = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    cand = torch.tensor([[5.0, 5.0], [5.0, -5.0], [-5.0, 5.0]])  # flagged, mid-band, deep normal
    w_of = {5.0: 0.95, -5.0: 0.001}

    def detector(x: torch.Tensor) -> torch.Tensor:
        out = torch.full((x.shape[0],), 0.5)
        out[x[:, 1] == 5.0] = torch.tensor([w_of[float(v)] for v in x[x[:, 1] == 5.0, 0]])
        return out

    log_r = HydraReward(anomalies, detector=detector, episode=10, lam=0.0)(cand)
    assert int(torch.argmax(log_r)) == 2
    bnd = HydraReward(anomalies, detector=detector, episode=10, lam=0.0, deception_mode="boundary")
    r = bnd(cand)
    assert r[1] > r[0] and r[1] > r[2]
    # update() moves the boundary with the detector: centred at logit(0.95) the flagged one wins
    bnd.update(boundary_center=math.log(0.95 / 0.05), boundary_width=0.5)
    assert int(torch.argmax(bnd(cand))) == 0
    with pytest.raises(InvalidInputError):
        HydraReward(anomalies, deception_mode="hinge")
    with pytest.raises(InvalidInputError):
        bnd.update(boundary_width=-1.0)


def test_weight_shifts_from_diversity_to_deception() -> None:
    weights = [reward_weights(e, lam=2.0, gamma=0.9) for e in range(30)]
    div = [w[0] for w in weights]
    dec = [w[1] for w in weights]
    assert weights[0] == (2.0, 0.0)
    assert all(a > b for a, b in zip(div, div[1:], strict=False))
    assert all(a < b for a, b in zip(dec, dec[1:], strict=False))
    assert dec[-1] > 0.95
    gain, dec_t = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    early, late = combine_reward(gain, dec_t, 0), combine_reward(gain, dec_t, 40)
    assert early[0] > early[1] and late[1] > late[0]
    with pytest.raises(InvalidInputError, match="gamma"):
        reward_weights(1, gamma=1.0)
    with pytest.raises(InvalidInputError, match="episode"):
        reward_weights(-1)


# ---------------------------------------------------------------------------- guard
@pytest.fixture
def normals() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return torch.randn((500, 3), generator=g) * 0.3  # dense normal cloud at the origin


def test_guard_rejects_candidate_inside_dense_normal_data(normals: torch.Tensor) -> None:
    anomalies = torch.randn((20, 3), generator=torch.Generator().manual_seed(4)) * 0.3 + 3.0
    reward = HydraReward(anomalies, normals, episode=0, k=5, penalty=10.0)
    no_guard = HydraReward(anomalies, None, episode=0, k=5)
    inside = torch.tensor([[0.0, 0.0, 0.0]])
    outside = torch.tensor([[1.8, 1.8, 1.8]])
    t = reward.terms(torch.cat([inside, outside]))
    assert t["accepted"].tolist() == [False, True]
    assert t["violation"].tolist() == [1.0, 0.0]
    base = no_guard(torch.cat([inside, outside]))
    assert t["reward"][0] < base[0] - 5.0  # penalised
    assert t["reward"][1] == pytest.approx(base[1].item())  # untouched


def test_margin_never_rejects_where_real_anomalies_live(normals: torch.Tensor) -> None:
    # Two real anomalies hug the normal cloud: the margin drops below their distance.
    anomalies = torch.tensor([[0.9, 0.0, 0.0], [0.0, 1.0, 0.0], [4.0, 4.0, 4.0]])
    plain = normal_margin(normals, None, k=5)
    lowered = normal_margin(normals, anomalies, k=5, anomaly_quantile=0.0)
    near_dist = knn_distances(anomalies[:2], normals, 5)[:, -1].min().item()
    assert lowered <= near_dist + 1e-6
    assert lowered <= plain
    reward = HydraReward(anomalies, normals, anomaly_quantile=0.0)
    assert reward.terms(anomalies)["accepted"].all()


def test_margin_subsample_close_to_full(normals: torch.Tensor) -> None:
    full = normal_margin(normals, k=5)
    sub = normal_margin(normals, k=5, max_rows=200, generator=torch.Generator().manual_seed(0))
    assert sub == pytest.approx(full, rel=0.25)
    assert sub == normal_margin(
        normals, k=5, max_rows=200, generator=torch.Generator().manual_seed(0)
    )


def test_guard_violation_step_and_ramp() -> None:
    d = torch.tensor([0.0, 0.5, 0.9, 1.0, 2.0])
    assert guard_violation(d, 1.0).tolist() == [1.0, 1.0, 1.0, 0.0, 0.0]
    ramp = guard_violation(d, 1.0, softness=0.5)
    assert torch.allclose(ramp, torch.tensor([1.0, 1.0, 0.2, 0.0, 0.0]))
    assert guard_violation(torch.tensor([0.0]), 0.0).item() == 0.0


# ---------------------------------------------------------------------------- HydraReward
def test_hydra_reward_weights_deception_later(normals: torch.Tensor) -> None:
    anomalies = torch.randn((20, 3), generator=torch.Generator().manual_seed(5)) + 4.0

    def detector(x: torch.Tensor) -> torch.Tensor:  # misses points with small first coordinate
        return torch.sigmoid(2.0 * (x[:, 0] - 4.0))

    reward = HydraReward(anomalies, None, detector, episode=0)
    diverse = torch.tensor([[12.0, 12.0, 12.0]])  # far from anomalies, detected
    deceptive = torch.tensor([[2.0, 4.0, 4.0]])  # close to anomalies, missed
    x = torch.cat([diverse, deceptive])
    r0 = reward(x)
    assert r0[0] > r0[1]
    reward.update(episode=60)
    r60 = reward(x)
    assert r60[1] > r60[0]
    t = reward.terms(x)
    assert t["deception"][1] > t["deception"][0]
    assert t["w"][1] < t["w"][0]


def test_hydra_reward_needs_detector_once_deception_counts() -> None:
    reward = HydraReward(torch.zeros(3, 2) + torch.arange(3.0)[:, None], episode=0)
    assert torch.isfinite(reward(torch.ones(2, 2))).all()
    reward.update(episode=1)
    with pytest.raises(InvalidInputError, match="detector"):
        reward(torch.ones(2, 2))


def test_hydra_reward_update_anomaly_set(anomalies: torch.Tensor) -> None:
    a = anomalies.float()
    x = torch.tensor([[9.0, 9.0, 9.0]])
    reward = HydraReward(a[:10], episode=0)
    before = reward(x)
    reward.update(anomalies=torch.cat([a[:10], x + 0.01]))  # a close neighbour joins the set
    assert reward(x) < before


@pytest.mark.parametrize("device", DEVICES)
def test_hydra_reward_finite_for_extreme_inputs(device: str, normals: torch.Tensor) -> None:
    anomalies = torch.cat([torch.ones(5, 3) * 2.0, torch.randn(10, 3) + 2.0]).to(device)
    reward = HydraReward(
        anomalies, normals.to(device), lambda x: torch.sigmoid(x.sum(1)), episode=5
    )
    x = torch.tensor(
        [
            [2.0, 2.0, 2.0],  # duplicate of anomalies
            [1e30, -1e30, 1e30],
            [3e38, 3e38, 3e38],
            [float("nan"), 0.0, 0.0],
            [float("inf"), 0.0, 0.0],
            [0.0, 0.0, 0.0],  # on a normal row
        ],
        device=device,
    )
    t = reward.terms(x)
    for name in ("entropy_gain", "deception", "violation", "reward"):
        assert torch.isfinite(t[name]).all(), name
    assert t["valid"].tolist() == [True, True, True, False, False, True]
    assert not t["accepted"][3] and not t["accepted"][4]
    assert t["reward"][3].item() == reward.invalid_reward


@settings(max_examples=40, deadline=None)
@given(
    arrays(
        np.float32, (6, 3), elements=st.floats(-1024.0, 1024.0, width=32, allow_subnormal=False)
    ),
    arrays(
        np.float32,
        (4, 3),
        elements=st.floats(width=32, allow_nan=False, allow_infinity=False, allow_subnormal=False),
    ),
    st.sampled_from(["kl", "proxy"]),
)
def test_entropy_gain_always_finite(anom: np.ndarray, cand: np.ndarray, estimator: str) -> None:
    gain = entropy_gain(torch.from_numpy(cand), torch.from_numpy(anom), k=3, estimator=estimator)
    assert gain.shape == (4,)
    assert torch.isfinite(gain).all()


def test_margin_stays_fixed_when_generated_anomalies_join(normals: torch.Tensor) -> None:
    real = torch.tensor([[0.9, 0.0, 0.0], [4.0, 4.0, 4.0]])
    reward = HydraReward(real, normals, anomaly_quantile=0.0)
    before = reward.margin
    generated = torch.full((30, 3), 6.0) + torch.randn(
        30, 3, generator=torch.Generator().manual_seed(0)
    )
    reward.update(anomalies=torch.cat([real, generated]))
    assert reward.margin == before
    reward.update(normals=normals * 2.0)  # new normals do move it
    assert reward.margin != before
    with pytest.raises(InvalidInputError, match="margin"):
        HydraReward(real, normals, margin="median")


def test_select_top_skips_rejected_and_non_finite() -> None:
    reward = torch.tensor([5.0, 9.0, float("nan"), 7.0, 1.0, 8.0])
    accepted = torch.tensor([True, False, True, True, True, True])
    assert select_top(reward, 3, accepted).tolist() == [5, 3, 0]
    assert select_top(reward, 10, accepted).tolist() == [5, 3, 0, 4]
    assert select_top(reward, 2).tolist() == [1, 5]
    assert select_top(reward, 0).tolist() == []
    with pytest.raises(InvalidInputError):
        select_top(reward, 2, accepted[:3])


def test_select_top_suppresses_near_duplicates() -> None:
    x = torch.tensor([[0.0, 0.0], [0.05, 0.0], [1.0, 0.0], [0.0, 0.04], [2.0, 2.0]])
    reward = torch.tensor([10.0, 9.0, 5.0, 8.0, 1.0])
    assert select_top(reward, 3).tolist() == [0, 1, 3]
    assert select_top(reward, 3, x=x, min_distance=0.1).tolist() == [0, 2, 4]
    assert select_top(reward, 10, x=x, min_distance=0.1).tolist() == [0, 2, 4]
    accepted = torch.tensor([False, True, True, True, True])
    assert select_top(reward, 2, accepted, x=x, min_distance=0.1).tolist() == [1, 2]
    with pytest.raises(InvalidInputError, match="needs the candidates"):
        select_top(reward, 2, min_distance=0.1)


def test_anomaly_radius(anomalies: torch.Tensor) -> None:
    reward = HydraReward(anomalies, k=3)
    a = anomalies.numpy()
    own = np.sort(cdist(a, a), axis=1)[:, 3]
    assert reward.anomaly_radius == pytest.approx(float(np.median(own)), rel=0.05)
    assert HydraReward(anomalies[:1]).anomaly_radius == 0.0
