"""``check_function`` and ``check_module``: a torch function or module at one point.

Both build a :class:`~gradcheck.torch._problem.TorchProblem` and hand its ``f`` and
``f_vjp`` (on arrays) to :func:`gradcheck.check_vjp`, and in forward mode its ``f`` and
``f_jvp`` to :func:`gradcheck.check_jvp`: the report, its verdict and its diagnosis are
the checker's, whatever the framework.
"""

from __future__ import annotations

import numpy as np
import torch

from gradcheck._adapter import (FORWARD_PREFIX, SECOND_PREFIX, check_in_mode, merge_reports,
                                mode_options, pack, recording, second_order_names, validate_modes,
                                validate_order, with_notes)
from gradcheck._errors import ConfigurationError
from gradcheck.torch._convert import as_tuple, select_inputs, to_array
from gradcheck.torch._problem import TorchProblem, UserRaised, input_names
from gradcheck.torch._second import explain_cuts, name_cuts, name_forward_cuts
from gradcheck.torch._threads import check_threads, threads_for

__all__ = ["check_function", "check_module", "run_problem", "problem_threads"]


def _cotangent_option(options):
    cot = options.get("cotangent")
    if cot is None:
        return options
    parts = as_tuple(cot)
    if all(isinstance(c, torch.Tensor) for c in parts):
        options = dict(options, cotangent=pack([to_array(c) for c in parts]))
    return options


def run_problem(problem: TorchProblem, *, orders, options, grad_outputs=None, modes=("rev",)):
    """Check ``problem`` at each order in ``orders`` (1, 2 or both) in each mode of
    ``modes`` (``"rev"``, ``"fwd"``); one report. ``options["threads"]`` (default
    ``"auto"``) sets PyTorch's threads while it runs (:mod:`gradcheck.torch._threads`)."""
    options = dict(options)
    with problem_threads(problem, options.pop("threads", "auto")):
        return _run_problem(problem, orders, options, grad_outputs, modes)


def problem_threads(problem: TorchProblem, threads):
    """PyTorch's threads for checking ``problem`` (:func:`.threads_for` of its inputs'
    and outputs' shapes)."""
    shapes = [tuple(t.shape) for t in problem.inputs if isinstance(t, torch.Tensor)]
    return threads_for(check_threads(threads), shapes + list(problem.out_shapes))


def _run_problem(problem, orders, options, grad_outputs, modes):
    name = options.pop("name", None) or problem.label
    options.pop("argnames", None)
    if problem.nondet_tol > 0:
        options["atol"] = (options.get("atol") or 0.0) + problem.nondet_tol
    parts = []
    if 1 in orders:
        for mode in modes:
            problem.missing.clear()
            problem.no_tangent.clear()
            opts = mode_options(options, mode, modes)
            derivative = problem.backward if mode == "rev" else problem.tangent
            report = check_in_mode(mode, problem.forward, derivative, problem.point,
                                   argnames=problem.argnames, name=name,
                                   source="torch's backward (autograd)",
                                   **(_cotangent_option(opts) if mode == "rev" else opts))
            parts.append((_prefix(mode), "forward mode" if mode == "fwd" else "",
                          with_notes(report, *problem.notes(order=1))))
    if 2 in orders:
        g = problem.draw_g(options.get("seed", 0), grad_outputs)
        names = second_order_names(problem.argnames, len(g))
        opts = {k: v for k, v in options.items() if k not in ("wrt", "cotangent")}
        opts.setdefault("roles" if "rev" in modes else "output_role", "generic")
        cuts = ...      # what cuts the backward from torch's graph: looked at on a failure
        for mode in modes:
            problem.missing.clear()
            problem.disconnected.clear()
            problem.no_tangent.clear()
            calls = []          # the cotangents and points of the double backward
            derivative = (recording(problem.second_vjp, calls) if mode == "rev"
                          else problem.second_jvp)
            report = check_in_mode(mode, problem.second, derivative, problem.point + g,
                                   argnames=names, name=f"{name} (order 2)",
                                   source="torch's double backward (autograd)",
                                   **mode_options(opts, mode, modes))
            if not report.passed:
                cuts = explain_cuts(problem, g, names) if cuts is ... else cuts
                report = (name_cuts(report, cuts, problem.label, problem, calls)
                          if mode == "rev"
                          else name_forward_cuts(report, cuts, problem.label))
            both = 1 in orders      # rows of order 2 beside order 1's are marked so
            label = ", ".join(w for w, on in (("order 2", both),
                                             ("forward mode", mode == "fwd")) if on)
            parts.append((_prefix(mode) + (SECOND_PREFIX if both else ""), label,
                          with_notes(report, *problem.notes(order=2))))
    return with_notes(merge_reports(parts), problem.unchecked_note())


def _prefix(mode):
    return FORWARD_PREFIX if mode == "fwd" else ""


def _names(option, default, n, what):
    if option is None:
        return default
    names = tuple(option)
    if len(names) != n or not all(isinstance(a, str) for a in names) or len(set(names)) != n:
        raise ConfigurationError(f"argnames must be {n} distinct strings, one per {what}; "
                                 f"got {option!r}")
    return names


def check_function(fn, inputs, *, order=1, modes=("rev",), nondet_tol=0.0, **options):
    """Check a torch function's backward (and with ``order=2`` its double backward).

    Parameters
    ----------
    fn : callable
        Takes tensors (a ``torch.autograd.Function``'s ``.apply``, a custom op, any
        function of tensors) and returns a tensor or a tuple of tensors.
    inputs : tuple
        The point. Checked are the floating tensors with ``requires_grad=True`` (every
        floating tensor when none is marked), in their own dtype and on their own device;
        everything else is passed through unchanged (a floating tensor left out for want
        of ``requires_grad`` is named in the report's notes).
    order : {1, 2}
        1: the backward, ``torch.autograd.grad`` with the checker's seeded cotangent,
        against numerical derivatives of ``fn``. 2: also the backward's own derivatives,
        the map :math:`(x, g) \\mapsto \\text{backward}(g, x)` against torch's double
        backward; those rows are named ``order2.<input>`` and ``order2.grad_output``.
    modes : sequence of {"rev", "fwd"}
        ``"rev"`` (the default): the backward, as above. ``"fwd"``: forward mode, the
        output tangent by ``torch.autograd.forward_ad`` (an ``autograd.Function`` needs
        its ``jvp`` staticmethod) along every column of the Jacobian, against numerical
        directional derivatives (:func:`gradcheck.check_jvp`); rows named
        ``fwd.<input>``. With ``order=2``, the backward's map is checked in each mode:
        ``"fwd"`` is forward mode through the backward (torch's ``check_fwd_over_rev``),
        rows ``fwd.order2.<input>``. (Forward over forward is not a torch check; the JAX
        adapter has it.)
    nondet_tol : float
        Two backward passes at the same point may differ by this much (atomics on a GPU),
        added to ``atol``; above it the check stops with a
        :class:`~gradcheck.UserCodeError` saying so.
    threads : "auto", None or int, optional
        PyTorch's intra-op threads while the check runs, put back afterwards: ``"auto"``
        (the default) one thread when every input, parameter and output has fewer than
        32768 elements (many tiny calls, where a second thread only spin-waits: many
        times slower on a busy machine), else torch's setting; an integer that many;
        None torch's setting.
    **options
        Those of :func:`gradcheck.check_vjp` / :func:`gradcheck.check_jvp` (``mode``,
        ``seed``, ``atol``, ``rtol``, ``wrt``, ``argnames`` -- one name per input --
        ...). ``wrt`` and ``cotangent`` apply to order 1, ``cotangent`` and ``roles`` to
        ``"rev"``, ``output_role`` to ``"fwd"``.

    Returns
    -------
    CheckReport

    Examples
    --------
    >>> import torch
    >>> from gradcheck.torch import check_function
    >>> class Square(torch.autograd.Function):
    ...     @staticmethod
    ...     def forward(ctx, x):
    ...         ctx.save_for_backward(x)
    ...         return x * x
    ...     @staticmethod
    ...     def backward(ctx, g):
    ...         x, = ctx.saved_tensors
    ...         return 2 * g * x
    >>> x = torch.linspace(-1, 1, 5, dtype=torch.float32)
    >>> check_function(Square.apply, (x,), order=2).passed
    True
    >>> report = check_function(lambda x: torch.tanh(x), (x,), modes=("rev", "fwd"))
    >>> [(a.name, a.passed) for a in report.arguments], report.ad_mode
    ([('x', True), ('fwd.x', True)], 'fwd+rev')
    """
    order = validate_order(order)
    modes = validate_modes(modes)
    check_threads(options.get("threads", "auto"))
    inputs = as_tuple(inputs)
    if not inputs:
        raise ConfigurationError("inputs must hold at least one tensor; got an empty tuple")
    names = _names(options.pop("argnames", None), input_names(fn, len(inputs)), len(inputs),
                   "input")
    if not callable(fn):
        raise ConfigurationError(f"fn must be callable; got {type(fn).__name__}")
    checked = select_inputs(inputs, names)
    problem = TorchProblem(fn, inputs, checked, names, nondet_tol=_nondet(nondet_tol),
                           label=options.get("name"))
    return run_problem(problem, orders=tuple(range(1, order + 1)), options=options,
                       modes=modes)


def _nondet(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not \
            np.isfinite(value) or value < 0:
        raise ConfigurationError(f"nondet_tol must be a finite number >= 0; got {value!r}")
    return float(value)


def module_function(module, n_inputs, param_names):
    """``fn(*inputs, *params)``: ``module`` called with these parameters (its buffers
    copied, so that checking never changes the module). The buffers are read at each
    call, not once: a module cast since (``module.to(dtype)``, as a spec's python layer
    is) has new buffer tensors, and the old ones would keep the old dtype."""
    from torch.func import functional_call

    def fn(*args):
        state = dict(zip(param_names, args[n_inputs:]))
        state.update({k: b.clone() for k, b in module.named_buffers()})
        return functional_call(module, state, tuple(args[:n_inputs]))

    return fn


def _dtype_hint(module, inputs) -> str:
    """Where the floating inputs and the module's floating parameters and buffers differ
    in dtype (a float16 input to a float32 module): a sentence saying so, for the error
    of a module that failed on its first call; else ''."""
    held = {str(t.dtype).removeprefix("torch.")
            for t in (*module.parameters(), *module.buffers()) if t.is_floating_point()}
    given = {str(t.dtype).removeprefix("torch.") for t in inputs
             if isinstance(t, torch.Tensor) and t.is_floating_point()}
    if not held or not given or held == given:
        return ""
    return (f" (the input is {' / '.join(sorted(given))} and the module's parameters are "
            f"{' / '.join(sorted(held))}: cast one to the other's dtype, e.g. "
            f"module.to(x.dtype); gradcheck checks the module as given, in its own dtype)")


def check_module(module, *inputs, order=1, modes=("rev",), nondet_tol=0.0, **options):
    """Check an ``nn.Module``'s gradients for its inputs and every trainable parameter.

    The floating inputs (those with ``requires_grad`` if any is marked) and every parameter
    with ``requires_grad``, named as in ``named_parameters()``, are checked at their
    current values; the module is called through ``torch.func.functional_call``, its
    buffers copied, so the check leaves it unchanged; the inputs and parameters left out
    for want of ``requires_grad`` are named in the report's notes. Options as for
    :func:`check_function`.

    Examples
    --------
    >>> import torch
    >>> from gradcheck.torch import check_module
    >>> _ = torch.manual_seed(0)
    >>> layer = torch.nn.Linear(3, 2)
    >>> report = check_module(layer, torch.randn(4, 3))
    >>> report.passed, [a.name for a in report.arguments]
    (True, ['input', 'weight', 'bias'])
    """
    order = validate_order(order)
    modes = validate_modes(modes)
    check_threads(options.get("threads", "auto"))
    if not isinstance(module, torch.nn.Module):
        raise ConfigurationError(f"module must be a torch.nn.Module; got "
                                 f"{type(module).__name__}")
    if not inputs:
        raise ConfigurationError("check_module needs at least one input: check_module(module, "
                                 "x, ...)")
    params = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    in_names = ("input",) if len(inputs) == 1 else tuple(f"input{i}" for i in
                                                         range(len(inputs)))
    p_names = tuple(n for n, _ in params)
    shown = tuple(f"param.{n}" if n in in_names else n for n in p_names)
    names = _names(options.pop("argnames", None), in_names + shown, len(inputs) + len(params),
                   "input and trainable parameter")
    floating = [i for i, t in enumerate(inputs) if isinstance(t, torch.Tensor)
                and t.is_floating_point()]
    checked = select_inputs(inputs, names[:len(inputs)]) if floating else []
    values = tuple(p.detach() for _, p in params)
    if params:
        select_inputs(values, names[len(inputs):], what="parameters")
    checked += list(range(len(inputs), len(inputs) + len(params)))
    if not checked:
        raise ConfigurationError(f"{type(module).__name__} has no trainable parameter and no "
                                 f"floating-point input: nothing to check")
    fn = module_function(module, len(inputs), p_names)
    try:
        problem = TorchProblem(fn, tuple(inputs) + values, checked, names,
                               label=options.get("name") or type(module).__name__,
                               nondet_tol=_nondet(nondet_tol),
                               frozen=[n for n, p in module.named_parameters()
                                       if not p.requires_grad])
    except UserRaised as exc:
        hint = _dtype_hint(module, inputs)
        if not hint:
            raise
        raise UserRaised(f"{exc}{hint}") from exc.__cause__
    report = run_problem(problem, orders=tuple(range(1, order + 1)), options=options,
                         modes=modes)
    from gradcheck._adapter import with_notes
    from gradcheck.torch._culprit import locate_culprit     # a failing stack: where

    report = with_notes(report, _hooks_note(params))
    return locate_culprit(check_module, module, inputs, report, order=order, modes=modes,
                          options=options)


def _hooks_note(params) -> str:
    """A note naming the parameters with hooks of their own (``p.register_hook``): the
    check calls the module with copies of its parameters, so those hooks are not part of
    the gradients checked (a module's own hooks are)."""
    hooked = [n for n, p in params if getattr(p, "_backward_hooks", None)]
    if not hooked:
        return ""
    return (f"{', '.join(hooked)}: the hooks registered on these parameter tensors "
            f"(register_hook) are not applied: the check calls the module with copies of "
            f"its parameters, so the gradients checked are the module's own, before those "
            f"hooks")
