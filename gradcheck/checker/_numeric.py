"""The checker's calls into the numerical differentiator.

Full mode asks :func:`gradcheck.numdiff.numerical_vjp` for :math:`\\partial\\langle R,
f\\rangle/\\partial\\,\\text{arg}` element by element (colored by the dependency pattern
when one is known); fast mode asks :func:`gradcheck.numdiff.numerical_jvp` for
:math:`\\langle R, J v\\rangle` along each random direction. Exceptions raised by user
code while it is being differenced become :class:`~gradcheck.UserCodeError`.

A second opinion
----------------
The complex step is exact where it applies, but at a kink it silently takes one branch
-- the one the *complex* evaluation falls on, which need not be the branch the real code
took (``where(z.real > 0, ...)`` at ``z == 0`` never sees the other side, and a sum that
is exactly zero in real arithmetic may round to ``2e-16`` in complex arithmetic). So
before an element is failed on a complex-step derivative, :func:`recheck_elements`
differences it again with real Richardson steps, which detect kinks. Where the real
steps contradict the complex step -- they find a kink there, or a value outside their
own error bar -- their result replaces it; where they agree with it, the complex step's
far sharper value is kept (the real steps' error bar, ~1e-11 relative in float64, would
otherwise hide a smaller mistake that the complex step had seen).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from gradcheck._errors import GradcheckError, UserCodeError
from gradcheck.numdiff._evaluate import DEFAULT_MEMORY
from gradcheck.numdiff import NumericalDerivative, numerical_jvp, numerical_vjp

__all__ = ["full_numeric", "directional_numeric", "recheck_elements", "merge_elements",
           "evaluate"]


def _guard(call, what):
    """Run a numerical pass; what ``f`` raises there is the user's error.

    NumPy's floating-point warnings are off meanwhile: probing ``f`` at perturbed points
    and squaring its outputs for error bars may overflow, which the result reports
    (non-finite values count as unchecked elements), and a warning turned into an error
    by ``-W error`` must not be blamed on ``f``.
    """
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            return call()
    except GradcheckError:
        raise
    except Exception as exc:  # the function under test failed at a perturbed point
        raise UserCodeError(f"f raised {type(exc).__name__} while {what}: {exc}") from exc


def is_structure(pattern) -> bool:
    """A geometry-derived structure (``colors`` and ``owners``) rather than a sparse pattern."""
    return hasattr(pattern, "colors") and hasattr(pattern, "owners")


def _structure_options(pattern):
    if pattern is None:
        return {}
    if is_structure(pattern):
        return {"colors": pattern.colors, "owners": pattern.owners,
                "smooth": bool(getattr(pattern, "smooth", False))}
    return {"pattern": pattern}


def full_numeric(g, arg, cotangent, y, *, pattern=None, vectorized=False,
                 method="auto", seed=0, memory=DEFAULT_MEMORY) -> NumericalDerivative:
    """Every element of the gradient of ``<cotangent, g(arg)>``, with error bars.

    ``pattern`` is a sparse dependency pattern, a structure (``colors``/``owners``, see
    :mod:`gradcheck.ops._structure`), or None. A structure that vouches for the complex
    step (built-in layers only) turns ``method="auto"`` into the complex step directly.
    """
    if method == "auto" and getattr(pattern, "complex_safe", False):
        method = "complex"
    return _guard(lambda: numerical_vjp(g, arg, cotangent, vectorized=bool(vectorized),
                                        method=method, seed=seed, memory=memory,
                                        **_structure_options(pattern)),
                  "its gradient was differenced element by element")


def directional_numeric(g, arg, cotangent, y, directions, *, method="auto", vectorized=False,
                        seed=0, memory=DEFAULT_MEMORY) -> NumericalDerivative:
    """``<cotangent, J v_k>`` for each row ``v_k`` of ``directions``, with error bars."""
    dirs = np.asarray(directions, dtype=np.float64).reshape((-1,) + arg.shape)
    return _guard(lambda: numerical_jvp(g, arg, dirs, cotangent=cotangent, method=method,
                                        memory=memory,
                                        vectorized=bool(vectorized), seed=seed),
                  "it was differenced along random directions")


def evaluate(g, x, what):
    """``g(x)``, with a failure of user code reported as :class:`~gradcheck.UserCodeError`."""
    return _guard(lambda: g(x), what)


def recheck_elements(g, arg, cotangent, index, *, pattern=None,
                     seed=0, max_retries=2) -> NumericalDerivative:
    """The flat elements ``index`` of ``arg`` differenced again by real Richardson steps.

    Only those elements move (the rest of ``arg`` stays fixed), colored by the columns of
    ``pattern`` when one is known. The result is over the subset (shape ``(len(index),)``).
    """
    index = np.asarray(index, dtype=np.intp)
    base = arg.reshape(-1)

    def sub(v):
        x = base.copy()
        x[index] = v
        return g(x.reshape(arg.shape))

    if pattern is None or is_structure(pattern):
        options = _structure_options(pattern)
        if options:
            # the subset keeps its elements' colors; owners map sub-positions to ``index``
            def owners(members):
                full = index[np.asarray(members, dtype=np.intp)]
                perm = np.argsort(full, kind="stable")
                own = pattern.owners(full[perm])
                return np.where(own >= 0, perm[np.maximum(own, 0)], -1)

            options.update(colors=np.asarray(pattern.colors)[index], owners=owners)
    else:
        import scipy.sparse as sp

        options = {"pattern": sp.csc_matrix(pattern)[:, index]}
    return _guard(lambda: numerical_vjp(sub, base[index], cotangent, method="richardson",
                                        seed=seed, max_retries=max_retries, **options),
                  "its mismatching elements were differenced again with real steps")


def merge_elements(num, index, second, take=None) -> NumericalDerivative:
    """``num`` with the flat elements ``index[take]`` replaced by ``second`` (over ``index``).

    ``nfev`` is the sum of both passes.
    """
    index = np.asarray(index, dtype=np.intp)
    take = np.ones(index.size, bool) if take is None else np.asarray(take, bool)
    fields = {}
    for name in ("grad", "error", "nondifferentiable", "left", "right", "step"):
        arr = np.array(getattr(num, name), copy=True)
        arr.reshape(-1)[index[take]] = np.asarray(getattr(second, name)).reshape(-1)[take]
        fields[name] = arr
    method = num.method if not take.any() or num.method.endswith("+richardson") \
        else f"{num.method}+richardson"
    return dataclasses.replace(num, nfev=int(num.nfev) + int(second.nfev), method=method,
                               **fields)
