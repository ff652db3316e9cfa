"""The compiled best-k selection against numpy's lexsort."""

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
