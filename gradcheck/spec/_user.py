"""``type = "python"`` layers: a user's own layer object behind the layer protocol.

The target ``"package.module:Object"`` names an object with

* ``forward(x, *params) -> y`` and
* ``backward(grad_y, x, *params) -> (grad_x, *grad_params)``

-- the contract of :func:`gradcheck.check_vjp` and the shape of a
``torch.autograd.Function``. A class is instantiated with the layer's ``options`` as
keyword arguments; any other object (a module, an instance) is used as it is. The current
directory is put on ``sys.path`` while the module is imported, as pytest users expect.

Failures are told apart:

* the target cannot be imported, has no such object, or lacks ``forward``/``backward``:
  :class:`~gradcheck.SpecError` (bad input, exit status 2);
* the user's code raises, returns something that is not an array of numbers, an array of
  the wrong shape, or NaN/inf: :class:`~gradcheck.UserCodeError` (the code under test is
  broken, exit status 1), naming the method and what it returned.
"""

from __future__ import annotations

import importlib
import math
import os
import re
import sys

import numpy as np

from gradcheck._errors import SpecError, UserCodeError
from gradcheck.ops._patterns import LayerBase
from gradcheck.spec._values import show, suggest

__all__ = ["UserLayer", "resolve_target", "check_target_syntax"]

_TARGET = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_CONTRACT = ("forward(x, *params) -> y and backward(grad_y, x, *params) -> "
             "(grad_x, *grad_params)")


def check_target_syntax(ctx, key: str, target: str) -> None:
    if not _TARGET.match(target):
        raise ctx.expected(key, '"package.module:Object" (a module path, a colon, then the '
                                'object\'s name)', target)


def _import(module_name: str, fail):
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise fail(f"cannot import module {show(module_name)}: no module named "
                       f"{show(missing)} on the import path (the current directory {cwd} "
                       f"is on it); run gradcheck from the directory that holds it") from None
        raise fail(f"importing module {show(module_name)} failed: {exc}") from None
    except SyntaxError as exc:
        raise fail(f"importing module {show(module_name)} failed: SyntaxError: {exc.msg} "
                   f"({os.path.basename(exc.filename or '?')}, line {exc.lineno})") from None
    except Exception as exc:
        raise fail(f"importing module {show(module_name)} raised {type(exc).__name__}: "
                   f"{_first_line(exc)}") from None
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def _first_line(exc) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else "(no message)"


def resolve_target(target: str, *, options=None, source="<spec>", key="target"):
    """Import ``"package.module:Object"``, instantiate a class, check the contract.

    Returns the object whose ``forward``/``backward`` will be called. Raises
    :class:`~gradcheck.SpecError` (``FILE: KEY: ...``) when that is impossible.
    """
    def fail(message):
        return SpecError(f"{source}: {key}: {message}", spec=source, key=key)

    module_name, _, attr_path = target.partition(":")
    obj = _import(module_name, fail)
    done = []
    for part in attr_path.split("."):
        where = (f"module {show(module_name)}" if not done
                 else show(f"{module_name}:{'.'.join(done)}"))
        if not hasattr(obj, part) and not done:   # "pkg:module": a submodule, imported
            try:
                import importlib

                obj = importlib.import_module(f"{module_name}.{part}")
                done.append(part)
                continue
            except ImportError:
                pass
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            raise fail(f"{where} has no attribute {show(part)}; {suggest(part, names)}it "
                       f"defines: {', '.join(names[:12]) or 'nothing public'}")
        obj = getattr(obj, part)
        done.append(part)
    options = dict(options or {})
    if isinstance(obj, type):
        try:
            obj = obj(**options)
        except Exception as exc:
            raise fail(f"{attr_path}(**options) raised {type(exc).__name__}: "
                       f"{_first_line(exc)}; check the layer's options table") from None
    elif options:
        raise fail(f"{attr_path} is not a class, so it takes no options; got options "
                   f"{show(options)}")
    missing = [m for m in ("forward", "backward") if not callable(getattr(obj, m, None))]
    if missing:
        raise fail(f"{attr_path} has no {' or '.join(missing)} method; a python layer needs "
                   f"{_CONTRACT}")
    return obj


class UserLayer(LayerBase):
    """A user's layer object adapted to the layer protocol of :mod:`gradcheck.ops.layers`.

    Parameters
    ----------
    target : str
        ``"package.module:Object"``, for messages and ``to_dict``.
    obj : object
        What :func:`resolve_target` returned.
    params : dict
        Parameter name -> shape, in the order ``forward``/``backward`` take them.
    options : dict
        The constructor's keyword arguments (kept for ``to_dict``).
    output_shape : tuple, optional
        The output shape for the spec's input (the batch axis follows the input's); if not
        given, it is found by calling ``forward`` once on a seeded random input.
    """

    kind = "python"
    #: The numerical differentiator may not push complex numbers through user code.
    complex_safe = False

    def __init__(self, target, obj, params, *, options=None, output_shape=None,
                 dtype="float64"):
        self.target = target
        self.obj = obj
        self.params = {k: tuple(v) for k, v in dict(params).items()}
        self.options = dict(options or {})
        self.fixed_output_shape = None if output_shape is None else tuple(output_shape)
        self.dtype = np.dtype(dtype)
        self._probed = {}

    @property
    def name(self) -> str:
        return self.target

    def _label(self) -> str:
        return self.target

    def to_dict(self) -> dict:
        d = {"type": "python", "target": self.target,
             "params": {k: list(v) for k, v in self.params.items()}, "options": self.options}
        if self.fixed_output_shape is not None:
            d["output_shape"] = list(self.fixed_output_shape)
        return d

    # ------------------------------------------------------------------ shapes

    def param_shapes(self, input_shape) -> dict:
        return dict(self.params)

    def output_shape(self, input_shape) -> tuple:
        input_shape = tuple(int(n) for n in input_shape)
        if self.fixed_output_shape is not None:
            # the batch axis follows the input (a checker may stack perturbed copies)
            return (input_shape[0],) + self.fixed_output_shape[1:]
        return self.probed_output_shape(input_shape)

    def probed_output_shape(self, input_shape) -> tuple:
        """The shape ``forward`` returns for a seeded random input of ``input_shape``."""
        input_shape = tuple(int(n) for n in input_shape)
        if input_shape not in self._probed:
            rng = np.random.default_rng(0)
            x = rng.standard_normal(input_shape).astype(self.dtype)
            params = self.init_params(input_shape, rng=rng, dtype=self.dtype).values()
            self._probed[input_shape] = self._call_forward(x, tuple(params), None).shape
        return self._probed[input_shape]

    def init_params(self, input_shape, *, rng, dtype=np.float64) -> dict:
        """``N(0, 1/fan_in)``, ``fan_in = prod(shape[1:])``, for 2+ dims; else ``N(0, 1/4)``."""
        out = {}
        for pname, shape in self.params.items():
            scale = 1.0 / math.sqrt(math.prod(shape[1:])) if len(shape) >= 2 else 0.5
            out[pname] = (rng.standard_normal(shape) * scale).astype(dtype)
        return out

    def pattern(self, input_shape, wrt="x"):
        """Unknown: a user's layer may connect anything to anything."""
        return None

    # ------------------------------------------------------------------ calls

    def _call(self, method, *args):
        try:
            return getattr(self.obj, method)(*args)
        except Exception as exc:
            raise UserCodeError(f"{self.target}.{method} raised {type(exc).__name__}: "
                                f"{_first_line(exc)}") from exc

    def _array(self, value, method, what) -> np.ndarray:
        try:
            arr = np.asarray(value)
        except Exception:
            arr = None
        if arr is None or arr.dtype.kind not in "biufc":
            raise UserCodeError(f"{self.target}.{method} returned {what} that is not an array "
                                f"of numbers (got {type(value).__name__}); expected a NumPy "
                                f"array")
        return arr

    def _finite(self, arr, method, what, inputs):
        if not all(np.all(np.isfinite(a)) for a in inputs):
            return  # the caller passed non-finite values; no claim about the output
        bad = ~np.isfinite(arr)
        if bad.any():
            where = tuple(int(i) for i in np.unravel_index(np.flatnonzero(bad)[0], arr.shape))
            value = arr[where] if arr.ndim else arr
            raise UserCodeError(f"{self.target}.{method} returned {value} in {what} at index "
                                f"{where} ({int(bad.sum())} non-finite of {arr.size}) for "
                                f"finite inputs")

    def _call_forward(self, x, params, expected):
        y = self._array(self._call("forward", x, *params), "forward", "y")
        if expected is not None and y.shape != tuple(expected):
            raise UserCodeError(f"{self.target}.forward returned y of shape {y.shape}; "
                                f"expected {tuple(expected)}")
        self._finite(y, "forward", "y", (x, *params))
        return y

    def forward(self, x, *params) -> np.ndarray:
        x = np.asarray(x)
        self._check_params(x.shape, params, "forward")
        return self._call_forward(x, params, self.output_shape(x.shape))

    def backward(self, grad_y, x, *params) -> tuple:
        x = np.asarray(x)
        self._check_params(x.shape, params, "backward")
        out = self._call("backward", grad_y, x, *params)
        names = ["x", *self.params]
        if isinstance(out, np.ndarray) and len(names) == 1:
            out = (out,)
        if not isinstance(out, (tuple, list)) or len(out) != len(names):
            got = (f"{len(out)} values" if isinstance(out, (tuple, list))
                   else f"a {type(out).__name__}")
            raise UserCodeError(f"{self.target}.backward returned {got}; expected a tuple of "
                                f"{len(names)} arrays ({', '.join('grad_' + n for n in names)})")
        grads = []
        for pname, value, ref in zip(names, out, (x, *params)):
            g = self._array(value, "backward", f"grad_{pname}")
            if g.shape != np.shape(ref):
                raise UserCodeError(f"{self.target}.backward returned grad_{pname} of shape "
                                    f"{g.shape}; expected {np.shape(ref)}, the shape of {pname}")
            self._finite(g, "backward", f"grad_{pname}", (grad_y, x, *params))
            grads.append(g)
        return tuple(grads)
