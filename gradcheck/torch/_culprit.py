"""Which submodule of a failing ``nn.Module`` stack the mismatch comes from.

When :func:`~gradcheck.torch.check_module` fails on a stack, the failing rows do not say
where the bug is: a wrong backward in layer 2 makes the gradients of every parameter
*before* it wrong (they are reached through it), and the input's. Two things are said
in one note of the report:

1. the failing parameters grouped by the submodule that owns them (``0.weight`` and
   ``0.bias`` belong to ``0``; ``block.conv.bias`` to ``block.conv``);
2. the submodule the mismatch comes from: the stack is run once with a forward hook on
   every submodule, which records the inputs each receives (the module's buffers are
   restored afterwards), and each called submodule is checked *alone* at those inputs
   with the same options, innermost first. The culprit is a submodule that fails alone
   while every submodule inside it passes (or it has none); a container whose child
   already failed is not checked again. When every submodule passes alone, the
   mismatch comes from the stack's own code between them (an operation or a custom
   ``Function`` in its ``forward``).

At most :data:`MAX_MODULES` submodules are checked alone (the note says how many were
left); a submodule that cannot be checked alone (keyword inputs, a module that raises)
is said to be so.
"""

from __future__ import annotations

import contextvars

import torch

from gradcheck._adapter import FORWARD_PREFIX, SECOND_PREFIX
from gradcheck._errors import GradcheckError

__all__ = ["locate_culprit", "owners", "MAX_MODULES"]

#: Submodules checked alone, at most, for one failing stack.
MAX_MODULES = 24

#: Set while the submodules are checked alone (their own failures locate nothing more).
_LOCATING = contextvars.ContextVar("gradcheck_torch_locating", default=False)

#: Options of the stack's check that do not carry over to a submodule's.
_NOT_PASSED = ("name", "argnames", "wrt", "cotangent", "roles", "output_role")


def owners(names) -> dict:
    """The failing row names grouped by the submodule that owns them: ``{"0": ["weight",
    "bias"], "": ["input"]}`` (``""``: the stack itself -- its inputs and its own
    parameters); the order of first appearance is kept.

    >>> owners(["input", "0.weight", "0.bias", "block.conv.bias"])
    {'': ['input'], '0': ['weight', 'bias'], 'block.conv': ['bias']}
    """
    out: dict = {}
    for name in names:
        owner, _, leaf = name.rpartition(".")
        out.setdefault(owner, []).append(leaf)
    return out


def _row_name(name: str) -> str:
    for prefix in (SECOND_PREFIX, FORWARD_PREFIX):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def _calls(module, inputs):
    """``[(name, submodule, args)]`` of every submodule called by one forward, the first
    call of each, with its positional inputs (tensors detached and copied)."""
    calls, seen, handles = [], set(), []

    def hook(name):
        def record(sub, args, output):
            if name not in seen:
                seen.add(name)
                calls.append((name, sub, tuple(a.detach().clone() if isinstance(a, torch.Tensor)
                                               else a for a in args)))
        return record

    for name, sub in module.named_modules():
        if sub is not module and name:
            handles.append(sub.register_forward_hook(hook(name)))
    saved = {k: b.detach().clone() for k, b in module.named_buffers()}
    try:
        with torch.no_grad():
            module(*inputs)
    finally:
        for handle in handles:
            handle.remove()
        with torch.no_grad():
            for k, b in module.named_buffers():
                if k in saved:
                    b.copy_(saved[k])
    return calls


def _inside(name: str, other: str) -> bool:
    """Submodule ``other`` lies inside submodule ``name``."""
    return other.startswith(name + ".")


def _alone(check_module, calls, order, modes, options):
    """Each called submodule checked alone, innermost first: ``(failed, unchecked,
    left)`` -- the failing ones with their report, the ones that could not be checked
    (with why), and how many were not tried (over :data:`MAX_MODULES`)."""
    opts = {k: v for k, v in options.items() if k not in _NOT_PASSED}
    order_in = sorted(calls, key=lambda c: -c[0].count("."))
    failed, unchecked, tried, left = {}, {}, 0, 0
    for name, sub, args in order_in:
        if any(_inside(name, f) for f in failed):
            continue                  # a child already fails: the container adds nothing
        has_params = any(p.requires_grad for p in sub.parameters())
        floating = any(isinstance(a, torch.Tensor) and a.is_floating_point() for a in args)
        if not args or not (has_params or floating):
            continue
        if tried >= MAX_MODULES:
            left += 1
            continue
        tried += 1
        try:
            report = check_module(sub, *args, order=order, modes=modes, **opts)
        except Exception as exc:      # noqa: BLE001 -- called out of its context (a
            # module given keyword inputs, or relying on state its parent sets) it may
            # raise anything: said in the note, the stack's own report kept
            why = str(exc).split("\n")[0] if isinstance(exc, GradcheckError) else \
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            unchecked[name] = why
            continue
        if not report.passed:
            failed[name] = report
    return failed, unchecked, left


def _by_owner(failing, n_inputs, label) -> str:
    """``"the input; 0: weight, bias; 1.conv: weight"``: the failing rows, the inputs
    first, then the parameters grouped by the submodule that owns them."""
    inputs = {"input", *(f"input{i}" for i in range(n_inputs))}
    said = [f"the {n}" for n in failing if n in inputs]
    for owner, leaves in owners([n for n in failing if n not in inputs]).items():
        said.append(f"{owner or label + ' (its own parameters)'}: {', '.join(leaves)}")
    return "; ".join(said)


def _said(name, sub, report) -> str:
    rows = [a for a in report.arguments if not a.passed]
    what = ", ".join(f"'{a.name}'" for a in rows)
    cause = next((a.diagnosis.cause for a in rows if a.diagnosis is not None
                  and a.diagnosis.cause != "no_known_pattern"), None)
    return (f"'{name}' ({type(sub).__name__}): checked alone at the input it receives in "
            f"this forward, its gradient of {what} fails"
            + (f" (likely cause: {cause})" if cause else ""))


def locate_culprit(check_module, module, inputs, report, *, order, modes, options):
    """``report`` of a failing ``check_module(module, *inputs)`` with one more note: the
    failing parameters by submodule, and the submodule the mismatch comes from (see the
    module notes). A passing report, or one made while submodules are checked alone,
    is returned as it is."""
    if report.passed or _LOCATING.get():
        return report
    failing = [_row_name(a.name) for a in report.arguments if not a.passed]
    by_owner = _by_owner(failing, len(inputs), type(module).__name__)
    token = _LOCATING.set(True)
    try:
        calls = _calls(module, inputs)
        failed, unchecked, left = _alone(check_module, calls, order, modes, options)
    except Exception as exc:              # the stack's own forward, run again, raised
        return _with(report, f"failing: {by_owner}; the submodules could "
                             f"not be checked alone ({type(exc).__name__}: {exc})")
    finally:
        _LOCATING.reset(token)
    subs = {name: sub for name, sub, _ in calls}
    culprits = [n for n in failed if not any(_inside(n, f) for f in failed if f != n)]
    if culprits:
        where = "; ".join(_said(n, subs[n], failed[n])
                          + (" while every submodule inside it passes alone (its own code "
                             "between them)" if any(_inside(n, c) for c in subs) else "")
                          for n in culprits)
        others = "every other submodule passes alone" if not unchecked else \
            "the others pass alone, or could not be checked"
        said = (f"the mismatch comes from {where}, and {others}: look at "
                f"{'its' if len(culprits) == 1 else 'their'} backward")
    elif calls and unchecked:
        said = (f"every submodule checked alone at the input it receives in this forward "
                f"passes: the mismatch comes from one that could not be checked alone "
                f"({', '.join(repr(n) for n in unchecked)}) or from "
                f"{type(module).__name__}'s own code between them")
    elif calls:
        said = (f"every submodule passes when checked alone at the input it receives in "
                f"this forward: the mismatch comes from {type(module).__name__}'s own code "
                f"between them (an operation or a custom autograd.Function in its forward)")
    else:
        said = f"{type(module).__name__} calls no submodule: the mismatch is in its own code"
    extra = "".join([
        f"; not checked alone: " + "; ".join(f"'{n}' ({why})" for n, why in unchecked.items())
        if unchecked else "",
        f"; {left} more submodule(s) not checked alone (at most {MAX_MODULES})" if left else ""])
    return _with(report, f"failing: {by_owner}; {said}{extra}")


def _with(report, note):
    from gradcheck._adapter import with_notes

    return with_notes(report, note)
