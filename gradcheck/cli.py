"""The ``gradcheck`` command line: check layer specs, explain the seed, fuzz, train.

A thin layer over the library: parse the arguments, call :mod:`gradcheck.spec` and the
checker, render. Exit status, made for CI:

=========== == ==========================================================================
``OK``       0 every check passed
``MISMATCH`` 1 a gradient mismatch, or a user layer that raised, returned NaN/inf or an
               array of the wrong shape (the code under test is wrong)
``USAGE``    2 bad usage or bad input: a missing, unreadable or invalid spec file, an
               unknown key, a target that cannot be imported, a layer too large for
               memory, ... (one line on stderr naming the file and key). The other
               specs of the run are still checked and reported, but the status stays 2
               even if one of them fails: bad input wins over a mismatch.
``INTERNAL`` 3 a bug in gradcheck itself (the traceback is printed)
=========== == ==========================================================================

Heavy imports (the checker, scipy, hypothesis, matplotlib) happen inside the commands
that need them, so ``gradcheck --help`` and the error paths start fast. ``check --shard
I/N`` (one CI job's share of the specs) and ``-j N`` (worker processes) live in
:mod:`gradcheck._parallel`; both leave the output as a serial run's.
"""

from __future__ import annotations

import argparse
import gc
import math
import re
import sys
import time

from gradcheck._errors import GradcheckError, SpecError, UserCodeError

__all__ = ["main", "OK", "MISMATCH", "USAGE", "INTERNAL", "PIPE_CLOSED"]

OK = 0
MISMATCH = 1
USAGE = 2
INTERNAL = 3
#: stdout's reader closed the pipe before the output was written (128 + SIGPIPE).
PIPE_CLOSED = 141


# --------------------------------------------------------------------------- parser


def _size(text: str) -> int:
    from gradcheck.spec._values import parse_bytes

    try:
        return parse_bytes(int(text) if text.isdigit() else text)
    except ValueError:   # one line naming the option, as _number's (not argparse's style)
        raise GradcheckError(f"--max-memory must be a positive number of bytes such as "
                             f"2000000000 or 2GiB, got {text!r}") from None


#: A token argparse must take as an option's value, not as an option: ``-1``, ``-0.5``
#: (argparse's own rule), and also ``-1e-3``, ``-.5``, ``-2GiB``, ``-inf`` and ``-nan``
#: (no option starts with a digit), so that a negative number reaches the option's range
#: check instead of argparse's "expected one argument".
_NEGATIVE_NUMBER = re.compile(r"^-\.?\d|^-(inf|infinity|nan)$", re.IGNORECASE)


#: argparse's message for a value outside an option's choices.
_INVALID_CHOICE = (r"^argument (?P<option>[^:]+): invalid choice: (?P<got>.+?) "
                   r"\(choose from (?P<choices>.+)\)$")    # compiled on first use


def _terminal_columns() -> int:
    """``shutil.get_terminal_size().columns`` without importing :mod:`shutil` (with the
    compression modules it brings, some 7 million instructions): ``$COLUMNS`` if a
    positive integer, else the width of the terminal on ``sys.__stdout__``, else 80."""
    import os

    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns > 0:
        return columns
    try:
        columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
    except (AttributeError, ValueError, OSError):
        columns = 0
    return columns or 80


class _Formatter(argparse.HelpFormatter):
    """argparse's help formatter, given the width it would compute itself (the terminal's
    less 2): argparse makes one for each argument added and imports :mod:`shutil` to
    find that width."""

    def __init__(self, prog, indent_increment=2, max_help_position=24, width=None,
                 **kwargs):
        if width is None:
            width = _terminal_columns() - 2
        super().__init__(prog, indent_increment, max_help_position, width, **kwargs)


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` (and its subcommands) that reads ``-1e-3`` as a number and
    reports a bad argument in one line, without the multi-line usage."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = _NEGATIVE_NUMBER

    def error(self, message):
        """One line on stderr naming the option (and, for a choice, the valid ones), with
        where to read more; exit status :data:`USAGE`."""
        m = re.match(_INVALID_CHOICE, message)
        if m is not None:
            option = m["option"].split("/")[-1]
            choices = ", ".join(c.strip().strip("'") for c in m["choices"].split(","))
            message = f"{option} must be one of {choices}, got {m['got']}"
        self.exit(USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _shard(text: str):
    from gradcheck._parallel import parse_shard

    return parse_shard(text)


def _number(option: str, kind=float, *, minimum=None, strict=False):
    """The ``type=`` of a numeric option: parse the text, then check its range.

    A bad value raises :class:`GradcheckError` (not argparse's error), so the message is
    one line naming the option: ``--rtol must be >= 0, got -0.001``. Floats must be finite.
    """
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            what = "an int" if kind is int else "a number"
            raise GradcheckError(f"{option} must be {what}, got {text!r}") from None
        if kind is float and not math.isfinite(value):
            raise GradcheckError(f"{option} must be a finite number, got {value!r}")
        if minimum is not None and (value < minimum or (strict and value == minimum)):
            raise GradcheckError(f"{option} must be {'>' if strict else '>='} {minimum}, "
                                 f"got {value!r}")
        return value

    return parse


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser; given a ``command`` (``"check"``, ...), that command's
    alone (the arguments of all four take a few milliseconds to add)."""
    from gradcheck import __version__

    parser = _Parser(
        prog="gradcheck",
        description="Verify convolutional layers' backward passes against numerical "
                    "derivatives.",
        epilog="exit status: 0 all checks pass, 1 a gradient mismatch (or user code that "
               "fails), 2 usage or spec error (even if a check also failed), 3 internal "
               "error")
    parser.add_argument("--version", action="version", version=f"gradcheck {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, add in _COMMANDS.items():
        if command is None or name == command:
            add(sub)
    return parser


def _add_check(sub) -> None:
    check = sub.add_parser(
        "check", help="check every tensor of one or more layer specs",
        description="Check the gradient of every tensor (the input and each layer's "
                    "parameters) of each SPEC file (TOML, JSON or YAML). Without SPEC, "
                    "check a built-in small CNN.")
    check.add_argument("specs", nargs="*", metavar="SPEC", help="spec files (.toml, .json, "
                       ".yaml)")
    out = check.add_argument_group("output")
    out.add_argument("--json", action="store_true",
                     help="print one JSON object on stdout instead of the text report")
    out.add_argument("--junit-xml", metavar="PATH",
                     help="also write a JUnit XML file for CI: one testcase per checked "
                          "tensor and per layer, an error testcase per bad spec")
    out.add_argument("--plot", metavar="DIR", help="write PNG heatmaps and error-vs-step "
                     "curves of failing tensors to DIR (needs matplotlib)")
    verbosity = out.add_mutually_exclusive_group()
    verbosity.add_argument("-q", "--quiet", action="store_true",
                           help="print only what failed (each failing tensor's line and "
                                "cause, the culprit layer, notes) and the summary line; "
                                "no tables")
    verbosity.add_argument("-v", "--verbose", action="store_true",
                           help="print every tensor's worst entry and user tracebacks")
    opts = check.add_argument_group("checker options (override the spec's [check] table)")
    opts.add_argument("--seed", type=_number("--seed", int, minimum=0),
                      help="seed of the data and the checker")
    opts.add_argument("--mode", choices=("full", "sampled", "fast", "auto"),
                      help="full: every element; sampled: a sample of elements plus random "
                           "directions over the rest; fast: random directions; auto: full "
                           "up to the budget, sampled above")
    opts.add_argument("--order", type=int, choices=(1, 2),
                      help="2: also check the backward's own derivatives (every layer a "
                           "PyTorch Function or Module target)")
    opts.add_argument("--rtol", type=_number("--rtol", minimum=0),
                      help="extra relative tolerance")
    opts.add_argument("--atol", type=_number("--atol", minimum=0),
                      help="extra absolute tolerance")
    opts.add_argument("--budget", type=_number("--budget", int, minimum=1),
                      help="largest tensor (elements) checked in full under mode auto")
    opts.add_argument("--time-budget", type=_number("--time-budget", minimum=0, strict=True),
                      metavar="SECONDS",
                      help="under mode auto, a tensor whose full check is predicted to take "
                           "longer is sampled, its sample sized to a quarter of this "
                           "(default 60)")
    opts.add_argument("--max-memory", type=_size, metavar="SIZE",
                      help="refuse specs estimated to need more memory (e.g. 2GiB); "
                           "default: half the available memory")
    running = check.add_argument_group("running (the output is the same as one serial run's)")
    running.add_argument("--shard", type=_shard, metavar="I/N",
                         help="check only this CI job's share of the specs: job I of N "
                              "(1-based); the N jobs together check every spec once")
    running.add_argument("-j", "--jobs", type=_number("-j/--jobs", int, minimum=1), default=1,
                         metavar="N", help="check specs in N processes at once (default 1)")
    check.set_defaults(run=_cmd_check)


def _add_explain(sub) -> None:
    explain = sub.add_parser(
        "explain", help="walk through the seed's 3x3 input / 2x2 kernel example",
        description="Compute each input pixel's error of the seed's example two ways -- as "
                    "the perceptron's sum over shared-weight connections and as the full "
                    "convolution with the rotated kernel -- and show they are equal.")
    explain.add_argument("--convention", choices=("convolution", "correlation"),
                         default="convolution",
                         help="the seed's true convolution (default) or the frameworks' "
                              "cross-correlation")
    explain.add_argument("--json", action="store_true", help="print the numbers as JSON")
    explain.set_defaults(run=_cmd_explain)


def _add_fuzz(sub) -> None:
    fuzz = sub.add_parser(
        "fuzz", help="check random specs drawn by the public strategies",
        description="Draw random layer specs with gradcheck.strategies, check each, and "
                    "write the first failing spec (shrunk) to DIR, ready for gradcheck check.")
    fuzz.add_argument("--examples", type=_number("--examples", int, minimum=1), default=20,
                      metavar="N",
                      help="how many specs to draw (default 20)")
    fuzz.add_argument("--seed", type=_number("--seed", int, minimum=0), default=0,
                      metavar="S",
                      help="seed of the draw (default 0)")
    fuzz.add_argument("--out", metavar="DIR", default="gradcheck-failures",
                      help="where failing specs are written (default gradcheck-failures)")
    fuzz.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    fuzz.set_defaults(run=_cmd_fuzz)


def _add_train(sub) -> None:
    train = sub.add_parser(
        "train", help="train a spec's CNN with the seed's five steps, checking its gradients",
        description="Train SPEC's network (default: a small CNN for the 8x8 digits shipped "
                    "with gradcheck) by SGD with momentum, checking the gradients at the "
                    "current weights on the current batch at the start, every K steps and "
                    "at the end; a failing check stops training (exit status 1).")
    train.add_argument("spec", nargs="?", metavar="SPEC", help="spec file (.toml, .json, .yaml)")
    train.add_argument("--data", choices=("digits", "synthetic"),
                       help="scikit-learn's bundled 8x8 digits (needs the train extra) or a "
                            "generated pattern task (default: [train] data, else digits)")
    train.add_argument("--epochs", type=_number("--epochs", int, minimum=1), metavar="N",
                       help="epochs (default 10)")
    train.add_argument("--check-every", type=_number("--check-every", int, minimum=0), metavar="K",
                       help="check the gradients every K steps (0: only at the start and the "
                            "end; default 100)")
    train.add_argument("--seed", type=_number("--seed", int, minimum=0), metavar="S",
                       help="seed of the split, the batches and the weights (default 0)")
    train.add_argument("--out", metavar="DIR", help="write train.png (needs matplotlib) and "
                       "train.json to DIR")
    train.add_argument("--json", action="store_true",
                       help="print the run as one JSON object on stdout")
    train.add_argument("-q", "--quiet", action="store_true",
                       help="no progress bar, no per-epoch and per-check lines")
    train.add_argument("--mode", choices=("full", "sampled", "fast", "auto"),
                       help="the checker's mode (default: [check] mode, else sampled)")
    train.add_argument("--time-budget",
                       type=_number("--time-budget", minimum=0, strict=True), metavar="SECONDS",
                       help="a sampled tensor's sample is sized to a quarter of this; under "
                            "mode auto, a tensor whose full check is predicted to take "
                            "longer is sampled (default 5)")
    train.add_argument("--max-memory", type=_size, metavar="SIZE",
                       help="refuse specs estimated to need more memory (e.g. 2GiB)")
    train.set_defaults(run=_cmd_train)


#: The commands, in the order ``--help`` lists them, and what adds each one's parser.
_COMMANDS = {"check": _add_check, "explain": _add_explain, "fuzz": _add_fuzz,
             "train": _add_train}


# --------------------------------------------------------------------------- check


def _innermost_user_error(exc: BaseException) -> UserCodeError:
    """The deepest UserCodeError in the cause chain (the adaptor's, not the checker's wrap)."""
    found = exc
    while exc is not None:
        if isinstance(exc, UserCodeError):
            found = exc
        exc = exc.__cause__
    return found


def _user_traceback(exc: BaseException) -> str:
    """The traceback of the user's own exception, if one started the chain."""
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    if root is exc or isinstance(root, GradcheckError):
        return ""
    import traceback

    return "".join(traceback.format_exception(type(root), root, root.__traceback__))


def _spec_error(exc: GradcheckError, label: str):
    """The record of a spec that could not be checked: where (as data) and the message."""
    from gradcheck._render import SpecInputError

    return SpecInputError(spec=getattr(exc, "spec", None) or label,
                          key=getattr(exc, "key", None), message=" ".join(str(exc).split()))


def _report_errors(errors) -> None:
    for e in errors:
        print(f"gradcheck: error: {e.message}", file=sys.stderr)


def _paths(args) -> list:
    """The spec files this run checks (None: the built-in example): this shard's share."""
    paths = args.specs or [None]
    if args.shard is not None:
        from gradcheck._parallel import shard_indices
        from gradcheck.spec import DEFAULT_SOURCE

        keys = [DEFAULT_SOURCE if p is None else p for p in paths]
        paths = [paths[i] for i in shard_indices(keys, *args.shard)]
    return paths


def _load(args, paths):
    """Read and validate every spec and import its targets, before any check runs.

    Returns ``(specs, errors)``: a bad spec becomes an error record and the others are
    still checked.
    """
    from gradcheck.spec import default_spec, load_spec, resolve_targets

    specs, errors = [], []
    for path in paths:
        try:
            spec = default_spec() if path is None else load_spec(path)
            resolve_targets(spec, order=args.order)
        except SpecError as exc:
            errors.append(_spec_error(exc, path))
            continue
        if args.seed is not None:
            import dataclasses

            spec = dataclasses.replace(spec, check=dataclasses.replace(spec.check,
                                                                       seed=args.seed))
        specs.append(spec)
    return specs, errors


def _run_one(spec, args):
    """Build and check one spec: ``(SpecResult or None, built or None, error or None)``.

    User code that fails is a failed result (exit 1); bad input that shows only now (the
    memory estimate, a python layer's output shape) is an error record (exit 2).
    """
    from gradcheck._render import SpecResult
    from gradcheck.spec import build, check_built

    t0 = time.perf_counter()
    built = None
    try:
        built = build(spec, max_memory=args.max_memory)
        # a PyTorch target's intra-op threads: this job's share, 1 for small tensors
        # (never imports torch; without torch imported there is nothing to set, nor
        # _parallel to import)
        if "torch" in sys.modules:
            from gradcheck._parallel import limit_torch_threads

            shapes = [built.x.shape, *built.network.shapes,
                      *(p.shape for layer in built.params for p in layer.values())]
            restore = limit_torch_threads(args.jobs, shapes)
        else:
            restore = _nothing
        try:
            report = check_built(built, mode=args.mode, rtol=args.rtol, atol=args.atol,
                                 budget=args.budget, time_budget=args.time_budget,
                                 order=args.order)
        finally:
            restore()
    except UserCodeError as exc:
        inner = _innermost_user_error(exc)
        return SpecResult(spec.source, spec.name, None, error=str(inner),
                          elapsed_s=time.perf_counter() - t0, detail=_user_traceback(exc),
                          layers=_unchecked_layers(spec)), built, None
    except GradcheckError as exc:
        return None, None, _spec_error(exc, spec.source)
    return SpecResult(spec.source, spec.name, report,
                      elapsed_s=time.perf_counter() - t0), built, None


def _nothing() -> None:
    """What restores torch's threads where they were not changed."""


def _unchecked_layers(spec) -> tuple:
    """The layers of a spec whose user code failed before any check: none was judged."""
    from gradcheck.checker import LayerResult

    out = []
    for i, ls in enumerate(spec.layers):
        target = ls.options.get("target") if ls.type == "python" else None
        out.append(LayerResult(i, ls.type, target or ls.type, target, None, False,
                               note="not checked: the spec's user code failed"))
    return tuple(out)


def _check_one(spec, args):
    """Check one spec and draw its plots: ``(SpecResult or None, error or None, plots)``.

    Plain data, so that a worker process (``-j``) can hand it back: ``plots`` is ``None``
    (none asked for or needed), ``(paths written, notes)``, or the message of a plot
    directory that cannot be written (raised once the other outputs are written).
    """
    result, built, error = _run_one(spec, args)
    plots = None
    if args.plot and result is not None and not result.passed:
        from gradcheck._plot import write_plots

        try:
            plots = write_plots([result], {result.label: built}, args.plot,
                                stems=getattr(args, "plot_stems", None))
        except OSError as exc:
            plots = f"--plot {args.plot}: cannot write there ({exc.strerror or exc})"
    return result, error, plots


def _died(spec, died):
    """The failed result of a spec whose worker process died (``-j``)."""
    from gradcheck._render import SpecResult

    return SpecResult(spec.source, spec.name, None, error=(
        f"the process checking this spec stopped abruptly ({died}): a crash in native code "
        f"the layer calls, or the system ran out of memory; check {spec.source} without -j "
        f"to see it"))


def _check_all(specs, args, progress):
    """``_check_one`` of every spec, in order: here, or in ``-j`` worker processes."""
    if args.jobs == 1 or len(specs) < 2:
        for i, spec in enumerate(specs):
            progress.update(f"checking {spec.source} ({i + 1}/{len(specs)})")
            yield _check_one(spec, args)
        return
    from gradcheck._parallel import Died, run_in_processes

    workers = min(args.jobs, len(specs))
    status = f"checking {len(specs)} specs in {workers} processes ({{}} done)"
    progress.update(status.format(0))
    outcomes = run_in_processes(_check_one, [(spec, args) for spec in specs], workers,
                                on_done=lambda k: progress.update(status.format(k)))
    for spec, outcome in zip(specs, outcomes):
        yield (_died(spec, outcome), None, None) if isinstance(outcome, Died) else outcome


def _cmd_check(args) -> int:
    from gradcheck._alloc import tune_allocator
    from gradcheck._progress import Progress

    tune_allocator()        # freed arrays reused, not mapped afresh (see gradcheck._alloc)
    t0 = time.perf_counter()
    if args.plot:
        from gradcheck._plot import require_matplotlib

        require_matplotlib()
    if args.junit_xml:
        _prepare_file(args.junit_xml, "--junit-xml")
    paths = _paths(args)
    specs, errors = _load(args, paths)
    _report_errors(errors)
    results, late, plots = [], [], []
    if args.plot:   # the file names of the whole run's plots (two specs may share a stem)
        from gradcheck._plot import file_stems

        args.plot_stems = file_stems(spec.source for spec in specs)
    _settle()
    with Progress() as progress:
        for result, error, plotted in _check_all(specs, args, progress):
            if error is not None:
                late.append(error)
                continue
            results.append(result)
            if plotted is not None:
                plots.append(plotted)
    _report_errors(late)
    errors += late
    elapsed = time.perf_counter() - t0
    _write_outputs(args, results, plots, elapsed, errors)
    if not paths:   # an empty shard: a CI matrix larger than the list of specs
        print(f"gradcheck: shard {args.shard[0]}/{args.shard[1]} has nothing to check "
              f"({_plural_specs(len(args.specs or [None]))} over {args.shard[1]} shards; "
              f"the other shards check them)", file=sys.stderr if args.json else sys.stdout)
    if errors:
        return USAGE          # bad input wins: the run did not check all it was asked to
    return OK if all(r.passed for r in results) else MISMATCH


def _plural_specs(n: int) -> str:
    return f"{n} spec{'s' if n != 1 else ''}"


def _write_outputs(args, results, plotted, elapsed, errors):
    from gradcheck._render import to_json, to_junit_xml, to_text

    if args.junit_xml:
        _write_file(args.junit_xml, to_junit_xml(results, elapsed_s=elapsed, errors=errors),
                    "--junit-xml")
    plots, unplotted = [], []
    for p in plotted:        # per spec, in order: (paths written, notes) or an error
        if isinstance(p, str):
            raise GradcheckError(p)
        plots += p[0]
        unplotted += p[1]
    if args.json:
        import json

        sys.stdout.write(json.dumps(to_json(results, elapsed_s=elapsed, errors=errors),
                                    indent=2) + "\n")
    elif results:   # with every spec bad, the error lines on stderr are the whole story
        verbosity = -1 if args.quiet else (1 if args.verbose else 0)
        sys.stdout.write(to_text(results, elapsed_s=elapsed, verbosity=verbosity,
                                 errors=errors))
        for path in plots:
            sys.stdout.write(f"wrote {path}\n")
        for note in unplotted:
            sys.stdout.write(f"no plot of {note}\n")


def _prepare_file(path, option):
    """Create ``path``'s missing parent directories; refuse a path that cannot be a file.

    Called before any check runs, so a bad output path fails at once, not after the run.
    """
    import os

    parent = os.path.dirname(path)
    if parent:
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as exc:
            raise GradcheckError(f"{option} {path}: cannot create the directory {parent} "
                                 f"({exc.strerror or exc}); give a writable path") from None
    if os.path.isdir(path):
        raise GradcheckError(f"{option} {path}: is a directory; give a file path such as "
                             f"{os.path.join(path, 'gradcheck.xml')}")
    if not os.access(parent or ".", os.W_OK):
        raise GradcheckError(f"{option} {path}: cannot write in the directory "
                             f"{parent or '.'} (permission denied); give a writable path")


def _write_file(path, text, option):
    _prepare_file(path, option)
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise GradcheckError(f"{option} {path}: cannot write the file "
                             f"({exc.strerror or exc}); give a writable path") from None


# --------------------------------------------------------------------------- explain


def _cmd_explain(args) -> int:
    from gradcheck._explain import explain, render_explanation

    _settle()

    e = explain(convention=args.convention)
    if args.json:
        import json

        sys.stdout.write(json.dumps(e.to_dict(), indent=2) + "\n")
    else:
        sys.stdout.write(render_explanation(e) + "\n")
    return OK if e.equal else MISMATCH


# --------------------------------------------------------------------------- fuzz


def _cmd_fuzz(args) -> int:
    from gradcheck._fuzz import fuzz

    _settle()

    return fuzz(examples=args.examples, seed=args.seed, out=args.out, quiet=args.quiet)


# --------------------------------------------------------------------------- train


def _cmd_train(args) -> int:
    from gradcheck._progress import Progress
    from gradcheck.train import train
    from gradcheck.train._render import summary

    _settle()

    quiet = args.quiet or args.json
    with Progress(enabled=False if quiet else None) as progress:
        result = train(args.spec, data=args.data, epochs=args.epochs,
                       check_every=args.check_every, seed=args.seed, out=args.out,
                       mode=args.mode, time_budget=args.time_budget,
                       max_memory=args.max_memory, progress=progress.update,
                       log=None if quiet else progress.echo)
    if args.json:
        import json

        sys.stdout.write(json.dumps(result.to_dict(), indent=1) + "\n")
    else:
        sys.stdout.write("\n".join(summary(result)) + "\n")
    return OK if result.passed else MISMATCH


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    """Run the ``gradcheck`` command line with ``argv`` (default ``sys.argv[1:]``).

    Returns the exit status (:data:`OK`, :data:`MISMATCH`, :data:`USAGE`,
    :data:`INTERNAL`) instead of exiting, so it can be called in-process.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    # a command named first needs only its own arguments (the other commands are neither
    # parsed nor listed then); anything else (--help, --version, a wrong name) gets them all
    parser = build_parser(argv[0] if argv and argv[0] in _COMMANDS else None)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse printed usage (or --help / --version)
        return exc.code if isinstance(exc.code, int) else USAGE
    except GradcheckError as exc:  # an option's value out of range (see _number)
        print(f"gradcheck: error: {exc}", file=sys.stderr)
        return USAGE
    if args.command is None:
        parser.print_usage(sys.stderr)
        print("gradcheck: error: choose a command: check, explain, fuzz or train "
              "(gradcheck check runs the built-in example)", file=sys.stderr)
        return USAGE
    try:
        return args.run(args)
    except UserCodeError as exc:
        print(f"gradcheck: user code failed: {_innermost_user_error(exc)}", file=sys.stderr)
        return MISMATCH
    except GradcheckError as exc:
        print(f"gradcheck: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return USAGE
    except KeyboardInterrupt:
        print("gradcheck: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:     # the reader of stdout left (`gradcheck check | head -1`)
        return _reader_gone()
    except Exception:
        import traceback

        sys.stdout.flush()      # what was printed comes first, on lines of its own
        traceback.print_exc()
        print("gradcheck: internal error: this is a bug in gradcheck, not in the code under "
              "test; please report it with the traceback above", file=sys.stderr, flush=True)
        return INTERNAL


def run() -> None:
    """The ``gradcheck`` console command: :func:`main` in a process of its own.

    A command's process imports a few hundred thousand objects (NumPy, the checker) that
    live until it ends, and makes hardly any garbage before its first check. So the cyclic
    garbage collector is held off until the command's work starts (:func:`_settle` freezes
    what was imported out of its view, ``gc.freeze``), and at the end the process leaves
    without freeing every object one by one (:func:`_leave`): some 60 of the 925 million
    instructions of ``gradcheck check specs/bench/conv_tanh_24.toml``. In-process callers
    of :func:`main` are left as they are.

    No environment variable is set for the BLAS. NumPy's OpenBLAS starts its worker
    threads when NumPy is imported, and each spins for up to about 0.1 s (OpenBLAS's
    thread timeout) waiting for work: CPU time on another core, none on the command's own
    thread. One thread (``OPENBLAS_NUM_THREADS=1``) would slow large checks and may change
    the last bits of threaded sums; a shorter spin (``OPENBLAS_THREAD_TIMEOUT``) changes
    no result but has every BLAS call after a pause wake the workers: both are left to
    the user.
    """
    global _collector_held
    _collector_held = gc.isenabled()
    gc.disable()
    try:
        code = main()
    finally:
        _settle()
    _leave(code)


#: True while :func:`run` holds off a collector that was on.
_collector_held = False


def _settle() -> None:
    """Once the command's modules are imported: put what exists out of the collector's view
    and turn it back on -- only where :func:`run` turned it off."""
    global _collector_held
    if _collector_held:
        _collector_held = False
        gc.freeze()
        gc.enable()


def _leave(code: int) -> None:
    """Exit with ``code`` after what an interpreter's exit does that is seen from outside:
    the output flushed, the ``atexit`` functions run (coverage, multiprocessing, user
    code). Where a flush fails (a closed pipe) or a thread of the user's is still running,
    the ordinary exit does it all, as before."""
    import threading

    if any(t.is_alive() and not t.daemon for t in threading.enumerate()
           if t is not threading.main_thread()):
        sys.exit(code)
    if not _flushed():
        sys.exit(_reader_gone() if _pipe_closed else code)
    import atexit
    import os

    atexit._run_exitfuncs()
    _flushed()                  # what the atexit functions printed
    os._exit(code)


#: True once a flush found stdout's reader gone (:func:`_flushed`).
_pipe_closed = False


def _flushed() -> bool:
    """Flush stdout and stderr (either may be None: closed at start); False if one fails."""
    global _pipe_closed
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except BrokenPipeError:
        _pipe_closed = True
        return False
    except (OSError, ValueError):
        return False
    return True


def _reader_gone() -> int:
    """stdout's reader closed the pipe: what is still buffered goes nowhere (no second
    error when the interpreter flushes at exit) and the status is :data:`PIPE_CLOSED`,
    the status a shell shows for a process ended by SIGPIPE."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
    return PIPE_CLOSED


if __name__ == "__main__":  # pragma: no cover
    run()
