"""Drop-ins for ``torch.autograd.gradcheck`` and ``torch.autograd.gradgradcheck``.

Switching a test is a one-line import change: the same positional arguments, every
keyword argument of torch's signature accepted, ``True`` on success, and on failure
:class:`GradientCheckFailed` (a subclass of torch's own ``GradcheckError``)
whose message is the checker's report -- or ``False`` with ``raise_exception=False``.
An exception the function (or its backward) raises is no gradient failure: it propagates
as itself, with its traceback, as it does from torch's.

torch's keyword arguments
-------------------------
=============================  ===========================================================
honoured                       ``raise_exception``; ``atol`` / ``rtol`` (when given: a floor
                               added to the automatic tolerance; torch's defaults 1e-5 /
                               1e-3 are *not* applied, they would hide a 1e-5 error);
                               ``nondet_tol``; ``fast_mode`` (random directions, see
                               ``mode="fast"``); ``check_undefined_grad`` (the backward's
                               rule; undefined forward tangents are not tested);
                               ``check_grad_dtypes``; ``gen_non_contig_grad_outputs`` and
                               ``grad_outputs`` (gradgradcheck); ``check_forward_ad`` and
                               ``check_backward_ad`` (forward mode by
                               ``torch.autograd.forward_ad``, column by column, and the
                               backward: ``modes`` of :func:`check_function`);
                               ``check_fwd_over_rev`` and ``check_rev_over_rev``
                               (gradgradcheck: the backward's map in forward mode, through
                               forward AD of the backward, and in reverse mode)
not needed                     ``eps`` (steps are chosen per element, with error bars);
                               ``masked`` (only dense tensors are checked)
not checked                    ``check_batched_grad``, ``check_batched_forward_grad``
                               (vmap support): ``True`` warns :class:`UncheckedWarning`
=============================  ===========================================================

Any other keyword argument is one of :func:`gradcheck.check_vjp`'s options (``seed``,
``mode``, ``wrt``, ...), or ``threads``: PyTorch's threads during the check, as for
:func:`~gradcheck.torch.check_function` (one thread for small tensors by default).
"""

from __future__ import annotations

import warnings

import torch
from torch.autograd.gradcheck import GradcheckError as _TorchGradcheckError

from gradcheck._errors import ConfigurationError, GradcheckError, UserCodeError
from gradcheck.torch._check import _names, _nondet, problem_threads, run_problem
from gradcheck.torch._convert import as_tuple, select_inputs
from gradcheck.torch._problem import TorchProblem, UserRaised, input_names

__all__ = ["gradcheck", "gradgradcheck", "GradientCheckFailed", "UncheckedWarning"]


class GradientCheckFailed(GradcheckError, _TorchGradcheckError):
    """A drop-in check failed; the message is the report (``.report``, or None when the
    function misbehaved before a verdict could be made). It is also torch's own
    ``torch.autograd.gradcheck.GradcheckError`` (a ``RuntimeError``), so a test that
    catches that still catches a failure after the import is switched."""

    def __init__(self, message, report=None):
        super().__init__(message)
        self.report = report




class UncheckedWarning(UserWarning):
    """A check torch's signature offers was asked for and is not done by gradcheck."""


GradientCheckFailed.__module__ = UncheckedWarning.__module__ = "gradcheck.torch"  # public home


def _modes(forward, backward, flags):
    """The modes two of torch's flags ask for (``flags`` names them, for the message)."""
    modes = (("rev",) if backward else ()) + (("fwd",) if forward else ())
    if not modes:
        raise ConfigurationError(f"{flags[0]}=False and {flags[1]}=False leave nothing to "
                                 f"check: set one of them")
    return modes


def _unchecked(**flags):
    for flag, value in flags.items():
        if value:
            warnings.warn(f"{flag}=True is not checked by gradcheck.torch (it tests vmap "
                          f"support, not the gradient's values); use torch.autograd's own "
                          f"gradcheck for it", UncheckedWarning, stacklevel=3)


def _tolerance_options(atol, rtol, fast_mode, options):
    for label, value in (("atol", atol), ("rtol", rtol)):
        if value is not None:
            options[label] = value
    if fast_mode and "mode" not in options:
        options["mode"] = "fast"
    return options


def _undefined_grad_problem(call, leaves, label):
    """torch's rule: with every output gradient undefined (or one at a time), the backward
    must run and give gradients that are undefined or zero. Returns a sentence or None."""
    undefined = getattr(getattr(torch._C, "_functions", None), "UndefinedGrad", None)
    if undefined is None:   # pragma: no cover - present in every supported torch
        warnings.warn("check_undefined_grad: this torch has no UndefinedGrad; not checked",
                      UncheckedWarning, stacklevel=4)
        return None
    def outputs():
        try:
            return call(leaves)
        except Exception as exc:
            raise UserCodeError(f"{label} raised {type(exc).__name__}: "
                                f"{str(exc).strip().splitlines()[0]}") from exc

    with torch.enable_grad():
        n = len(outputs())
        if n == 0:
            return None
        cases = [None] + (list(range(n)) if n > 1 else [])
        for which in cases:
            outs = outputs()
            outs = [undefined()(o) if which is None or j == which else o
                    for j, o in enumerate(outs)]
            what = ("every output gradient" if which is None else
                    f"the gradient of output {which}")
            try:
                grads = torch.autograd.grad(outs, leaves, [torch.zeros_like(o) for o in outs],
                                            allow_unused=True)
            except Exception as exc:
                return (f"the backward of {label} fails when {what} is undefined (None, as "
                        f"torch passes for an output that does not reach the loss): "
                        f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}; treat an undefined gradient "
                        f"as zero (check_undefined_grad=False skips this)")
            for j, g in enumerate(grads):
                if g is not None and not bool((g == 0).all()):
                    return (f"the backward of {label} returns a non-zero gradient for input "
                            f"{j} when {what} is undefined (it should be undefined or zero)")
    return None


def _outcome(problem, orders, modes, options, grad_outputs, undefined, raise_exception):
    """Run the check (and torch's undefined-gradient rule: ``undefined`` is
    ``(call, leaves, label)`` or None); True, False or :class:`GradientCheckFailed`."""
    report, sentence = None, None
    try:
        with problem_threads(problem, options.get("threads", "auto")):
            report = run_problem(problem, orders=orders, options=options,
                                 grad_outputs=grad_outputs, modes=modes)
            if undefined is not None:
                call, leaves, label = undefined
                sentence = _undefined_grad_problem(call, leaves(), label)
    except UserRaised as exc:   # the user's own exception, as itself (as torch's does)
        raise exc.__cause__ from None
    except UserCodeError as exc:
        sentence = str(exc)
    if report is not None and report.passed and sentence is None:
        return True
    message = "\n".join(p for p in (None if report is None else str(report), sentence) if p)
    if raise_exception:
        raise GradientCheckFailed(message, report)
    return False


def _problem(func, inputs, nondet_tol, check_grad_dtypes, options, noncontiguous_g=False):
    inputs = as_tuple(inputs)
    if not inputs:
        raise ConfigurationError("inputs must hold at least one tensor; got an empty tuple")
    if not callable(func):
        raise ConfigurationError(f"func must be callable; got {type(func).__name__}")
    names = _names(options.pop("argnames", None), input_names(func, len(inputs)), len(inputs),
                   "input")
    checked = select_inputs(inputs, names)
    try:
        return TorchProblem(func, inputs, checked, names, label=options.get("name"),
                            nondet_tol=_nondet(nondet_tol),
                            check_grad_dtypes=check_grad_dtypes,
                            noncontiguous_g=noncontiguous_g), None
    except UserRaised as exc:   # the user's own exception, as itself (as torch's does)
        raise exc.__cause__ from None
    except UserCodeError as exc:
        return None, str(exc)


def gradcheck(func, inputs, *, eps=None, atol=None, rtol=None, raise_exception=True,
              nondet_tol=0.0, check_undefined_grad=True, check_grad_dtypes=False,
              check_batched_grad=False, check_batched_forward_grad=False,
              check_forward_ad=False, check_backward_ad=True, fast_mode=False, masked=None,
              **options) -> bool:
    """Drop-in for ``torch.autograd.gradcheck``: ``True``, or the report as an exception.

    See the module notes for which of torch's keyword arguments are honoured.

    Examples
    --------
    >>> import torch
    >>> from gradcheck.torch import gradcheck
    >>> x = torch.randn(3, 4, dtype=torch.float32, requires_grad=True)   # float32 is fine
    >>> gradcheck(torch.sigmoid, (x,))
    True
    >>> gradcheck(torch.sigmoid, (x,), check_forward_ad=True)          # and forward AD
    True
    """
    modes = _modes(check_forward_ad, check_backward_ad,
                   ("check_forward_ad", "check_backward_ad"))
    _unchecked(check_batched_grad=check_batched_grad,
               check_batched_forward_grad=check_batched_forward_grad)
    options = _tolerance_options(atol, rtol, fast_mode, dict(options))
    problem, failure = _problem(func, inputs, nondet_tol, check_grad_dtypes, options)
    if problem is None:
        if raise_exception:
            raise GradientCheckFailed(failure)
        return False

    def call(leaves):
        return problem._selected(problem._call(leaves))

    def leaves():
        return problem._leaves(requires_grad=True)

    undefined = (call, leaves, problem.label) if check_undefined_grad and \
        check_backward_ad else None
    return _outcome(problem, (1,), modes, options, None, undefined, raise_exception)


def gradgradcheck(func, inputs, grad_outputs=None, *, eps=None, atol=None, rtol=None,
                  gen_non_contig_grad_outputs=False, raise_exception=True, nondet_tol=0.0,
                  check_undefined_grad=True, check_grad_dtypes=False,
                  check_batched_grad=False, check_fwd_over_rev=False,
                  check_rev_over_rev=True, fast_mode=False, masked=False, **options) -> bool:
    """Drop-in for ``torch.autograd.gradgradcheck``: the backward's own derivatives.

    The map :math:`(x, g) \\mapsto \\text{backward}(g, x)` is checked numerically against
    torch's double backward at ``grad_outputs`` (seeded normals if None), and with
    ``check_fwd_over_rev=True`` against forward AD through the backward too (rows
    ``fwd.<input>``). A backward that detaches its result, leaves torch (``.numpy()``),
    runs under ``no_grad`` or is ``@once_differentiable`` fails with a sentence saying so.

    Examples
    --------
    >>> import torch
    >>> from gradcheck.torch import gradgradcheck
    >>> x = torch.randn(5, dtype=torch.float64, requires_grad=True)
    >>> gradgradcheck(torch.tanh, (x,))
    True
    """
    modes = _modes(check_fwd_over_rev, check_rev_over_rev,
                   ("check_fwd_over_rev", "check_rev_over_rev"))
    _unchecked(check_batched_grad=check_batched_grad)
    options = _tolerance_options(atol, rtol, fast_mode, dict(options))
    problem, failure = _problem(func, inputs, nondet_tol, check_grad_dtypes, options,
                                noncontiguous_g=gen_non_contig_grad_outputs)
    if problem is None:
        if raise_exception:
            raise GradientCheckFailed(failure)
        return False

    k = len(problem.checked)

    def call(leaves):
        # torch's rule applied to the second-order map (x, g) -> backward(g, x), the
        # gradients taken with a graph so that they can be differentiated again
        xs, gs = leaves[:k], leaves[k:]
        sel = problem._selected(problem._call(xs))
        grads = torch.autograd.grad(sel, xs, gs, create_graph=True, allow_unused=True)
        return [g for g in grads if g is not None and g.requires_grad]

    def leaves():
        g = problem.draw_g(options.get("seed", 0), grad_outputs)
        return problem._leaves(requires_grad=True) + problem._g_tensors(g, requires_grad=True)

    undefined = ((call, leaves, f"the backward of {problem.label}")
                 if check_undefined_grad and check_rev_over_rev else None)
    return _outcome(problem, (2,), modes, options, grad_outputs, undefined, raise_exception)
