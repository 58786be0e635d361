"""The bar of a chosen pass whose truncation dominates (numdiff/_adaptive._covering).

Hand-derived: the truth lies within every honest bar of the passes at smaller steps,
so the chosen value's bar need only reach the ends of their intersection.
"""

import numpy as np

from gradcheck.numdiff._adaptive import _covering


def test_a_runaway_bar_of_a_smaller_step_does_not_become_the_bar():
    # the chosen pass (-0.0010065) and two smaller steps: one whose truncation ran away
    # (+- 4.8e8: a fit whose only significant coefficients were b_1 and b_2), one honest
    # (-0.00065 +- 0.0013); their intersection is [-0.00195, 0.00065]
    V = np.array([[-0.0010065], [-0.00095], [-0.00065]])
    E = np.array([[9.5e-4], [4.8e8], [1.3e-3]])
    smaller = np.array([[False], [True], [True]])
    bar = _covering(V, E, smaller, V[0])
    assert np.allclose(bar, [0.00065 + 0.0010065])


def test_bars_that_do_not_meet_are_covered_whole():
    # two smaller steps whose bars are disjoint: one is not honest, and the chosen value's
    # bar reaches the far end of both
    V = np.array([[1.0], [1.5], [0.4]])
    E = np.array([[0.1], [0.1], [0.1]])
    smaller = np.array([[False], [True], [True]])
    assert np.allclose(_covering(V, E, smaller, V[0]), [0.6 + 0.1])
    # no smaller step: nothing to cover
    assert np.allclose(_covering(V, E, np.zeros((3, 1), bool), V[0]), [0.0])
