"""The reservoir memory is uniform over what it has seen, and resumes exactly."""

import numpy as np
from scipy import stats

from mhmoe.cl.methods.memory import ReservoirMemory
from mhmoe.data.trace import Example


def _stream(n):
    return [Example(f"p{i}", str(i), {}) for i in range(n)]


def test_every_example_seen_is_kept_with_equal_probability():
    # 500 independent memories (seeds 0..499) of 20 slots over a stream of 200: each example should be kept
    # 500 * 20/200 = 50 times; a chi-square test of the 200 counts against that, at a fixed set of seeds.
    counts = np.zeros(200)
    for seed in range(500):
        memory = ReservoirMemory(20, seed=seed, purpose="test")
        for example in _stream(200):
            memory.add(example)
        assert len(memory.examples()) == 20 and memory.seen == 200
        for example in memory.examples():
            counts[int(example.answer)] += 1
    assert stats.chisquare(counts).pvalue > 0.01
    # early and late examples alike: the first and last quarters keep the same share within noise
    assert abs(counts[:50].mean() - counts[150:].mean()) < 5


def test_a_memory_restored_midway_ends_the_same():
    whole = ReservoirMemory(8, seed=1, purpose="replay")
    for example in _stream(100):
        whole.add(example)
    first = ReservoirMemory(8, seed=1, purpose="replay")
    for example in _stream(100)[:37]:
        first.add(example)
    resumed = ReservoirMemory(8, seed=1, purpose="replay")
    resumed.load_state_dict(first.state_dict())
    for example in _stream(100)[37:]:
        resumed.add(example)
    assert [e.answer for e in resumed.examples()] == [e.answer for e in whole.examples()]
