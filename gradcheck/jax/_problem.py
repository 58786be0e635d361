"""A JAX function seen by the checker: its maps' values, VJPs and JVPs on arrays.

The arguments may be pytrees: their floating leaves are the checked arguments, named
by their path (``params['w']``); other leaves pass through. The outputs may be a pytree
too: its floating leaves are packed into one array (:func:`gradcheck._adapter.pack`).
The numerical side evaluates ``f`` on JAX arrays of each leaf's own dtype, placed where
the leaf lives (its sharding). Three maps are checked (:meth:`JaxProblem.map`): ``f``
itself (order 1), and for the second order the backward's map ``(x, g) -> vjp(g)`` and
the JVP's map ``(x, v) -> J v``; each offers the checker its value, its VJP
(``jax.vjp``, reverse mode) and its JVP (``jax.jvp``, forward mode) -- so forward over
forward, reverse over forward, forward over reverse and reverse over reverse are the
four pairs of a map and a mode.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np

from gradcheck._adapter import pack, unpack
from gradcheck._errors import ConfigurationError, UserCodeError

__all__ = ["JaxProblem"]

#: The dtypes whose gradients the checker judges: float16 and bfloat16 (JAX's bfloat16 is
#: ml_dtypes' type, a JAX dependency, which NumPy arrays of the checker carry) computed in
#: their own precision, with steps and tolerances from their own resolution, as float32
#: and float64 are.
SUPPORTED = (np.dtype(np.float16), np.dtype(jnp.bfloat16), np.dtype(np.float32),
             np.dtype(np.float64))


def _label(f) -> str:
    return getattr(f, "__name__", None) or type(f).__name__


def _arg_names(f, n):
    try:
        params = list(inspect.signature(f).parameters.values())
    except (TypeError, ValueError):
        params = []
    names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    names = names[:n] + [f"arg{i}" for i in range(len(names), n)]
    return names if len(set(names)) == n else [f"arg{i}" for i in range(n)]


def _first_line(exc, *, clause=False) -> str:
    """The first line of ``exc``'s message; with ``clause``, without its closing full
    stop (the sentence goes on after it)."""
    text = str(exc).strip().splitlines()
    line = text[0] if text else "(no message)"
    return line.rstrip(".") if clause else line


class JaxProblem:
    """``f(*args)`` at one point; its floating leaves are checked."""

    def __init__(self, f, args, *, label=None):
        if not callable(f):
            raise ConfigurationError(f"f must be callable; got {type(f).__name__}")
        if not isinstance(args, (tuple, list)):
            raise ConfigurationError(f"args must be a tuple of arguments (arrays or pytrees "
                                     f"of arrays); for one argument pass (x,); got "
                                     f"{type(args).__name__}")
        self.f = f
        self._jitted = {}
        self.label = label or _label(f)
        flat, self.treedef = jax.tree_util.tree_flatten_with_path(tuple(args))
        self.leaves = [leaf for _, leaf in flat]
        top = _arg_names(f, len(args))
        self.checked, names, self.likes = [], [], []
        for i, (path, leaf) in enumerate(flat):
            arr = jnp.asarray(leaf) if _is_arraylike(leaf) else None
            if arr is None or not jnp.issubdtype(arr.dtype, jnp.inexact):
                continue
            name = top[path[0].idx] + jax.tree_util.keystr(path[1:])
            if jnp.issubdtype(arr.dtype, jnp.complexfloating):
                raise ConfigurationError(f"argument {name} is complex ({arr.dtype}); real "
                                         f"arguments are checked: pass real and imaginary "
                                         f"parts as two arrays")
            if np.dtype(arr.dtype) not in SUPPORTED:
                raise ConfigurationError(f"argument {name} has dtype {arr.dtype}; gradients "
                                         f"are checked in float16, bfloat16, float32 or "
                                         f"float64")
            if not bool(jnp.all(jnp.isfinite(arr))):
                raise ConfigurationError(f"argument {name} contains NaN or infinity; a "
                                         f"gradient check needs finite inputs")
            self.checked.append(i)
            names.append(name)
            self.likes.append(arr)
        if not self.checked:
            raise ConfigurationError("no floating-point array among args: nothing to check")
        self.argnames = tuple(names)
        self.point = tuple(np.asarray(a) for a in self.likes)
        out = self._outputs(self._call(self.likes))
        self.out_dtypes = [np.dtype(o.dtype) for o in out]
        self.out_shapes = [tuple(o.shape) for o in out]

    # ------------------------------------------------------------------ calls

    def _args(self, checked):
        leaves = list(self.leaves)
        for i, v in zip(self.checked, checked):
            leaves[i] = v
        return jax.tree_util.tree_unflatten(self.treedef, leaves)

    def _call(self, checked):
        try:
            return self.f(*self._args(checked))
        except Exception as exc:
            raise UserCodeError(f"{self.label} raised {type(exc).__name__}: "
                                f"{_first_line(exc)}") from exc

    def _outputs(self, out):
        leaves = jax.tree_util.tree_leaves(out)
        chosen = [o for o in leaves if _is_arraylike(o)
                  and jnp.issubdtype(jnp.asarray(o).dtype, jnp.floating)]
        if not chosen:
            raise UserCodeError(f"{self.label} returned no floating-point array")
        return [jnp.asarray(o) for o in chosen]

    def _selected(self, *checked):
        return tuple(self._outputs(self._call(checked)))

    # ------------------------------------------------------------------ the maps

    def _compiled(self, key, fn, args):
        """``fn(*args)``, compiled with ``jax.jit`` when ``f`` allows it.

        The numerical side calls ``f`` hundreds of times at one shape (forward mode's
        full check calls the JVP once per column); compiled, each call costs microseconds
        instead of one dispatch per operation. A function that cannot be traced (Python
        control flow on values, NumPy inside) runs as it is.
        """
        jitted = self._jitted.get(key)
        if jitted is None:
            jitted = jax.jit(fn)
            try:
                out = jitted(*args)
            except Exception:   # not traceable (or raising): run it as it is
                self._jitted[key] = False
                return fn(*args)
            self._jitted[key] = jitted
            return out
        return jitted(*args) if jitted is not False else fn(*args)

    def draw_g(self, seed):
        """The cotangents of the backward's map: seeded normals, one per output."""
        rng = np.random.default_rng([seed, 2])
        return tuple(rng.standard_normal(s).astype(d)
                     for s, d in zip(self.out_shapes, self.out_dtypes))

    def draw_v(self, seed):
        """The tangents of the JVP's map: seeded normals, one per checked argument."""
        rng = np.random.default_rng([seed, 3])
        return tuple(rng.standard_normal(a.shape).astype(a.dtype) for a in self.point)

    def _backward_map(self, *xs_and_gs):
        k = len(self.checked)
        _, vjp_fn = jax.vjp(self._selected, *xs_and_gs[:k])
        return tuple(vjp_fn(tuple(xs_and_gs[k:])))

    def _tangent_map(self, *xs_and_vs):
        k = len(self.checked)
        _, tangents = jax.jvp(self._selected, tuple(xs_and_vs[:k]), tuple(xs_and_vs[k:]))
        return tuple(tangents)

    def map(self, which: str) -> "JaxMap":
        """``"f"`` (order 1), ``"backward"`` (the map ``(x, g) -> vjp(g)``) or ``"jvp"``
        (the map ``(x, v) -> J v``), as a :class:`JaxMap`."""
        likes = list(self.likes)
        if which == "f":
            return JaxMap(self, which, self._selected, likes, self.label)
        if which == "backward":
            gs = [jnp.zeros(s, d) for s, d in zip(self.out_shapes, self.out_dtypes)]
            return JaxMap(self, which, self._backward_map, likes + gs,
                          f"the backward of {self.label}")
        return JaxMap(self, which, self._tangent_map, likes + likes,
                      f"the JVP of {self.label}")

    # order 1, as check_vjp reads it
    def forward(self, *arrays):
        return self.map("f").value(*arrays)

    def backward(self, cotangent, *arrays):
        return self.map("f").vjp(cotangent, *arrays)


class JaxMap:
    """One map of JAX arrays seen by the checker: its value, VJP and JVP on NumPy arrays.

    ``fn(*arrays) -> tuple of arrays`` (its outputs packed, :func:`gradcheck._adapter.pack`);
    ``likes`` are templates of its arguments (dtype, placement). The VJP is ``jax.vjp``,
    the JVP ``jax.jvp``; what JAX cannot do is a :class:`~gradcheck.UserCodeError` that
    says which derivative of ``what`` failed.
    """

    def __init__(self, problem, key, fn, likes, what):
        self.problem, self.key, self.fn, self.what = problem, key, fn, what
        self.likes = likes

    def _jax(self, arrays):
        out = []
        for a, like in zip(arrays, self.likes):
            a = np.asarray(a)
            if a.dtype.kind == "c":
                raise TypeError("gradcheck.jax evaluates f in its own real dtype; complex "
                                "input is not passed through")
            placed = getattr(like, "sharding", None)
            a = a.astype(like.dtype, copy=False)
            out.append(jax.device_put(a, placed) if placed is not None else jnp.asarray(a))
        return out

    def _fail(self, derivative, exc):
        label = self.problem.label
        if self.key == "f" and derivative == "jax.jvp" and "custom_vjp" in str(exc):
            return (f"jax.jvp of {label} raised {type(exc).__name__}: "
                    f"{_first_line(exc, clause=True)}; a custom_vjp function has no forward "
                    f"mode in JAX: check it with modes=('rev',), or give it a custom_jvp rule")
        if self.key == "f":
            return f"{derivative} of {label} raised {type(exc).__name__}: {_first_line(exc)}"
        what = "backward (VJP)" if self.key == "backward" else "JVP"
        rule = "custom_vjp backward" if self.key == "backward" else "custom_jvp rule"
        return (f"JAX cannot differentiate the {what.split(' ')[0]} of {label} again "
                f"({derivative}: {type(exc).__name__}: {_first_line(exc, clause=True)}); "
                f"a {rule} that leaves JAX (NumPy, a callback) has no second-order "
                f"derivative to check: write it with jax.numpy operations")

    def _run(self, derivative, call):
        try:
            return call()
        except UserCodeError as exc:
            if derivative == "evaluating":
                raise
            # f raised while JAX differentiated it: say which derivative
            raise UserCodeError(self._fail(derivative, exc.__cause__ or exc)) from exc
        except Exception as exc:
            if self.key != "f" and derivative == "evaluating":
                raise UserCodeError(f"the {'backward (VJP)' if self.key == 'backward' else 'JVP'}"
                                    f" of {self.problem.label} raised {type(exc).__name__}: "
                                    f"{_first_line(exc)}") from exc
            raise UserCodeError(self._fail(derivative, exc)) from exc

    def value(self, *arrays):
        outs = self._run("evaluating", lambda: self.problem._compiled(
            ("value", self.key), self.fn, self._jax(arrays)))
        return pack([np.asarray(o) for o in outs])

    def vjp(self, cotangent, *arrays):
        xs = self._jax(arrays)

        def call():
            outs, vjp_fn = jax.vjp(self.fn, *xs)
            shapes = [tuple(o.shape) for o in outs]
            dtypes = [np.dtype(o.dtype) for o in outs]
            cts = tuple(jnp.asarray(p) for p in unpack(cotangent, shapes, dtypes))
            return vjp_fn(cts)

        grads = self._run("jax.vjp", call)
        return tuple(np.asarray(g) for g in grads)

    def jvp(self, tangents, *arrays):
        xs, ts = self._jax(arrays), self._jax(tangents)
        k = len(xs)

        def tangent_out(*both):
            _, out = jax.jvp(self.fn, tuple(both[:k]), tuple(both[k:]))
            return tuple(out)

        outs = self._run("jax.jvp", lambda: self.problem._compiled(
            ("jvp", self.key), tangent_out, [*xs, *ts]))
        return pack([np.asarray(o) for o in outs])


def _is_arraylike(leaf) -> bool:
    return isinstance(leaf, (jax.Array, np.ndarray, np.generic, float, int)) and \
        not isinstance(leaf, bool)
