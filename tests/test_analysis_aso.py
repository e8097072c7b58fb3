import numpy as np
import pytest

from harness.analysis import aso, violation_ratio

RNG = np.random.default_rng(5)


def test_definition_on_constructed_cases():
    # Dror et al. (2019), eq. 4-5: strict dominance gives 0, identical samples 0.5 (W2 = 0)
    b = RNG.normal(0, 1, 30)
    assert violation_ratio(b + 1.0, b) == 0.0
    assert violation_ratio(b, b) == 0.5
    # crossing quantile functions: A = {0, 10}, B = {4, 6}: violation on t < 1/2 with the same squared gap
    assert violation_ratio(np.array([0.0, 10.0]), np.array([4.0, 6.0])) == pytest.approx(0.5, abs=1 / 199)
    res = aso(b + 5.0, b, n_boot=200)
    assert res.eps_min == 0.0 and aso(b, b + 5.0, n_boot=200).eps_min == pytest.approx(1.0, abs=0.01)


def test_symmetry_eps_ab_plus_eps_ba_is_one():
    # del Barrio et al. (2018). Exact here because both samples share their minimum: like deepsig, the
    # first grid point is left out of the numerator, which breaks the identity by (gap at t=dt)^2 dt / W2^2
    a, b = np.r_[-9.0, RNG.normal(0, 1, 40)], np.r_[-9.0, RNG.normal(0.3, 2, 35)]
    assert violation_ratio(a, b) + violation_ratio(b, a) == pytest.approx(1.0, abs=1e-12)


def test_against_deepsig():
    deepsig = pytest.importorskip("deepsig")
    a, b = RNG.normal(0.5, 1, 15), RNG.normal(0, 1, 12)
    from deepsig.aso import compute_violation_ratio

    assert violation_ratio(a, b) == pytest.approx(compute_violation_ratio(a, b, dt=0.005), rel=1e-12)
    ref = deepsig.aso(a, b, num_bootstrap_iterations=300, seed=0, show_progress=False)
    ours = aso(a, b, n_boot=3000).eps_min
    assert ours == pytest.approx(ref, abs=0.04)
