"""Statistics checked against textbook values and hand computation, not against the calls the code makes."""

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from metalr.evaluate.statistics import bootstrap_ci, holm, paired_test, wilcoxon_min_p

# Student (1908) / Cushny & Peebles: extra hours of sleep under two drugs, ten patients.
# R's t.test(extra ~ group, data = sleep, paired = TRUE): t = -4.0621, df = 9, p-value = 0.002833.
SLEEP_DRUG_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_DRUG_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]

# Hollander & Wolfe (1973), p. 29: Hamilton depression scale before (x) and after (y) a tranquilizer.
# Wilcoxon signed-rank V = 40 of a possible 45; one-sided exact p = 10/512 = 0.01953, two-sided 20/512.
DEPRESSION_X = [1.83, 0.50, 1.62, 2.48, 1.68, 1.88, 1.55, 3.06, 1.30]
DEPRESSION_Y = [0.878, 0.647, 0.598, 2.05, 1.06, 1.29, 1.06, 3.14, 1.29]


def test_paired_t_test_on_students_sleep_data():
    gains = np.subtract(SLEEP_DRUG_2, SLEEP_DRUG_1)
    test = paired_test(gains)
    assert test.n == 10 and test.mean_gain == pytest.approx(1.58)
    assert test.t_p == pytest.approx(0.002833, abs=5e-6)


def test_wilcoxon_on_hollander_and_wolfe_depression_data():
    test = paired_test(np.subtract(DEPRESSION_X, DEPRESSION_Y))
    assert test.wilcoxon_p == pytest.approx(20 / 512)


def test_wilcoxon_on_a_hand_counted_example():
    # Ranks 1..6, only rank 4 negative: W- = 4. Subsets of {1..6} summing to <= 4: {}, {1}, {2}, {3},
    # {1,2}, {4}, {1,3} = 7 of 64, so the two-sided exact p is 14/64.
    assert paired_test([1, 2, 3, -4, 5, 6]).wilcoxon_p == pytest.approx(14 / 64)


def test_smallest_reachable_wilcoxon_p_is_two_over_two_to_the_n():
    assert wilcoxon_min_p(5) == 0.0625
    assert wilcoxon_min_p(6) == pytest.approx(0.03125)
    assert paired_test([0.1, 0.2, 0.3, 0.4, 0.5]).wilcoxon_p == pytest.approx(wilcoxon_min_p(5))


def test_verdict_rests_on_the_t_test_alone_only_where_wilcoxon_cannot_reach_significance():
    five = paired_test([0.10, 0.12, 0.11, 0.13, 0.09])
    assert five.verdict == "meta better (t-test only)"
    six = paired_test([-0.10, -0.12, -0.11, -0.13, -0.09, -0.10])
    assert six.verdict == "meta worse"
    mixed = paired_test([0.1, -0.1, 0.2, -0.2, 0.05, -0.05])
    assert mixed.verdict == "no significant difference"
    assert paired_test([0.0, 0.0, 0.0]).verdict == "identical"
    assert paired_test([0.3]).verdict == "too few pairs"


def test_holm_matches_a_hand_computation():
    # Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.02, 0.03, 0.06, 0.06.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, None, 0.9]) == [pytest.approx(1.0), None, pytest.approx(1.0)]


def test_holm_matches_statsmodels_multipletests():
    rng = np.random.default_rng(3)
    for size in (1, 2, 5, 12):
        pvalues = np.concatenate([rng.uniform(0, 0.05, size), rng.uniform(0, 1, size)])
        pvalues[0] = pvalues[1]  # a tie
        expected = multipletests(pvalues, method="holm")[1]
        assert holm(list(pvalues)) == pytest.approx(list(expected))


def test_bootstrap_interval_brackets_the_mean_and_collapses_on_constant_data():
    data = [0.2, 0.5, 0.4, 0.9, 0.6, 0.3]
    low, high = bootstrap_ci(data, resamples=2000)
    assert min(data) < low < np.mean(data) < high < max(data)
    assert bootstrap_ci(data, resamples=2000) == (low, high)  # seeded: reproducible
    assert bootstrap_ci([0.7, 0.7, 0.7]) == (0.7, 0.7)
    assert bootstrap_ci([0.7]) == (None, None)
