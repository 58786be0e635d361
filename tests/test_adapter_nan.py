"""A framework's gradient with NaN: named as the framework's, with its indices.

``jnp.where(x > 0, jnp.sqrt(x), 0)`` is finite everywhere, but its reverse-mode gradient
is ``0 * inf = NaN`` at ``x = 0`` and ``0 * NaN`` where ``x < 0``: the classic where-sqrt
NaN. The drop-in for ``jax.test_util.check_grads`` must raise an ``AssertionError`` (as
JAX's own does on a wrong gradient), and no message may speak of an ``f_vjp`` the user
never wrote.
"""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck import NonFiniteGradientError, UserCodeError

X = [-1.0, 0.0, 0.5, 2.0]       # NaN gradients at indices 0 and 1


def test_jax_check_grads_raises_an_assertion_error_naming_the_indices():
    jnp = pytest.importorskip("jax.numpy", reason="the JAX adapter needs JAX")
    from gradcheck.jax import check_grads

    f = lambda x: jnp.where(x > 0, jnp.sqrt(x), 0.0).sum()    # noqa: E731
    with pytest.raises(AssertionError) as info:
        check_grads(f, (jnp.array(X),), order=1, modes=("rev",))
    err = info.value
    assert isinstance(err, NonFiniteGradientError) and isinstance(err, UserCodeError)
    assert str(err).startswith("the gradient for 'x' from JAX's VJP returned 2 NaN or "
                               "infinite value(s) of 4, at index (0,), (1,)")
    assert "f_vjp" not in str(err)
    assert (err.argname, err.indices, err.count) == ("x", ((0,), (1,)), 2)


def test_torch_adapters_name_torchs_backward():
    torch = pytest.importorskip("torch", reason="the PyTorch adapter needs PyTorch")
    from gradcheck.torch import GradientCheckFailed, check_function, gradcheck

    f = lambda x: torch.where(x > 0, torch.sqrt(x), 0.0).sum()    # noqa: E731
    x = torch.tensor(X, dtype=torch.float64, requires_grad=True)
    with pytest.raises(NonFiniteGradientError, match=r"^the gradient for 'x' from torch's "
                       r"backward \(autograd\) returned 2 NaN .* at index \(0,\), \(1,\)"):
        check_function(f, x, argnames=["x"])
    with pytest.raises(GradientCheckFailed) as info:      # torch's drop-in: a RuntimeError
        gradcheck(f, (x,))
    assert "from torch's backward (autograd)" in str(info.value)
    assert "f_vjp" not in str(info.value)


def test_a_plain_f_vjp_keeps_its_name():
    from gradcheck import check_vjp

    with pytest.raises(NonFiniteGradientError, match=r"^f_vjp's gradient for 'w' returned "
                       r"1 NaN or infinite value\(s\) of 3, at index \(2,\)$"):
        check_vjp(np.sin, lambda g, w: (g * np.array([1.0, 1.0, np.nan]),),
                  (np.array([0.2, 0.5, 1.0]),), argnames=["w"])
