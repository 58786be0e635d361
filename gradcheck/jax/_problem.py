"""A JAX function seen by the checker: ``f`` and ``f_vjp`` on arrays, orders 1 and 2.

The arguments may be pytrees: their floating leaves are the checked arguments, named
by their path (``params['w']``); other leaves pass through. The outputs may be a pytree
too: its floating leaves are packed into one array (:func:`gradcheck._adapter.pack`).
The numerical side evaluates ``f`` on JAX arrays of each leaf's own dtype, placed where
the leaf lives (its sharding); the analytic side is ``jax.vjp`` with the checker's
cotangent, and for the second order ``jax.vjp`` of the map ``(x, g) -> vjp(g)``.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np

from gradcheck._adapter import pack, unpack
from gradcheck._errors import ConfigurationError, UserCodeError

__all__ = ["JaxProblem"]

SUPPORTED = (np.dtype(np.float32), np.dtype(np.float64))


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


def _first_line(exc) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else "(no message)"


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
                                         f"are checked in float32 or float64")
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

    # ------------------------------------------------------------------ order 1

    def _compiled(self, key, fn, args):
        """``fn(*args)``, compiled with ``jax.jit`` when ``f`` allows it.

        The numerical side calls ``f`` hundreds of times at one shape; compiled, each call
        costs microseconds instead of one dispatch per operation. A function that cannot
        be traced (Python control flow on values, NumPy inside) runs as it is.
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

    def forward(self, *arrays):
        outs = self._compiled("forward", self._selected, self._jax(arrays))
        return pack([np.asarray(o) for o in outs])

    def _vjp(self, checked):
        try:
            return jax.vjp(self._selected, *checked)
        except UserCodeError:
            raise
        except Exception as exc:
            raise UserCodeError(f"jax.vjp of {self.label} raised {type(exc).__name__}: "
                                f"{_first_line(exc)}") from exc

    def _cotangents(self, vector, shapes, dtypes):
        return tuple(jnp.asarray(p) for p in unpack(vector, shapes, dtypes))

    def backward(self, cotangent, *arrays):
        _, vjp_fn = self._vjp(self._jax(arrays))
        try:
            grads = vjp_fn(self._cotangents(cotangent, self.out_shapes, self.out_dtypes))
        except Exception as exc:
            raise UserCodeError(f"the backward (VJP) of {self.label} raised "
                                f"{type(exc).__name__}: {_first_line(exc)}") from exc
        return tuple(np.asarray(g) for g in grads)

    # ------------------------------------------------------------------ order 2

    def draw_g(self, seed):
        rng = np.random.default_rng([seed, 2])
        return tuple(rng.standard_normal(s).astype(d)
                     for s, d in zip(self.out_shapes, self.out_dtypes))

    def _backward_map(self, *xs_and_gs):
        k = len(self.checked)
        _, vjp_fn = jax.vjp(self._selected, *xs_and_gs[:k])
        return tuple(vjp_fn(tuple(xs_and_gs[k:])))

    def second(self, *arrays):
        k = len(self.checked)
        xs = self._jax(arrays[:k])
        gs = [jnp.asarray(np.asarray(g).astype(d, copy=False))
              for g, d in zip(arrays[k:], self.out_dtypes)]
        try:
            grads = self._compiled("second", self._backward_map, [*xs, *gs])
        except UserCodeError:
            raise
        except Exception as exc:
            raise UserCodeError(f"the backward (VJP) of {self.label} raised "
                                f"{type(exc).__name__}: {_first_line(exc)}") from exc
        return pack([np.asarray(g) for g in grads])

    def second_vjp(self, cotangent, *arrays):
        k = len(self.checked)
        xs = self._jax(arrays[:k])
        gs = [jnp.asarray(np.asarray(g).astype(d, copy=False))
              for g, d in zip(arrays[k:], self.out_dtypes)]
        try:
            grads, vjp2 = jax.vjp(self._backward_map, *xs, *gs)
            shapes = [tuple(g.shape) for g in grads]
            dtypes = [np.dtype(g.dtype) for g in grads]
            second = vjp2(self._cotangents(cotangent, shapes, dtypes))
        except UserCodeError:
            raise
        except Exception as exc:
            raise UserCodeError(
                f"JAX cannot differentiate the backward of {self.label} again "
                f"({type(exc).__name__}: {_first_line(exc)}); a custom_vjp backward that "
                f"leaves JAX (NumPy, a callback) has no second-order derivative to check: "
                f"write it with jax.numpy operations") from exc
        return tuple(np.asarray(s) for s in second)


def _is_arraylike(leaf) -> bool:
    return isinstance(leaf, (jax.Array, np.ndarray, np.generic, float, int)) and \
        not isinstance(leaf, bool)
