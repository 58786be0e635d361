"""The text ``gradcheck train`` prints: the run's header, and the closing summary."""

from __future__ import annotations

__all__ = ["header", "summary"]


def header(name, s, n_train, n_test, steps) -> str:
    """One line saying what is trained on what, and when it is checked."""
    every = (f"every {s.check_every} steps, " if s.check_every and s.check_every < steps
             else "")
    return (f"gradcheck train {name}: {s.data} data, {n_train} training / {n_test} test "
            f"samples, batch {s.batch_size}, {s.epochs} epochs ({steps} steps), SGD learning "
            f"rate {s.learning_rate:g} momentum {s.momentum:g}, seed {s.seed}; gradients "
            f"checked at step 0, {every}and at the end ({s.mode} mode, time budget "
            f"{s.time_budget:g} s per tensor)")


def summary(result) -> list[str]:
    """The closing lines: the failing check's report, or the test accuracy; files; notes."""
    lines = []
    failed = result.failed_check
    n = len(result.checks)
    modes = sorted({m for c in result.checks for m in c.modes.values()})
    took = f"{result.elapsed_s:.1f} s, of which checking {result.check_s:.1f} s"
    if failed is not None:
        lines.append(str(failed.report))
        lines.append(f"gradcheck train: FAILED: the gradient check at step {failed.step} "
                     f"(epoch {failed.epoch}, {failed.when}) found a mismatch; training "
                     f"stopped after {result.steps} updates ({took})")
    else:
        hits = round(result.test_accuracy * result.n_test)
        lines.append(f"gradcheck train: PASSED: test accuracy {100 * result.test_accuracy:.1f}% "
                     f"({hits}/{result.n_test}) after {result.steps} updates; all {n} "
                     f"gradient checks passed (tensors checked in {' and '.join(modes)} "
                     f"mode); {took}")
    lines += [f"wrote {path}" for path in result.files]
    lines += [f"note: {note}" for note in result.notes]
    return lines
