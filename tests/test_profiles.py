import math

import numpy as np
import polars as pl
import pytest

from metalr.evaluate.profiles import integrated_scores, performance_ratios, profile

INF = math.inf
# Steps to target on three tasks; C is solved by nobody.
TOY = pl.DataFrame(
    {
        "task": ["A"] * 3 + ["B"] * 3 + ["C"] * 3,
        "scheduler": ["x", "y", "z"] * 3,
        "time": [10.0, 25.0, 50.0, 30.0, 15.0, INF, INF, INF, INF],
    }
)


def test_performance_ratios_divide_by_the_fastest_and_a_miss_stays_infinite():
    ratios = performance_ratios(TOY).sort("task", "scheduler")["ratio"].to_list()
    assert ratios == [1.0, 2.5, 5.0, 2.0, 1.0, INF, INF, INF, INF]


def test_a_machine_dependent_scheduler_never_sets_the_best_time_and_is_capped_at_ratio_one():
    with_resource = pl.concat(
        [TOY, pl.DataFrame({"task": ["A", "B"], "scheduler": ["resource", "resource"], "time": [5.0, 20.0]})]
    )
    ratios = dict(
        performance_ratios(with_resource).select(pl.concat_str("task", "scheduler", separator="/"), "ratio").iter_rows()
    )
    # The others' ratios are those of the table without it: the same on every machine.
    assert [ratios[k] for k in ("A/x", "A/y", "B/x", "B/y")] == [1.0, 2.5, 2.0, 1.0]
    assert ratios["A/resource"] == 1.0 and ratios["B/resource"] == pytest.approx(20 / 15)


def test_profile_on_a_toy_table_has_the_known_fractions():
    rho = profile(performance_ratios(TOY), np.array([1.0, 2.0, 3.0, 5.0]))
    by = {(r["scheduler"], r["tau"]): r["rho"] for r in rho.iter_rows(named=True)}
    assert [by[("x", t)] for t in (1.0, 2.0, 3.0, 5.0)] == pytest.approx([1 / 3, 2 / 3, 2 / 3, 2 / 3])
    assert [by[("y", t)] for t in (1.0, 2.0, 3.0, 5.0)] == pytest.approx([1 / 3, 1 / 3, 2 / 3, 2 / 3])
    assert [by[("z", t)] for t in (1.0, 2.0, 3.0, 5.0)] == pytest.approx([0, 0, 0, 1 / 3])


def test_integrated_score_on_a_toy_table_has_the_known_value():
    # x: ratios 1 and 2 add (4 - 1) + (4 - 2) = 5; y: 2.5 and 1 add 1.5 + 3 = 4.5; z: 5 > 4 adds 0.
    # Divided by 3 tasks and by tau_max - 1 = 3.
    scores = dict(integrated_scores(performance_ratios(TOY)).select("scheduler", "score").iter_rows())
    assert scores == pytest.approx({"x": 5 / 9, "y": 4.5 / 9, "z": 0.0})
