"""The shipping rule (benchmarks/shipping.py) on the per-case deltas that decided the shipped router."""
from benchmarks.shipping import judge


def test_one_case_carrying_the_mean_does_not_ship():
    # stride 2 on the 6 dev MR volumes (bench_3d): the mean rose, one volume lost 6 points
    v = judge([+6.50, +1.30, +0.32, -0.72, +0.62, -6.03], [+41.67, -0.72, 0.0, -4.85, -1.14, 0.0], gain=0.0)
    assert v.criteria == {"n": True, "a": True, "b": True, "c": False, "d": False} and not v.passes
    # overlap "logit" on the same volumes: +21 on one, -5.5 on another
    v = judge([-2.01, -5.52, +21.05, 0, 0, 0], [0, 16, 50, 0, 0, 0])
    assert not v.criteria["c"] and not v.criteria["d"] and not v.passes


def test_a_strategy_that_helps_some_and_harms_none_ships():
    v = judge([+9.05, +1.15, +19.82, 0, 0, 0], [44.1, 27.0, 55.3, 0, 0, 0])  # overlap "smaller", 3D MR
    assert v.passes and v.ties_or_better == 6 and round(v.leave_one_out, 2) == 2.04
    assert judge([+0.2, +0.2, +0.2, +0.2], [0, 0, 0, 0]).criteria["a"] is False  # below +0.5 on average
    assert judge([+0.2, +0.2, +0.2, +0.2], [0, 0, 0, 0], gain=0.0).passes  # a faster option may just tie
    assert judge([+5, +5, +5, +5], [-0.1, 0, 0, 0]).criteria["a"] is False  # NSD lower


def test_fewer_than_four_cases_ship_nothing_and_two_thirds_must_not_lose():
    assert not judge([+5, +5, +5], [1, 1, 1]).passes
    v = judge([+3, +3, -0.5, -0.5, +3, -0.5], [1] * 6)  # 3 of 6 improve or tie
    assert not v.criteria["b"] and v.criteria["c"]
