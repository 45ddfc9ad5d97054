"""utils.quality: the near-duplicate statistics notebook 02 reports (LSH candidates, precision, find probability)."""
import numpy as np

from utils.quality import jaccard, lsh_find_probability, near_duplicates, ngrams


def test_stats_count_candidates_and_confirmed():
    texts = ["the cat sat on the mat today", "the cat sat on the mat today please", "a completely different sentence here",
             "", "!!!"]
    pairs, stats = near_duplicates(texts, n=3, threshold=0.7, return_stats=True)
    assert pairs == near_duplicates(texts, n=3, threshold=0.7)
    assert [(i, j) for i, j, _ in pairs] == [(0, 1)]
    assert stats["texts"] == 5 and stats["without_words"] == 2
    assert stats["candidates"] >= stats["confirmed"] == 1 and stats["oversized_buckets"] == 0


def test_oversized_buckets_are_counted_not_compared():
    texts = ["same words in every text"] * 30
    pairs, stats = near_duplicates(texts, threshold=0.5, max_bucket=10, return_stats=True)
    assert pairs == [] and stats["candidates"] == 0 and stats["oversized_buckets"] == 32   # one per band


def test_find_probability_matches_the_formula_and_the_lsh():
    assert abs(lsh_find_probability(0.7) - 0.9998) < 1e-4 and abs(lsh_find_probability(0.5) - 0.87) < 0.01
    assert np.all(np.diff(lsh_find_probability(np.linspace(0, 1, 11))) >= 0)
    # empirically: over many random pairs with J ≈ 0.4, the share LSH proposes is near 1 − (1 − J⁴)³²
    rng = np.random.default_rng(0)
    texts = []
    for k in range(150):
        base = [f"w{k}_{i}" for i in range(30)]
        other = base[:]
        for pos in rng.choice(30, 6, replace=False):
            other[pos] = f"x{k}_{pos}"
        texts += [" ".join(base), " ".join(other)]
    pairs = near_duplicates(texts, n=3, threshold=0.0)
    found = {(i, j) for i, j, _ in pairs}
    sims = [jaccard(ngrams(texts[2 * k]), ngrams(texts[2 * k + 1])) for k in range(150)]
    share = np.mean([(2 * k, 2 * k + 1) in found for k in range(150)])
    assert abs(share - lsh_find_probability(sims).mean()) < 0.15
