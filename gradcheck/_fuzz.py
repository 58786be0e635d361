"""``gradcheck fuzz``: random layer specs from the public strategies, each one checked.

Hypothesis draws spec documents (the CLI's format) from :mod:`gradcheck.strategies`,
each is validated, built and checked like ``gradcheck check`` would. On the first spec
whose check fails, Hypothesis shrinks it to a minimal failing spec, which is written to
the output directory as TOML, ready for ``gradcheck check``. The run is reproducible:
``--seed`` fixes the draw and no example database is read or written.
"""

from __future__ import annotations

import os
import sys

from gradcheck._errors import ConfigurationError, GradcheckError

__all__ = ["fuzz", "spec_strategy"]


def spec_strategy():
    """The public strategy of spec documents."""
    try:
        from gradcheck import strategies
    except ImportError as exc:
        raise ConfigurationError(
            f"fuzz needs hypothesis and gradcheck.strategies ({exc}); install the strategies "
            f"extra: pip install -e '.[strategies]' in the gradcheck checkout") from None
    return strategies.spec_documents()


class _Failure(AssertionError):
    pass


def _check_document(document):
    """Validate, build and check one drawn document; raise _Failure on any failure."""
    from gradcheck.spec import build, check_built, parse_spec

    try:
        spec = parse_spec(document, source="<drawn spec>")
        report = check_built(build(spec))
    except GradcheckError as exc:
        raise _Failure(f"{type(exc).__name__}: {exc}") from exc
    if not report.passed:
        worst = "; ".join(a.summary() + (f" (likely cause: {a.diagnosis.cause})"
                                         if a.diagnosis is not None else "")
                          for a in report.failures)
        raise _Failure(f"gradient mismatch: {worst}")


def fuzz(*, examples: int = 20, seed: int = 0, out: str = "gradcheck-failures",
         quiet: bool = False, strategy=None, stream=None) -> int:
    """Check ``examples`` drawn specs; write the shrunk failing one to ``out``.

    Returns the exit status: 0 when every drawn spec passed, 1 when one failed.
    """
    try:
        from hypothesis import HealthCheck, Phase, given, settings
        from hypothesis import seed as hypothesis_seed
    except ImportError:
        raise ConfigurationError(
            "fuzz needs hypothesis, which is not installed; install the strategies extra: "
            "pip install -e '.[strategies]' in the gradcheck checkout") from None
    from gradcheck.spec import parse_spec

    stream = stream if stream is not None else sys.stdout
    strategy = strategy if strategy is not None else spec_strategy()
    state = {"last": None, "message": ""}

    @hypothesis_seed(seed)
    @settings(max_examples=examples, database=None, deadline=None, derandomize=False,
              phases=(Phase.generate, Phase.shrink), report_multiple_bugs=False,
              suppress_health_check=list(HealthCheck), print_blob=False)
    @given(strategy)
    def run(document):
        try:
            _check_document(document)
        except _Failure as exc:
            state["last"], state["message"] = document, str(exc)
            raise

    try:
        run()
    except _Failure:
        pass
    if state["last"] is None:   # nothing to write: no (empty) output directory either
        if not quiet:
            stream.write(f"gradcheck fuzz: {examples} drawn specs, all passed (seed {seed})\n")
        else:
            stream.write(f"gradcheck fuzz: all {examples} passed\n")
        return 0
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"fuzz-seed{seed}.toml")
    document = state["last"]
    try:
        text = parse_spec(document, source=path).to_toml()
    except GradcheckError:  # the strategy drew an invalid document: keep it as drawn
        from gradcheck.spec._toml import dumps

        text = dumps(document)
    header = ("# Shrunk failing spec found by gradcheck fuzz --seed {seed}\n"
              "# {message}\n").format(seed=seed, message=" ".join(state["message"].split()))
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(header + text)
    stream.write(f"gradcheck fuzz: a drawn spec FAILED: {' '.join(state['message'].split())}\n"
                 f"shrunk spec written to {path}; rerun it with: gradcheck check {path}\n")
    return 1
