"""The checker's two calls into the numerical differentiator.

Full mode asks :func:`gradcheck.numdiff.numerical_vjp` for :math:`\\partial\\langle R,
f\\rangle/\\partial\\,\\text{arg}` element by element (colored by the dependency pattern
when one is known); fast mode asks :func:`gradcheck.numdiff.numerical_jvp` for
:math:`\\langle R, J v\\rangle` along each random direction. Exceptions raised by user
code while it is being differenced become :class:`~gradcheck.UserCodeError`.
"""

from __future__ import annotations

import numpy as np

from gradcheck._errors import GradcheckError, UserCodeError
from gradcheck.numdiff import NumericalDerivative, numerical_jvp, numerical_vjp

__all__ = ["full_numeric", "directional_numeric"]


def _guard(call, what):
    try:
        return call()
    except GradcheckError:
        raise
    except Exception as exc:  # the function under test failed at a perturbed point
        raise UserCodeError(f"f raised {type(exc).__name__} while {what}: {exc}") from exc


def full_numeric(g, arg, cotangent, y, *, pattern=None, vectorized=False,
                 method="auto", seed=0) -> NumericalDerivative:
    """Every element of the gradient of ``<cotangent, g(arg)>``, with error bars."""
    return _guard(lambda: numerical_vjp(g, arg, cotangent, pattern=pattern,
                                        vectorized=bool(vectorized), method=method, seed=seed),
                  "its gradient was differenced element by element")


def directional_numeric(g, arg, cotangent, y, directions, *, method="auto", vectorized=False,
                        seed=0) -> NumericalDerivative:
    """``<cotangent, J v_k>`` for each row ``v_k`` of ``directions``, with error bars."""
    dirs = np.asarray(directions, dtype=np.float64).reshape((-1,) + arg.shape)
    return _guard(lambda: numerical_jvp(g, arg, dirs, cotangent=cotangent, method=method,
                                        vectorized=bool(vectorized), seed=seed),
                  "it was differenced along random directions")
