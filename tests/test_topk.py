"""The compiled best-k selection against numpy's lexsort, on few scores and on many (which pass
through a sampled threshold first)."""

from __future__ import annotations

import random

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from operators.topk import best


@given(
    st.lists(st.integers(0, 4), min_size=0, max_size=40),
    st.integers(1, 12),
    st.randoms(use_true_random=False),
)
def test_the_best_k_are_ordered_by_score_then_by_row(
    levels: list[int], count: int, rng: random.Random
) -> None:
    scores = np.array(levels, float)  # few levels: many ties
    rows = np.array(rng.sample(range(1_000), len(levels)), np.int64)
    expected = np.lexsort((rows, -scores))[:count]
    assert best(scores, rows, count).tolist() == expected.tolist()


@given(
    st.integers(1_024, 6_000),
    st.integers(1, 120),
    st.sampled_from([3, 50, 1_000_000]),
    st.integers(0, 2**32 - 1),
)
def test_the_best_of_many_pass_through_a_sampled_threshold_unchanged(
    total: int, count: int, levels: int, seed: int
) -> None:
    # Many scores take the prefilter; few levels make the threshold a tie that many share.
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, levels, total).astype(float)
    rows = rng.permutation(10 * total)[:total].astype(np.int64)
    expected = np.lexsort((rows, -scores))[:count]
    assert best(scores, rows, count).tolist() == expected.tolist()
