"""N_eff, mass-quantile bins and route-wise forgetting against values worked out by hand."""

import math

import numpy as np
import pytest

from mhmoe.analysis import effective_compositions, route_forgetting
from mhmoe.analysis.compositions import per_head_compositions
from mhmoe.analysis.forgetting import mass_quantile_bins, spearman_interval


def test_n_eff_of_known_distributions():
    # Route 0 carries compositions a, a, b, b (p = 1/2, 1/2: N_eff 2); route 1 carries a, a (N_eff 1);
    # route 2 carries a, b, c (N_eff 3). Masses 4/9, 2/9, 3/9: mean = (8 + 2 + 9) / 9.
    routes = [0, 0, 0, 0, 1, 1, 2, 2, 2]
    compositions = ["a", "a", "b", "b", "a", "a", "a", "b", "c"]
    found = effective_compositions(np.array(routes), np.array(compositions))
    np.testing.assert_allclose(found.n_eff, [2, 1, 3])
    np.testing.assert_allclose(found.mass, [4 / 9, 2 / 9, 3 / 9])
    assert found.mean == pytest.approx(19 / 9)


def test_uneven_mix_and_tuple_routes():
    # One route, compositions 3:1 -> p = (3/4, 1/4), sum p^2 = 10/16, N_eff = 1.6.
    assert effective_compositions(np.zeros(4), np.array([0, 0, 0, 1])).mean == pytest.approx(1.6)
    # Path-wise routes: (head 0, head 1) tuples; (0, 1) and (0, 2) are different routes although head 0 agrees.
    chosen = np.array([[[0], [1]], [[0], [1]], [[0], [2]], [[0], [2]]])
    compositions = np.array([0, 1, 0, 0])
    path = effective_compositions(chosen, compositions)
    np.testing.assert_allclose(path.n_eff, [2, 1])
    heads = per_head_compositions(chosen, compositions)
    assert heads[0].mean == pytest.approx(1 / (0.75**2 + 0.25**2))  # head 0 alone: one route, 3:1
    np.testing.assert_allclose(heads[1].n_eff, [2, 1])


def test_mass_quantile_bins_hold_equal_mass():
    # N_eff sorted: routes 3 (1.0), 0 (1.5), 2 (2.0), 1 (4.0) with masses .25 each: one route per bin of 4.
    n_eff = np.array([1.5, 4.0, 2.0, 1.0])
    np.testing.assert_array_equal(mass_quantile_bins(n_eff, np.full(4, 0.25), 4), [1, 3, 2, 0])
    # Masses .5, .1, .1, .3, sorted by N_eff (route 3 first), 2 bins, by mass midpoint:
    # r3 [0, .3) mid .15 -> 0; r0 [.3, .8) mid .55 -> 1; r2 [.8, .9) -> 1; r1 [.9, 1) -> 1.
    np.testing.assert_array_equal(mass_quantile_bins(n_eff, np.array([0.5, 0.1, 0.1, 0.3]), 2), [1, 1, 1, 0])


def test_route_forgetting_by_hand():
    # Route 0: compositions a, b (N_eff 2), deltas 1 and 3 -> Delta 2. Route 1: a, a (N_eff 1), deltas 0, 0.
    routes = np.array([0, 0, 1, 1])
    compositions = np.array([0, 1, 0, 0])
    before = np.array([1.0, 1.0, 2.0, 2.0])
    after = np.array([2.0, 4.0, 2.0, 2.0])
    result = route_forgetting(routes, compositions, before, after, bins=2, min_tokens=1)
    np.testing.assert_allclose(result.delta, [2.0, 0.0])
    np.testing.assert_array_equal(result.bin_of_route, [1, 0])
    np.testing.assert_allclose(result.bin_mean, [0.0, 2.0])
    np.testing.assert_allclose(result.bin_se, [0.0, math.sqrt(2) / math.sqrt(2)])  # std of (1, 3) = sqrt 2
    np.testing.assert_allclose(result.bin_n_eff, [1.0, 2.0])
    assert result.correlation is None  # two routes are too few for an interval


def test_spearman_interval_contains_rho_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    y = x + rng.normal(size=200)
    wide, narrow = spearman_interval(x[:20], y[:20]), spearman_interval(x, y)
    assert wide.low < wide.rho < wide.high and narrow.low < narrow.rho < narrow.high
    assert narrow.high - narrow.low < wide.high - wide.low
    # n = 103: half-width in z is 1.96 * sqrt(1.06 / 100).
    z_half = 1.959964 * math.sqrt(1.06 / 100)
    c = spearman_interval(x[:103], y[:103])
    assert math.atanh(c.high) - math.atanh(c.rho) == pytest.approx(z_half, rel=1e-5)


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="3 tokens"):
        effective_compositions(np.zeros(3), np.zeros(4))
