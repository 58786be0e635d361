"""A failing ``check_module`` stack names the submodule its mismatch comes from
(:mod:`gradcheck.torch._culprit`). The bugs are planted by hand in a custom
``autograd.Function`` placed in a known submodule; the expected name is that one."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch", reason="the torch adapter needs torch")

from gradcheck.torch import check_module  # noqa: E402
from gradcheck.torch._culprit import owners  # noqa: E402
from _torch_threads import one_thread  # noqa: E402,F401  (autouse fixture)


class _HalfTanh(torch.autograd.Function):
    """tanh whose backward forgets the square: g (1 - y) where g (1 - y²) belongs."""

    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * (1 - y)


class _Act(torch.nn.Module):
    def forward(self, x):
        return _HalfTanh.apply(x)


class _BadLinear(torch.autograd.Function):
    """x @ w.T whose weight gradient is twice the right one."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return x @ w.T

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return g @ w, 2 * g.T @ x


class _Linear(torch.nn.Module):
    def __init__(self, n):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(n, n, dtype=torch.float64))

    def forward(self, x):
        return _BadLinear.apply(x, self.weight)


class _Block(torch.nn.Module):
    def __init__(self, act):
        super().__init__()
        self.lin = torch.nn.Linear(3, 3).double()
        self.act = act

    def forward(self, x):
        return self.act(self.lin(x))


def _note(report):
    (note,) = [n for n in report.notes if n.startswith("failing: ")]
    return note


def _x():
    return torch.randn(4, 3, dtype=torch.float64)


def test_owners_groups_parameters_by_submodule():
    assert owners(["0.weight", "0.bias", "block.conv.bias", "scale"]) == {
        "0": ["weight", "bias"], "block.conv": ["bias"], "": ["scale"]}


def test_a_wrong_activation_backward_inside_a_block_is_named():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 3).double(), _Block(_Act()),
                              torch.nn.Linear(3, 2).double())
    report = check_module(net, _x())
    assert not report.passed
    # the rows before the activation fail, those after it pass
    failing = {a.name for a in report.arguments if not a.passed}
    assert failing == {"input", "0.weight", "0.bias", "1.lin.weight", "1.lin.bias"}
    note = _note(report)
    assert "the input; 0: weight, bias; 1.lin: weight, bias" in note
    assert "the mismatch comes from '1.act' (_Act)" in note
    assert "every other submodule passes alone" in note


class _Tally(torch.nn.Module):
    """Counts its calls in a buffer, as a batch norm's num_batches_tracked does."""

    def __init__(self):
        super().__init__()
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def forward(self, x):
        self.calls += 1
        return x


def test_a_wrong_weight_gradient_names_its_module_and_leaves_buffers_alone():
    torch.manual_seed(1)
    tally = _Tally()
    net = torch.nn.Sequential(torch.nn.Linear(3, 3).double(), tally, _Linear(3),
                              torch.nn.Tanh())
    report = check_module(net, _x())
    note = _note(report)
    assert "the mismatch comes from '2' (_Linear)" in note and "'weight'" in note
    assert "(likely cause: scaled)" in note
    # the forward run to record each submodule's input left the buffers as they were
    # (check_module itself works on copies of them)
    assert int(tally.calls) == 0


def test_a_bug_between_the_submodules_is_said_to_be_the_stacks_own():
    torch.manual_seed(2)

    class Stack(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Linear(3, 3).double(), torch.nn.Linear(3, 3).double()

        def forward(self, x):
            return self.b(_HalfTanh.apply(self.a(x)))

    report = check_module(Stack(), _x())
    assert not report.passed
    assert "every submodule passes when checked alone" in _note(report)
    assert "Stack's own code" in _note(report)


def test_a_correct_stack_says_nothing_of_culprits():
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Linear(3, 3).double(), torch.nn.Tanh(),
                              torch.nn.Linear(3, 2).double())
    report = check_module(net, _x())
    assert report.passed
    assert not [n for n in report.notes if n.startswith("failing: ")]


def test_a_submodule_that_cannot_run_alone_is_named_so():
    torch.manual_seed(4)

    class NeedsScale(torch.nn.Module):
        def forward(self, x, scale=None):
            return _HalfTanh.apply(x * scale)      # raises without its keyword input

    class Stack(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.act = torch.nn.Linear(3, 3).double(), NeedsScale()

        def forward(self, x):
            return self.act(self.a(x), scale=2.0)

    report = check_module(Stack(), _x())
    assert not report.passed
    note = _note(report)
    assert "not checked alone: 'act' (" in note
    assert "from one that could not be checked alone ('act') or from Stack's own code" in note


def test_a_bug_in_a_blocks_own_code_names_the_block():
    torch.manual_seed(5)

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 3).double()

        def forward(self, x):
            return _HalfTanh.apply(self.lin(x))   # between its children, in its own code

    net = torch.nn.Sequential(torch.nn.Linear(3, 3).double(), Block())
    note = _note(check_module(net, _x()))
    assert "the mismatch comes from '1' (Block)" in note
    assert "while every submodule inside it passes alone (its own code between them)" in note


def test_hooks_on_parameter_tensors_are_said_not_to_be_checked():
    # a hook on a parameter tensor changes what torch.autograd.grad returns for it, but
    # the check differentiates the module called with copies of its parameters: the
    # report must say the hook was left out, not pass silently as if it were checked
    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 2).double()
    layer.weight.register_hook(lambda g: -g)
    report = check_module(layer, torch.randn(4, 3, dtype=torch.float64))
    assert any(n.startswith("weight:") and "not applied" in n for n in report.notes), \
        report.notes
    plain = check_module(torch.nn.Linear(3, 2).double(), torch.randn(4, 3, dtype=torch.float64))
    assert not any("register_hook" in n for n in plain.notes)
