r"""How far an analytic gradient may stray from the numerical one before it is wrong.

Every tolerance of the verdict is written here, once, as a method of :class:`Tolerance`:
element by element (:meth:`~Tolerance.elementwise`), at a kink
(:meth:`~Tolerance.at_kink`), along random directions in fast mode
(:meth:`~Tolerance.along_directions`), and the user's ``atol``/``rtol`` floor under all
three (:meth:`~Tolerance.floor`); and how far two calls of the code under test may
disagree about one linear map (:meth:`~Tolerance.linear_map`, the linearity stage).

Neither side is exact. The numerical derivative comes with its own error bar ``E``
(truncation plus rounding, estimated by the differentiator per element). The analytic
gradient was computed in the function's dtype and carries rounding of its own, which
grows with the number of terms summed and shrinks with nothing. The allowed difference
for element ``j`` is

.. math:: \tau_j = k_{num} E_j + k_{an}\,G(L)\,\varepsilon\,(|n_j| + s + r_j)

where :math:`G(L)` is the growth of rounding with the length of the sums (see *Long
reductions* below; 1 for arrays of up to 4096 elements), :math:`\varepsilon` is the machine epsilon of the analytic gradient's dtype,
:math:`s` is the root-mean-square of the numerical gradient over the argument (an
element near zero can still carry the rounding of large terms that cancelled),
:math:`r_j = \max_i |R_i f_i| / \max(|x_j|, 1)` is the smallest derivative one term
of the scalarized value :math:`C = \langle R, f\rangle` can express (changing
:math:`x_j` by its own size, or by 1, moves that term by less than its rounding below
that: a gradient that is exactly zero because ``C`` does not depend on :math:`x_j`, say
a bias shared by every logit of a softmax, is computed as rounding of that size; the
largest term, not their sum, so the floor does not grow with the size of ``f``).
The term's size is first :math:`|R_i f_i|`; once an element departs beyond
:math:`\tau_j`, every element is judged again with :math:`|R_i m_i|`, :math:`m_i` the
magnitude of the terms output :math:`i` is formed from, measured
(:mod:`gradcheck.checker._formed`, eighteen calls of ``f``, shared with the linearity
stage): a layer norm averaged, a softmax summed or a bias before a batch norm has
outputs or derivatives that cancel to about zero, and a right backward returns the
rounding of the terms that cancel -- 1e-17 where the outputs' own values set an
allowance of 1e-31. A wrong gradient there is off by a share of those terms, far
beyond their rounding (``tests/test_cancellation.py``: one element off by 1e-6 of the
terms it is summed from still fails alone in float64, 2e-3 in float32). Forward mode
takes the largest :math:`m_i` in place of the largest :math:`|f_i|` the same way. With
them :math:`r_j` is raised to at least the magnitude of the terms the analytic gradient
itself is formed from, measured on the backward (:func:`._formed.gradient_magnitudes`,
84 calls of it, the cotangent and the point moved): ``f``'s outputs need not show them
(at order 2 the backward of a batch norm's sum over a batch of two is exactly 0 at every
point near ``x``, and its double backward returned -3.5e-16 where 3.7e-28 was allowed).
The factors are

===============  ==============  ===============
:math:`k_{num}`  :math:`k_{an}`  :math:`k_{gap}`
===============  ==============  ===============
10               64              1/10
===============  ==============  ===============

The role of the dtype
---------------------
The dtype enters through :math:`\varepsilon` (:func:`real_eps`: the dtype's own machine
epsilon, float32's for complex64) and through ``E``, which the differentiator estimates
in the dtype ``f`` computes in. The factors are the same for float32 and float64: ``k_num`` counts error bars and ``k_an`` ulps, both of which
already scale with the precision, and ``k_gap`` is a share of the gap between two
one-sided derivatives, a property of ``f`` (the own-side estimates measured below stay
far inside a tenth of it in both dtypes).

float16 and bfloat16 have a row of their own, :data:`LOW_PRECISION_RULE`: ``k_num = 2``,
``k_an = 3``. There the differentiator's error bar is its rounding term (truncation is
small at steps of a tenth of the input's scale), an a-priori bound the true error stays
far inside (on float16 dense + tanh layers and elementwise functions: at most 0.41 of
the bar, at a median of 0.1); and 64 ulps of float16 are 6%, ten error bars 10 to 30%,
where a wrong element must be caught at 5%. The analytic side of those layers, computed
in float16, was within 0.07% of the exact gradient's ``|g_j| + s``. Measured over 40
random float16 dense layers: no false alarm, and a 5% error in the largest element of
the weight gradient caught in 30; over 180 random float16 layers (elementwise, dense, a
1-D convolution; tanh, sigmoid, ReLU, square, softplus, sine), two false alarms, both
ReLU pre-activations within a step (a tenth of the input's scale) of zero, where the
differences straddle the kink and float16's rounding hides it from the error model.
Since float16 and bfloat16 are differenced a second time at a quarter step
(:mod:`gradcheck.numdiff._adaptive`): over 180 random float16 2-D convolutions + ReLU
(harder: every element reaches several kinks), 5 false alarms where there were 20; a
5% error in the largest weight-gradient element caught in 100 of 180 (98 before).
bfloat16 (eps 2**-7) catches errors of about 15% and more.

The row is that of the coarser of the gradient's and the argument's dtype (while
:math:`\varepsilon` stays the gradient's): the error bar is the argument's precision's,
whatever ``f`` computes in. ``conv_forward`` computes float16 arguments in float32, so
their gradients come back float32; judged by float32's row, ten float16-sized bars let
a 5% error in the largest weight-gradient element pass on 13 of 20 random grouped
float16 convolutions + tanh (1 of 20 by float16's row, no right gradient failed).

Long reductions
---------------
An element of a gradient is a sum: the weight gradient of a convolution sums
:math:`N \prod \mathrm{out\_spatial}` products, a bias gradient every position of the batch, a
dense layer's input gradient its fan-out. A right backward carries the rounding of that
sum, and how large it is depends on the order the sum is taken in, which the checker
cannot see. For ``n`` terms of zero mean (the random cotangent makes them so), ``|g_j|``
is about :math:`\sqrt{n}` times a term, and

* a pairwise sum (NumPy's ``sum`` along a contiguous axis) and a blocked GEMM (BLAS:
  sequential within a block of a few hundred terms, then across blocks) stay within a few
  ulps of :math:`|g_j| + s` at any ``n``: measured against exact sums (error-free
  products and ``math.fsum``), the built-in convolution's weight gradient over ``n =
  65,536`` and ``524,176`` terms is off by at most 7.4 ulps of :math:`|g_j| + s` in
  float64 and 6.5 in float32; a pairwise sum by at most 2;
* a sequential sum (a loop, ``np.add.reduce`` over a leading axis, ``sum(axis=0)`` of a
  batch-major array -- right code) rounds every partial sum, whose random walk grows
  like :math:`\sqrt{k}` at step ``k``: its error is about
  :math:`\varepsilon\sqrt{n/24}\,s`, and the largest of many elements reached
  :math:`0.26\sqrt{n}` ulps of :math:`|g_j| + s` (58 at 65,536 terms, 187 at 524,288,
  float64 and float32 alike; terms of nonzero mean: 35 and 118). Past about 60,000
  terms that is more than ``k_an = 64``.

The checker does not know ``n``; it bounds it by :math:`L`, the size of the largest array
it sees -- the output of ``f`` or any argument (:func:`longest_sum`): a sum over the
outputs has at most ``f.size`` terms, a weight gradient sums over at most the input's
elements, a dense layer's over its batch. The analytic allowance grows like the
sequential sum's rounding:

.. math:: G(L) = \max\big(1, \sqrt{L / 4096}\big)

so ``k_an G(L)`` is the larger of 64 and :math:`\sqrt{L}` ulps: four times the worst
sequential sum measured at ``n = L``, and unchanged (64) for arrays of up to 4096
elements. At :math:`L = 524,288` that is 724 ulps of :math:`|g_j| + s`: 1.6e-13 relative in
float64 and 8.6e-5 in float32, still far below a 1e-6 error in float64 and a 2% error in
float32. The growth enters every analytic allowance below (at a kink, along directions,
in linearity), each of which is a sum the user's code took.

What ``L`` cannot see: data ``f`` holds itself. A scalar loss over a batch captured in a
closure, differentiated with respect to a bias of 8 elements, has ``L = 8`` while its
backward sums the whole batch; a sequential sum there keeps the fixed 64 ulps. What
covers it is the resolution :math:`r_j` taken, once an element departs, from the
measured magnitude of the terms ``f``'s output is formed from
(:mod:`gradcheck.checker._formed`: ``f`` sums the batch too, and its own rounding
shows it): on ``tests/test_tolerance.py``'s case (2**19 rows of 8, ``f`` summing
pairwise, the backward sequentially) the worst element used 1.06 of the allowance
from :math:`|R_i f_i|` and uses 0.23 of the one from the measured magnitude. That case
was marginal: three other seeds, and four at 2**17 and 2**20 rows, pass under the first
allowance already (0.18-0.78 of it). It is a cover by the rounding ``f`` shows, not by
the length of the sum the backward takes: a larger batch, or an ``f`` that sums more
accurately than its backward, can still fail. Passing the batch as an argument (``wrt`` leaves it
unchecked) lets ``L`` see it.

``k_num = 10``: the differentiator's estimate bounds the true error for about 95% of
elements and is rarely more than 10x below it, so ten of it leaves no false alarms
while staying orders of magnitude below any real bug in float64. ``k_an = 64``: a
float32 convolution gradient sums a few hundred products per element; its rounding is
tens of ulps of the typical magnitude. A 1e-5 relative error in one float64 element is
~1e10 ulps and a 2% error in a float32 element ~1e5 ulps: both far outside.

The user's floor
----------------
Users may add a floor with ``atol``/``rtol``: :math:`\tau \leftarrow \max(\tau,
atol + rtol\,m)`, with :math:`m` the larger magnitude of what is compared (:math:`\max(|a_j|,
|n_j|)` element-wise, the larger one-sided limit at a kink, the larger projection along a
direction). They are never needed for a right verdict.

At a kink
---------
An element the differentiator marks non-differentiable comes with its one-sided
derivatives :math:`\ell_j, r_j` and an error bar :math:`E_j = |r_j - \ell_j|/2 +
\rho_j` (half their gap plus their rounding). Comparing the analytic value with the
midpoint within :math:`10 E_j` would accept anything within five gaps of the kink --
a ReLU backward returning 2 where the limits are 0 and 1 would pass. So the analytic
value must instead lie in :math:`[\min(\ell_j, r_j) - \kappa_j, \max(\ell_j, r_j) +
\kappa_j]` with

.. math:: \kappa_j = k_{num}\,\rho_j + k_{gap}\,|r_j - \ell_j|
          + k_{an}\,G(L)\,\varepsilon\,(\max(|\ell_j|, |r_j|) + s + r_j)

(here :math:`r_j` in the last term is the resolution above, not the right limit)

``k_gap = 1/10``: the one-sided estimates come from one-sided stencils whose truncation
is not in :math:`\rho_j`. For correct code only one of them matters -- the analytic
value is the derivative of the branch the point lies on, i.e. the estimate on the
point's own side (the other side's stencil may straddle the kink and be far off when the
kink is near but not at the point), or, exactly at the kink, a value between the two.
Measured on ``elu(z; alpha) * cos(z)`` at points within 1e-8 of its kink and exactly on
it: the own-side estimate is within 4e-13 (float64) and 4e-5 (float32) of the gap from
the true one-sided derivative, far inside a tenth of the gap, while a value that is no
one-sided derivative at all (a ReLU backward returning 2 or -1/2) is a whole gap or more
outside. What no rule can see: within a step of a kink, the *other* branch's derivative
(a ReLU backward returning 0 at ``z = 1e-9``) lies between the limits and passes.

Along directions (fast mode)
----------------------------
Fast mode compares projections: :math:`\langle A, v_k\rangle` from the analytic
gradient against the numerical :math:`\frac{d}{dt} C(x + t v_k)` with its error bar
:math:`E_k`. The analytic projection is a sum of the terms :math:`A_j v_{kj}`, so its
rounding is that of the sum of their magnitudes:

.. math:: \tau_k = k_{num} E_k + k_{an}\,G(L)\,\varepsilon \sum_j |v_{kj}|\,(|A_j| + r_j)

(:math:`r_j` the resolution above where it is known: each element of a gradient that
cancels to zero is rounding of at least that size, and so is their sum; fast mode's
directions take :math:`r_j = 0`).

Linearity in the cotangent
--------------------------
The linearity stage (:mod:`gradcheck.checker._linearity`) calls the backward again and
compares one call, :math:`X = \mathrm{vjp}(\sum_k c_k R_k)`, with the same linear
combination of others, :math:`Y = \sum_k c_k A_k` (:math:`A_k = \mathrm{vjp}(R_k)`). No
numerical derivative is involved: for a linear backward the two differ by rounding alone
-- of forming :math:`\sum_k c_k R_k` in the cotangent's dtype (none for ``c`` a power of
two), and of each call's own sums, which a threaded BLAS may order differently from one
call to the next. That rounding is the analytic side's, at the scale of the terms:

.. math:: \lambda_j = k_{lin}\,G(L)\,\varepsilon \Big(\sum_k |c_k A_{kj}|
          + \sum_k |c_k|\,(s_k + r_{kj})\Big)

with :math:`s_k` the root-mean-square of :math:`A_k` and :math:`r_{kj}` the resolution
above for the cotangent :math:`R_k` (a gradient that is zero by cancellation is rounding
of the terms that cancel), and :math:`\varepsilon` the coarsest machine epsilon of the
cotangent's, the gradient's and the arguments' dtypes (a backward may compute in its
arguments' precision). ``k_lin = 64`` for float32 and float64, like ``k_an``; 16 for
float16 and bfloat16 (1.6% and 12.5%), where three ulps, enough beside a numerical error
bar, are too few for two sums of rounded terms to agree in. A backward that is not
linear departs by far more: clipping ``-1024 R`` or ignoring ``R`` is off by a factor
near a thousand, an absolute value or a one-hot selection by 100% of the element.

Measured (``tests/test_linearity.py``, which pins it at a quarter): the largest
departure of a right backward, in units of :math:`\lambda_j`, is 0.015 over the
diagnosis corpus's correct layers and the reference convolution in float64 and float32,
0.02 for a dense layer computed in float16, and 0.10 over the whole test suite's 3,000
checks (float32 and float64 convolutions of a million weights, through BLAS): a tenth
of the allowance or less.
"""

from __future__ import annotations

import numpy as np

from gradcheck._precision import LOW_PRECISION, machine_eps
from gradcheck._record import NamedTuple, frozen

__all__ = ["ToleranceRule", "RULE", "LOW_PRECISION_RULE", "Tolerance", "real_eps", "rule_for",
           "longest_sum", "reduction_growth", "GROWTH_FREE_LENGTH"]

#: ``L`` up to which the analytic allowance does not grow (:func:`reduction_growth`).
GROWTH_FREE_LENGTH = 4096


class ToleranceRule(NamedTuple):
    numeric_factor: float = 10.0   # k_num: multiples of the numerical error bar
    analytic_ulps: float = 64.0    # k_an: rounding allowance of the analytic side, in eps
    kink_gap: float = 0.1          # k_gap: share of the one-sided gap allowed beyond the limits
    linear_ulps: float = 64.0      # k_lin: rounding two calls of one linear map may differ by


#: The factors of the table above, for float32 and float64 (the dtype enters through eps).
RULE = ToleranceRule()
#: The factors for float16 and bfloat16 (see "The role of the dtype").
LOW_PRECISION_RULE = ToleranceRule(numeric_factor=2.0, analytic_ulps=3.0, linear_ulps=16.0)


def rule_for(dtype) -> ToleranceRule:
    """The row of the table for ``dtype``."""
    return LOW_PRECISION_RULE if np.dtype(dtype).name in LOW_PRECISION else RULE


def real_eps(dtype) -> float:
    """Machine epsilon of ``dtype``'s real precision (float32's for complex64)."""
    return machine_eps(dtype)


def longest_sum(problem) -> int:
    """``L``, the bound on the terms one element of the code's gradient sums: the size of
    the largest array the check sees, ``f``'s output (``problem.y``) or an argument."""
    return int(max([np.size(problem.y), *(np.size(a) for a in problem.args)]))


def reduction_growth(length) -> float:
    """``G(L) = max(1, sqrt(L / 4096))``: how much more rounding a right gradient carries
    when its elements are sums of up to ``L`` terms (see *Long reductions* above).

    Examples
    --------
    >>> from gradcheck.checker._tolerance import reduction_growth
    >>> reduction_growth(100), reduction_growth(4096), reduction_growth(4 * 4096)
    (1.0, 1.0, 2.0)
    """
    return max(1.0, float(np.sqrt(max(int(length), 0) / GROWTH_FREE_LENGTH)))


def _rms(magnitude) -> float:
    """``s``, the root-mean-square of the numerical gradient over the argument (scaled
    by its largest finite entry first, so that squaring huge values does not overflow)."""
    magnitude = np.abs(np.asarray(magnitude, np.float64))
    finite = magnitude[np.isfinite(magnitude)]
    top = float(finite.max(initial=0.0))
    if magnitude.size == 0 or top == 0.0:
        return 0.0 if finite.size == magnitude.size else float("inf")
    if finite.size < magnitude.size:
        return float("inf")
    return top * float(np.sqrt(np.mean((magnitude / top) ** 2)))


@frozen
class Tolerance:
    """The allowances of one argument's check (the module docstring derives each).

    ``eps`` is the machine epsilon of the analytic gradient's dtype, ``resolution``
    :math:`r_j` (a scalar, or an array shaped like the argument), ``atol``/``rtol`` the
    user's floor (None: no floor), ``length`` the bound ``L`` on the terms of one sum
    (:func:`longest_sum`; 0: short sums, no growth).
    """

    eps: float
    atol: float | None = None
    rtol: float | None = None
    resolution: object = 0.0
    rule: ToleranceRule = RULE
    length: int = 0

    @classmethod
    def for_dtype(cls, dtype, *, atol=None, rtol=None, resolution=0.0,
                  length=0, argument=None) -> "Tolerance":
        """The tolerance of an analytic gradient of ``dtype`` whose elements sum up to
        ``length`` terms. The factors follow the coarser of ``dtype`` and the argument's
        dtype ``argument`` (the differentiator's error bar is that of the argument's
        precision: a float32 gradient of a float16 argument is judged by float16's row)."""
        coarse = dtype if argument is None else max((dtype, argument), key=real_eps)
        return cls(real_eps(dtype), atol, rtol, resolution, rule_for(coarse), int(length))

    @property
    def growth(self) -> float:
        """``G(L)`` of this tolerance's ``length``."""
        return reduction_growth(self.length)

    def numeric(self, error) -> np.ndarray:
        """``k_num * E``: how far the differentiator's error bar is trusted."""
        return self.rule.numeric_factor * np.asarray(error, dtype=np.float64)

    def rounding(self, magnitude) -> np.ndarray:
        """``k_an * G(L) * eps * m``: the analytic side's rounding at magnitude ``m``."""
        return self.rule.analytic_ulps * self.growth * self.eps * magnitude

    def floor(self, tol, magnitude) -> np.ndarray:
        """``tol`` raised to the user's ``atol + rtol * magnitude`` where that is larger."""
        if self.atol is None and self.rtol is None:
            return tol
        return np.maximum(tol, (self.atol or 0.0) + (self.rtol or 0.0) * magnitude)

    def elementwise(self, analytic, numeric, error) -> np.ndarray:
        """``tau_j``, the allowed ``|a_j - n_j|`` of every element."""
        n = np.abs(numeric)
        tol = self.numeric(error) + self.rounding(n + _rms(n) + self.resolution)
        return self.floor(tol, np.maximum(np.abs(analytic), n))

    def at_kink(self, left, right, error, numeric) -> np.ndarray:
        """``kappa_j``, how far beyond its one-sided limits an analytic value may lie.

        ``error`` is the differentiator's error bar there (half the gap plus rounding);
        ``numeric`` the whole numerical gradient of the argument (for the scale ``s``).
        """
        larger = np.fmax(np.abs(left), np.abs(right))
        gap = np.abs(np.asarray(right, np.float64) - np.asarray(left, np.float64))
        rounding = np.maximum(np.asarray(error, np.float64) - 0.5 * gap, 0.0)
        kappa = self.numeric(rounding) + self.rule.kink_gap * gap + \
            self.rounding(larger + _rms(np.abs(numeric)) + self.resolution)
        return self.floor(kappa, larger)

    def direction_terms(self, directions, analytic) -> np.ndarray:
        r"""``sum_j |v_kj| (|A_j| + r_j)`` of each direction ``v_k`` (the rows of
        ``directions``): the magnitudes the projection :math:`\langle A, v_k\rangle` sums,
        each element at least its resolution, as element-wise."""
        a = np.abs(np.asarray(analytic, np.float64)).reshape(-1)
        r = np.asarray(self.resolution, np.float64).reshape(-1)     # one, or one each
        return np.abs(directions) @ (a + (r if r.size == a.size else r.max(initial=0.0)))

    def along_directions(self, proj_analytic, proj_numeric, error, terms) -> np.ndarray:
        """``tau_k`` of each direction; ``terms[k]`` is ``sum_j |v_kj| (|A_j| + r_j)``
        (:meth:`direction_terms`)."""
        tol = self.numeric(error) + self.rounding(terms)
        return self.floor(tol, np.maximum(np.abs(proj_analytic), np.abs(proj_numeric)))

    def linear_map(self, terms, resolutions=()) -> np.ndarray:
        """``lambda_j``: how far one call of a linear map may differ from the linear
        combination of others. ``terms`` are the combination's terms ``c_k A_k`` (arrays
        of one shape), ``resolutions`` the matching ``|c_k| r_kj`` (scalars or arrays)."""
        magnitudes = [np.abs(np.asarray(t)).astype(np.float64) for t in terms]
        total = sum(magnitudes)
        spread = sum(_rms(m) for m in magnitudes)
        floor = sum(np.asarray(r, np.float64) for r in resolutions) if resolutions else 0.0
        ulps = self.rule.linear_ulps * self.growth
        return self.floor(ulps * self.eps * (total + spread + floor), total)
