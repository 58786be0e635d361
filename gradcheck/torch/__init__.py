"""Check a PyTorch layer where it lives: ``autograd.Function``, custom op, ``nn.Module``.

Needs PyTorch (``pip install -e '.[torch]'`` in the checkout: ``torch==2.13.0``);
``import gradcheck`` never imports it.

* :func:`check_function` / :func:`check_module` return the checker's
  :class:`~gradcheck.CheckReport` (the verdict, the worst element, the likely cause);
* :func:`gradcheck` / :func:`gradgradcheck` are drop-ins for
  ``torch.autograd.gradcheck`` / ``gradgradcheck``: they accept torch's keyword arguments
  and return ``True`` or raise :class:`GradientCheckFailed` whose message is the report.

The adapter only translates: arrays from the checker become tensors of the input's dtype
on the input's device, outputs come back as arrays, and the analytic side is
``torch.autograd.grad`` with the checker's seeded cotangent (for ``order=2``, torch's
double backward). The verdict is :func:`gradcheck.check_vjp`'s. A second-order row that
fails because the backward cuts its argument from torch's graph (``.detach()``, a
``.numpy()`` round trip, ``torch.no_grad()``, ``@once_differentiable``, a value the forward
computed) is diagnosed ``double_backward_cut``, its sentence naming the argument and how
(``docs/diagnosis.md``).
"""

from __future__ import annotations

try:
    import torch as _torch  # noqa: F401  (absolute import: the real PyTorch)
except ImportError as _exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError("gradcheck.torch needs PyTorch, which is not installed: "
                      "pip install torch==2.13.0 (or pip install -e '.[torch]' in the "
                      "gradcheck checkout)") from _exc

from gradcheck.torch._check import check_function, check_module
from gradcheck.torch._dropin import (GradientCheckFailed, UncheckedWarning, gradcheck,
                                     gradgradcheck)

__all__ = ["check_function", "check_module", "gradcheck", "gradgradcheck",
           "GradientCheckFailed", "UncheckedWarning"]
