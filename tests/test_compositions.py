"""N_eff, mass-quantile bins and route-wise forgetting against values worked out by hand."""

import numpy as np
import pytest

from mhmoe.analysis import effective_compositions, route_forgetting
from mhmoe.analysis.compositions import against_null, mean_comparison, per_head_compositions
from mhmoe.analysis.forgetting import mass_quantile_bins


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
    result = route_forgetting(routes, compositions, before, after, np.arange(4), bins=2, min_tokens=1)
    np.testing.assert_allclose(result.delta, [2.0, 0.0])
    np.testing.assert_array_equal(result.bin_of_route, [1, 0])
    np.testing.assert_allclose(result.bin_mean, [0.0, 2.0])
    assert np.isnan(result.bin_se).all()  # one route per bin: no error across routes
    np.testing.assert_allclose(result.bin_n_eff, [1.0, 2.0])
    assert result.correlation is None  # two routes are too few for a correlation


def test_bin_error_is_across_routes_not_tokens():
    # Four equal routes with deltas 1, 2, 3, 4 (each the mean of 100 identical tokens), two bins of two
    # routes: means 1.5 and 3.5, errors sd(1, 2) / sqrt(2) = 0.5, however many tokens the routes hold.
    routes = np.repeat([0, 1, 2, 3], 100)
    delta = np.repeat([1.0, 2.0, 3.0, 4.0], 100)
    result = route_forgetting(routes, np.zeros(400), np.zeros(400), delta, np.arange(400) // 10, bins=2)
    np.testing.assert_array_equal(result.bin_routes, [2, 2])
    np.testing.assert_allclose(result.bin_mean, [1.5, 3.5])
    np.testing.assert_allclose(result.bin_se, [0.5, 0.5])


def planted_forgetting(slope, examples=300, seed=0):
    """Examples of 20 tokens, each example on one of 40 routes; route r mixes r % 8 + 1 compositions, and its
    tokens forget slope * (number mixed) plus noise shared by the whole example."""
    rng = np.random.default_rng(seed)
    route_of_example = rng.integers(0, 40, examples)
    example = np.repeat(np.arange(examples), 20)
    route = route_of_example[example]
    composition = rng.integers(0, 1000, len(route)) % (route % 8 + 1) + 10 * route
    after = slope * (route % 8 + 1) + rng.normal(size=examples)[example] + 0.1 * rng.normal(size=len(route))
    return route, composition, np.zeros(len(route)), after, example


def test_bootstrap_interval_over_examples():
    found = route_forgetting(*planted_forgetting(1.0), draws=200, seed=1).correlation
    assert found.low > 0.5 and found.low < found.rho < found.high and found.routes == 40 and found.draws == 200
    null = route_forgetting(*planted_forgetting(0.0), draws=200, seed=1).correlation
    assert null.low < 0 < null.high
    # Copying every token (as pooling several modules over the same tokens would) leaves the interval as wide:
    # the examples, not the tokens, are resampled.
    route, composition, before, after, example = planted_forgetting(0.0)
    copies = route_forgetting(
        np.concatenate([route, route + 100]),
        np.tile(composition, 2),
        np.tile(before, 2),
        np.tile(after, 2),
        np.tile(example, 2),
        draws=200,
        seed=1,
    ).correlation
    assert copies.high - copies.low > 0.6 * (null.high - null.low)


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="3 tokens"):
        effective_compositions(np.zeros(3), np.zeros(4))


def test_pair_form_by_hand():
    # Route 0: a, a, b, b: 12 ordered pairs, 4 share a composition; route 1: a, a: 2 pairs, 2 same;
    # route 2: a, b, c: 6 pairs, none the same. N_pair = 20 / 6; plug-in = (4*2 + 2*1 + 3*3) / 9.
    routes = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2])
    compositions = np.array([0, 0, 1, 1, 0, 0, 0, 1, 2])
    found = against_null(routes, compositions, draws=2)
    assert found.plug_in == pytest.approx(19 / 9) and found.pair == pytest.approx(20 / 6)
    assert against_null(np.arange(3), np.zeros(3), draws=2).summary()["pair"]["observed"] is None  # no pairs


RANDOM = np.random.default_rng(0)
COMPOSITIONS = RANDOM.integers(0, 96, 5000)


@pytest.mark.parametrize("routes", [RANDOM.integers(0, 4, 5000), RANDOM.integers(0, 4, (5000, 8))], ids=["4", "4^8"])
def test_random_routing_has_no_excess(routes):
    # Plug-in N_eff is about 90 for 4 routes but about 1.07 for 4^8 (it is capped by tokens per route);
    # against the null both excesses sit within three null standard deviations of 0.
    summary = against_null(routes, COMPOSITIONS, draws=20, seed=1).summary()
    for form in ("plug_in", "pair"):
        s = summary[form]
        assert abs(s["excess"]) < 3 * s["null_sd"], (form, s)
    assert summary["plug_in"]["observed"] == pytest.approx(90 if routes.ndim == 1 else 1.07, rel=0.05)
    assert summary["pair"]["null_mean"] == pytest.approx(96, rel=0.05 if routes.ndim == 1 else 0.8)


def test_a_planted_collision_raises_the_excess_and_dealing_out_makes_it_positive():
    # Routing that follows the compositions (one route each) sits far below the null: N_pair = 1.
    separated = against_null(COMPOSITIONS, COMPOSITIONS, seed=1).summary()["pair"]
    assert separated["observed"] == 1 and separated["excess"] < -80
    # Force compositions 0 and 1 onto one route: that route now mixes two, and the excess moves up.
    merged = np.where(COMPOSITIONS == 1, 0, COMPOSITIONS)
    collided = against_null(merged, COMPOSITIONS, seed=1).summary()["pair"]
    assert collided["excess"] > separated["excess"]
    # Informative routing (four routes of 24 compositions each) is below the null, a collision raises it.
    blocks = COMPOSITIONS // 24
    informative = against_null(blocks, COMPOSITIONS, seed=1).summary()["pair"]
    assert informative["excess"] < -3 * informative["null_sd"]
    # Only a router that deals each composition's tokens out evenly over the routes mixes them more than
    # random draws from the global mix would: the one way to a positive excess.
    order = np.argsort(COMPOSITIONS, kind="stable")
    dealt = np.empty(len(order), dtype=int)
    dealt[order] = np.arange(len(order)) % 4
    spread = against_null(dealt, COMPOSITIONS, seed=1).summary()
    assert spread["pair"]["excess"] > 3 * spread["pair"]["null_sd"]
    assert spread["plug_in"]["excess"] > 3 * spread["plug_in"]["null_sd"]


def test_heads_average_draw_by_draw():
    chosen = RANDOM.integers(0, 4, (500, 3))
    heads = [against_null(chosen[:, h], COMPOSITIONS[:500], draws=5, seed=2) for h in range(3)]
    mean = mean_comparison(heads)
    np.testing.assert_allclose(mean.plug_in_null, np.mean([h.plug_in_null for h in heads], axis=0))
    assert mean.plug_in == pytest.approx(np.mean([h.plug_in for h in heads]))
