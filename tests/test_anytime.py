"""Anytime metrics and the boundary-free mixture schedule, against hand-computed values."""

import math

import numpy as np
import pytest

from mhmoe.cl.train import batch_order
from mhmoe.data.schedule import FULLY_MIXED, mixture_schedule, task_densities
from mhmoe.errors import ConfigError
from mhmoe.metrics.anytime import anytime_average, final_op, forgetting_from_peak, loss_forgetting_from_best

# Three evaluation points (steps 10, 20, 40) of a two-task stream.
A = [[80.0, 10.0], [60.0, 70.0], [40.0, 90.0]]
STEPS = [10, 20, 40]


def test_anytime_metrics_by_hand():
    # mean curve 45, 65, 65; trapezoids (45+65)/2*10 + (65+65)/2*20 = 550 + 1300 = 1850 over 30 steps
    assert anytime_average(A, STEPS) == pytest.approx(1850 / 30)
    assert final_op(A) == pytest.approx(65.0)
    assert forgetting_from_peak(A) == [40.0, 0.0]
    assert loss_forgetting_from_best([[0.5, 3.0], [1.5, 0.2], [1.0, 0.4]]) == pytest.approx([0.5, 0.2])
    assert anytime_average([[30.0, 50.0]], [7]) == 40.0


def test_anytime_metrics_refuse_malformed_input():
    with pytest.raises(ValueError, match="increase"):
        anytime_average(A, [10, 10, 40])
    with pytest.raises(ValueError, match="2 evaluation steps for 3 rows"):
        anytime_average(A, [10, 20])
    with pytest.raises(ValueError, match="non-empty"):
        final_op([])


def _phi(x):
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def test_mixture_shares_match_hand_computed_gaussian_shares():
    # Two tasks of 100 examples, blur 0.1: sd 20 examples. At x = 80 task 0's share is the interval [0, 100)
    # smoothed, Phi(80/20) - Phi(-20/20), plus its mirror image about 0, [-100, 0): Phi(180/20) - Phi(80/20).
    share = (_phi(4) - _phi(-1)) + (_phi(9) - _phi(4))
    density = task_densities([100, 100], 0.1, np.array([80.0, 100.0, 120.0]))
    assert density[0][0] == pytest.approx(share, abs=1e-9)
    assert density[0][1] == pytest.approx(0.5, abs=1e-9) and density[1][2] == pytest.approx(share, abs=1e-9)
    np.testing.assert_allclose(density.sum(axis=0), 1.0, atol=1e-12)


def test_densities_keep_each_task_total_and_flatten_when_fully_mixed():
    times = (np.arange(3 * 64 * 16) + 0.5) / 16
    for blur in (0.0, 0.05, 0.3, FULLY_MIXED):
        density = task_densities([64, 64, 64], blur, times)
        np.testing.assert_allclose(density.sum(axis=1) / 16, 64, rtol=1e-6)
        np.testing.assert_allclose(density.sum(axis=0), 1.0, atol=1e-9)
    assert np.abs(task_densities([64, 64, 64], FULLY_MIXED, times) - 1 / 3).max() < 0.015 / 3  # within 1.5%
    with pytest.raises(ConfigError, match="'blur'"):
        task_densities([4], -0.1, times)


def test_blur_zero_reproduces_the_boundary_mode_batches_exactly():
    orders = [sum(batch_order(20, 5, 4, seed=3, task_index=t), []) for t in range(3)]  # 5 steps of 4, 1+ epochs
    schedule = mixture_schedule(orders, 4, 0.0)
    boundary = [[(t, i) for i in step] for t in range(3) for step in batch_order(20, 5, 4, seed=3, task_index=t)]
    assert schedule == boundary


def test_a_blurred_schedule_keeps_every_example_in_order_and_follows_the_densities():
    orders = [list(range(100)), list(range(100, 200))]
    schedule = mixture_schedule(orders, 10, 0.1)
    assert all(len(step) == 10 for step in schedule) and len(schedule) == 20
    for t, order in enumerate(orders):
        assert [i for step in schedule for task, i in step if task == t] == order
    # steps 7-8 hold examples 70-90 of the stream: task 0's mean share there is about Phi(4)-Phi(-1) at 80
    shares = [sum(task == 0 for task, _ in schedule[s]) / 10 for s in (7, 8)]
    assert np.mean(shares) == pytest.approx(_phi(4) - _phi(-1), abs=0.1)
    assert schedule[0] == [(0, i) for i in range(10)] and schedule[-1] == [(1, i) for i in range(190, 200)]
