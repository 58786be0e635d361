"""A torch function seen by the checker: ``f`` and ``f_vjp`` on arrays, orders 1 and 2.

:class:`TorchProblem` holds the user's function, the point (its inputs), which inputs
are checked and which outputs count, and offers the four callables the checker needs:

* order 1: :meth:`forward` ``(*arrays) -> packed outputs`` and :meth:`backward`
  ``(R, *arrays) -> gradients``, the latter ``torch.autograd.grad`` with the checker's
  cotangent;
* order 2: :meth:`second` ``(*arrays, *g) -> packed backward(g, x)`` (the map whose
  derivatives are checked, evaluated without a graph) and :meth:`second_vjp`
  ``(R, *arrays, *g)``, torch's double backward: the gradients taken with
  ``create_graph=True`` and differentiated again;
* forward mode: :meth:`tangent` ``(tangents, *arrays)``, the output tangent by
  ``torch.autograd.forward_ad`` (dual tensors: an ``autograd.Function`` needs its ``jvp``
  staticmethod, as for ``gradcheck(check_forward_ad=True)``), and at order 2
  :meth:`second_jvp`, forward mode through the backward (torch's ``check_fwd_over_rev``).

What the user's code does wrong becomes a :class:`~gradcheck.UserCodeError` naming it;
what torch's graph cannot see (a gradient the graph does not reach, a backward whose
result is cut from the graph) is recorded and reported as a note beside the verdict.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch
import torch.autograd.forward_ad as fwAD

from gradcheck._adapter import check_nondeterminism, pack, unpack
from gradcheck._errors import ConfigurationError, UserCodeError
from gradcheck.torch._convert import (as_tuple, differentiable_outputs, numpy_dtype, to_array,
                                      to_tensor)

__all__ = ["TorchProblem", "input_names", "function_label", "UserRaised"]


class UserRaised(UserCodeError):
    """The user's own function (or its backward) raised: ``__cause__`` is that exception.
    The drop-ins re-raise it as itself, as ``torch.autograd.gradcheck`` does; the
    checker's own functions report this error, which names the function."""


def function_label(fn) -> str:
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, type):
        return owner.__name__
    return getattr(fn, "__name__", None) or type(fn).__name__


def input_names(fn, n: int) -> tuple:
    """Names of ``fn``'s first ``n`` positional parameters (``input{i}`` where unknown)."""
    target = fn
    owner = getattr(fn, "__self__", None)
    if isinstance(owner, type) and issubclass(owner, torch.autograd.Function):
        target = owner.forward
    names = []
    try:
        params = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        params = []
    if params and params[0].name == "ctx":
        params = params[1:]
    for p in params:
        if p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            break
        names.append(p.name)
    names = names[:n] + [f"input{i}" for i in range(len(names), n)]
    if len(set(names)) != n:
        names = [f"input{i}" for i in range(n)]
    return tuple(names)


def _noncontiguous(t: torch.Tensor) -> torch.Tensor:
    """The same values in a non-contiguous tensor (every other slot of a wider buffer)."""
    if t.dim() == 0 or t.numel() <= 1:
        return t
    wide = torch.zeros(*t.shape, 2, dtype=t.dtype, device=t.device)
    view = wide[..., 0]
    view.copy_(t)
    return view


class TorchProblem:
    """``fn(*inputs)`` at one point, with ``checked`` input indices (see module doc)."""

    def __init__(self, fn, inputs, checked, names, *, label=None, nondet_tol=0.0,
                 check_grad_dtypes=False, noncontiguous_g=False, frozen=()):
        self.fn = fn
        self.frozen = tuple(frozen)      # a module's parameters left out: requires_grad=False
        self.inputs = tuple(inputs)
        self.checked = list(checked)
        self.names = tuple(names)
        self.argnames = tuple(self.names[i] for i in self.checked)
        self.label = label or function_label(fn)
        self.nondet_tol = float(nondet_tol)
        self.check_grad_dtypes = bool(check_grad_dtypes)
        self.noncontiguous_g = bool(noncontiguous_g)
        self.missing: set = set()        # gradients torch's graph did not reach (None)
        self.disconnected: set = set()   # order 2: backward results cut from the graph
        self.once_differentiable = False   # order 2: the cut comes from that decorator
        self.nondeterminism = 0.0
        self.no_tangent: set = set()     # forward mode: outputs forward AD gave no tangent
        leaves = self._leaves(requires_grad=True)
        outs = as_tuple(self._call(leaves))
        self.outputs = differentiable_outputs(outs, self.label)
        self.n_outputs_all = len(outs)
        self.out_like = [outs[i].detach()[:0] if outs[i].dim() else outs[i].detach()
                         for i in self.outputs]
        self.out_shapes = [tuple(outs[i].shape) for i in self.outputs]
        self.point = tuple(to_array(self.inputs[i]) for i in self.checked)

    # ------------------------------------------------------------------ calls

    def _leaves(self, arrays=None, *, requires_grad=False):
        out = []
        for k, i in enumerate(self.checked):
            like = self.inputs[i]
            if arrays is None:
                out.append(like.detach().clone().requires_grad_(requires_grad))
            else:
                out.append(to_tensor(arrays[k], like, requires_grad=requires_grad))
        return out

    def _call(self, leaves):
        full = list(self.inputs)
        for i, t in zip(self.checked, leaves):
            full[i] = t
        try:
            return self.fn(*full)
        except Exception as exc:
            raise UserRaised(f"{self.label} raised {type(exc).__name__}: "
                             f"{_first_line(exc)}{_low_precision_hint(exc, leaves)}") from exc

    def _selected(self, outs):
        outs = as_tuple(outs)
        if len(outs) != self.n_outputs_all:
            raise UserCodeError(f"{self.label} returned {len(outs)} outputs at one point and "
                                f"{self.n_outputs_all} at another")
        return [outs[i] for i in self.outputs]

    def _g_tensors(self, g_arrays, *, requires_grad):
        gs = []
        for a, like in zip(g_arrays, self.out_like):
            t = to_tensor(a, like)
            if self.noncontiguous_g:
                t = _noncontiguous(t)
            gs.append(t.requires_grad_(requires_grad))
        return gs

    def _grads(self, sel, leaves, gs, *, create_graph, what):
        try:
            return torch.autograd.grad(sel, leaves, gs, create_graph=create_graph,
                                       allow_unused=True)
        except Exception as exc:
            message = _backward_failure(self.label, exc, create_graph, what) + \
                _low_precision_hint(exc, leaves)
            # the backward raised on its own (not a known way of breaking double backward)
            error = UserRaised if message.startswith(f"{what} of ") else UserCodeError
            raise error(message) from exc

    def _zeros_for_missing(self, grads, likes, names):
        out = []
        for g, like, name in zip(grads, likes, names):
            if g is None:
                self.missing.add(name)
                out.append(np.zeros(tuple(like.shape), dtype=numpy_dtype(like)))
            else:
                out.append(to_array(g))
        return out

    # ------------------------------------------------------------------ order 1

    def forward(self, *arrays):
        with torch.no_grad():
            outs = self._selected(self._call(self._leaves(arrays)))
        return pack([to_array(o) for o in outs])

    def _backward_once(self, cotangent, arrays):
        leaves = self._leaves(arrays, requires_grad=True)
        with torch.enable_grad():
            sel = self._selected(self._call(leaves))
            pieces = unpack(cotangent, self.out_shapes)
            gs = [to_tensor(p, like) for p, like in zip(pieces, self.out_like)]
            grads = self._grads(sel, leaves, gs, create_graph=False, what="the backward")
        if self.check_grad_dtypes:
            for g, leaf, name in zip(grads, leaves, self.argnames):
                if g is not None and g.dtype != leaf.dtype:
                    raise UserCodeError(f"the backward of {self.label} returned a {g.dtype} "
                                        f"gradient for {name!r}, which is {leaf.dtype} "
                                        f"(check_grad_dtypes=True)")
        return self._zeros_for_missing(grads, leaves, self.argnames)

    def backward(self, cotangent, *arrays):
        first = self._backward_once(cotangent, arrays)
        again = self._backward_once(cotangent, arrays)
        worst, problem = check_nondeterminism(first, again, self.argnames, self.nondet_tol,
                                              max(np.size(a) for a in (cotangent, *arrays)))
        self.nondeterminism = max(self.nondeterminism, worst)
        if problem:
            raise UserCodeError(f"{self.label}: {problem}")
        # an undefined gradient goes to the checker as None: a zero gradient, which it
        # checks as zeros and reports as not returned (the rule of check_vjp)
        return tuple(None if name in self.missing else g
                     for g, name in zip(first, self.argnames))

    def _dual(self, arrays, tangents, likes):
        return [fwAD.make_dual(to_tensor(a, like), to_tensor(t, like))
                for a, t, like in zip(arrays, tangents, likes)]

    def _tangents_of(self, outs, names):
        out = []
        for o, name in zip(outs, names):
            t = fwAD.unpack_dual(o).tangent
            if t is None:
                self.no_tangent.add(name)
                out.append(np.zeros(tuple(o.shape), dtype=numpy_dtype(o)))
            else:
                out.append(to_array(t))
        return out

    def _forward_failure(self, exc, what):
        msg = _first_line(exc.__cause__ or exc)
        hint = (" (an autograd.Function needs a jvp staticmethod for forward mode; leave "
                "forward mode out -- modes=('rev',), check_forward_ad=False, "
                "check_fwd_over_rev=False -- to check the backward alone)"
                if "jvp" in msg else "")
        return UserCodeError(f"forward AD (torch.autograd.forward_ad) through {what} "
                             f"failed: {msg}{hint}")

    def tangent(self, tangents, *arrays):
        likes = [self.inputs[i] for i in self.checked]
        try:
            with fwAD.dual_level():
                outs = self._selected(self._call(self._dual(arrays, tangents, likes)))
                names = tuple(f"output {i}" for i in self.outputs)
                return pack(self._tangents_of(outs, names))
        except UserCodeError as exc:
            raise self._forward_failure(exc, self.label) from exc
        except Exception as exc:
            raise self._forward_failure(exc, self.label) from exc

    # ------------------------------------------------------------------ order 2

    def draw_g(self, seed, grad_outputs=None):
        """The cotangents ``g`` of the second-order point: given, or seeded normals."""
        if grad_outputs is not None:
            given = as_tuple(grad_outputs)
            if len(given) != len(self.outputs) or not all(isinstance(g, torch.Tensor)
                                                          for g in given):
                raise ConfigurationError(
                    f"grad_outputs must be {len(self.outputs)} tensor(s), one per output that "
                    f"requires grad, of shapes {self.out_shapes}; got {len(given)} value(s)")
            for g, shape in zip(given, self.out_shapes):
                if tuple(g.shape) != shape:
                    raise ConfigurationError(f"grad_outputs has a tensor of shape "
                                             f"{tuple(g.shape)} where the output has {shape}")
            return tuple(to_array(g.detach().to(like.dtype))
                         for g, like in zip(given, self.out_like))
        rng = np.random.default_rng([seed, 2])
        return tuple(rng.standard_normal(shape).astype(numpy_dtype(like))
                     for shape, like in zip(self.out_shapes, self.out_like))

    def second(self, *arrays):
        k = len(self.checked)
        leaves = self._leaves(arrays[:k], requires_grad=True)
        with torch.enable_grad():
            sel = self._selected(self._call(leaves))
            gs = self._g_tensors(arrays[k:], requires_grad=False)
            grads = self._grads(sel, leaves, gs, create_graph=False, what="the backward")
        return pack(self._zeros_for_missing(grads, leaves, self.argnames))

    def second_vjp(self, cotangent, *arrays):
        k = len(self.checked)
        leaves = self._leaves(arrays[:k], requires_grad=True)
        with torch.enable_grad():
            sel = self._selected(self._call(leaves))
            gs = self._g_tensors(arrays[k:], requires_grad=True)
            grads = self._grads(sel, leaves, gs, create_graph=True,
                                what="the backward, building a graph for a second derivative "
                                     "(create_graph=True)")
            pieces = unpack(cotangent, [tuple(t.shape) for t in leaves])
            live = []
            wrt = [*leaves, *gs]
            for j, (g, name) in enumerate(zip(grads, self.argnames)):
                if g is None:
                    continue
                reaches, once = _graph_reaches(g, wrt)
                if reaches:
                    live.append(j)
                else:
                    self.disconnected.add(name)
                    self.once_differentiable |= once
            if live:
                try:
                    second = torch.autograd.grad(
                        [grads[j] for j in live], wrt,
                        [to_tensor(pieces[j], grads[j]) for j in live], allow_unused=True)
                except Exception as exc:
                    raise UserCodeError(_double_backward_failure(self.label, exc)) from exc
            else:
                second = (None,) * len(wrt)
        out = []
        for s, t in zip(second, wrt):
            out.append(np.zeros(tuple(t.shape), dtype=numpy_dtype(t)) if s is None
                       else to_array(s))
        return tuple(out)

    def second_jvp(self, tangents, *arrays):
        """Forward mode through the backward: the tangent of ``backward(g, x)``."""
        k = len(self.checked)
        likes = [self.inputs[i] for i in self.checked] + list(self.out_like)
        try:
            with fwAD.dual_level():
                duals = self._dual(arrays, tangents, likes)
                leaves = [d.requires_grad_() for d in duals[:k]]
                with torch.enable_grad():
                    sel = self._selected(self._call(leaves))
                    grads = self._grads(sel, leaves, duals[k:], create_graph=True,
                                        what="the backward, building a graph for forward "
                                             "mode through it")
                grads = [torch.zeros_like(leaf) if g is None else g
                         for g, leaf in zip(grads, leaves)]
                return pack(self._tangents_of(grads, self.argnames))
        except UserCodeError as exc:
            raise self._forward_failure(exc, f"the backward of {self.label}") from exc
        except Exception as exc:
            raise self._forward_failure(exc, f"the backward of {self.label}") from exc

    # ------------------------------------------------------------------ notes

    def unchecked_note(self) -> str:
        """What was left out for want of ``requires_grad`` (nothing passes by omission):
        the floating inputs not marked beside marked ones, a module's frozen parameters."""
        inputs = [self.names[i] for i, t in enumerate(self.inputs)
                  if i not in self.checked and isinstance(t, torch.Tensor)
                  and t.is_floating_point() and not t.requires_grad]
        parts = []
        for what, names in (("input", inputs), ("parameter", self.frozen)):
            if names:
                many = len(names) > 1
                parts.append(f"{what}{'s' if many else ''} "
                             f"{', '.join(repr(n) for n in names)} "
                             f"{'have' if many else 'has'} requires_grad=False")
        if not parts:
            return ""
        return (f"not checked: {'; '.join(parts)} (only the tensors marked "
                f"requires_grad=True are checked when any is; mark "
                f"{'them' if len(inputs) + len(self.frozen) > 1 else 'it'} to check "
                f"{'their gradients' if len(inputs) + len(self.frozen) > 1 else 'its gradient'})")

    def notes(self, order=1) -> list:
        notes = []
        if self.missing:
            names = ", ".join(repr(n) for n in sorted(self.missing))
            notes.append(f"no gradient for {names} from torch: its graph does not reach it "
                         f"from the outputs (the backward returned None, or the output does "
                         f"not depend on it)")
        if order == 2 and self.disconnected and self.once_differentiable:
            names = ", ".join(repr(n) for n in sorted(self.disconnected))
            notes.append(
                f"the backward of {self.label} is marked @once_differentiable: its result for "
                f"{names} cannot be differentiated again (torch's graph does not lead back to "
                f"the inputs), so torch's double backward gives no second derivatives; "
                f"remove the decorator and write the backward with differentiable torch "
                f"operations")
        elif order == 2 and self.disconnected:
            names = ", ".join(repr(n) for n in sorted(self.disconnected))
            notes.append(
                f"the backward's result for {names} is cut from torch's graph: the backward "
                f"detaches it, leaves torch (.numpy(), .item(), a NumPy computation) or runs "
                f"under torch.no_grad(), so torch's double backward treats it as a constant "
                f"and its second derivatives are zero; write the backward with "
                f"differentiable torch operations")
        if self.no_tangent:
            names = ", ".join(repr(n) for n in sorted(self.no_tangent))
            notes.append(f"forward mode: no tangent for {names}: forward AD does not reach "
                         f"it from the checked inputs (the result is detached, leaves torch "
                         f"or does not depend on them); checked as zero")
        if self.nondet_tol > 0:
            notes.append(f"nondet_tol = {self.nondet_tol:g}: two backward passes differed by "
                         f"up to {self.nondeterminism:.3g}; differences up to nondet_tol are "
                         f"allowed (added to atol)")
        return notes


def _graph_reaches(t, leaves):
    """``(whether t's graph leads back to one of leaves, whether it passes a node that
    refuses differentiation -- the mark of @once_differentiable)``."""
    if not t.requires_grad or t.grad_fn is None:
        return False, False
    found, refuses = graph_reached([t], leaves)
    return bool(found), refuses


def graph_reached(tensors, targets):
    """Indices of ``targets`` (leaf tensors) that the graphs of ``tensors`` lead back to,
    and whether a node on the way refuses differentiation (``@once_differentiable``)."""
    index = {id(t): k for k, t in enumerate(targets)}
    found, seen, refuses = set(), set(), False
    stack = [t.grad_fn for t in tensors if t is not None and t.grad_fn is not None]
    for t in tensors:         # a result that is itself one of the leaves
        if t is not None and id(t) in index:
            found.add(index[id(t)])
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if type(node).__name__ in ("Error", "DelayedError", "DelayedErrorBackward"):
            refuses = True
        variable = getattr(node, "variable", None)
        if variable is not None and id(variable) in index:
            found.add(index[id(variable)])
        stack.extend(fn for fn, _ in node.next_functions)
    return found, refuses


#: How torch says that an operation has no kernel for a dtype on a device.
_NO_KERNEL = ("not implemented for 'Half'", "not implemented for 'BFloat16'",
              "Low precision dtypes not supported", "Unsupported dtype Half",
              "Unsupported dtype BFloat16")


def _low_precision_hint(exc, leaves) -> str:
    """A sentence for an operation torch cannot run in float16 / bfloat16 where the
    checked tensors are of that dtype: gradcheck evaluates the function in its own dtype
    and does not cast it (a cast would check another computation)."""
    msg = str(exc)
    low = sorted({str(t.dtype).removeprefix("torch.") for t in leaves
                  if isinstance(t, torch.Tensor) and t.dtype in (torch.float16, torch.bfloat16)})
    if not low or not any(k in msg for k in _NO_KERNEL):
        return ""
    devices = sorted({t.device.type for t in leaves if isinstance(t, torch.Tensor)})
    return (f" (torch has no {' / '.join(low)} kernel for an operation of it on "
            f"{' / '.join(devices)}; gradcheck runs the function in its inputs' own dtype and "
            f"does not cast them: check it in float32, x.float(), or on a device that has "
            f"that kernel)")


def _first_line(exc) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else "(no message)"


def _backward_failure(label, exc, create_graph, what) -> str:
    msg = _first_line(exc)
    if create_graph and "numpy()" in msg:
        return (f"the backward of {label} leaves torch (it calls .numpy() on a tensor that "
                f"requires grad): its result cannot be differentiated again, so it has no "
                f"second-order derivative to check; write the backward with torch "
                f"operations (torch said: {msg})")
    return f"{what} of {label} raised {type(exc).__name__}: {msg}"


def _double_backward_failure(label, exc) -> str:
    msg = _first_line(exc)
    if "once_differentiable" in msg:
        return (f"the backward of {label} is marked @once_differentiable: torch cannot "
                f"differentiate it again, so it has no second-order derivative to check; "
                f"remove the decorator and write the backward with differentiable torch "
                f"operations (torch said: {msg})")
    return (f"torch's double backward of {label} (differentiating its backward again) raised "
            f"{type(exc).__name__}: {msg}")
