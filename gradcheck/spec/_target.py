"""Finding a ``type = "python"`` layer's target: the forms people write, and the errors.

A target is one of

* ``"package.module:Object"`` -- an object of an importable module (the object may be
  dotted, ``"mod:Class.attr"``; ``"package:module"`` names a submodule);
* ``"package.module"`` -- a module whose module-level functions ``forward`` and
  ``backward`` are the layer;
* ``"path/to/file.py:Object"`` or ``"path/to/file.py"`` -- the same from a file, not only
  an importable module; a relative path is taken from the spec file's folder, then from
  the current directory.

While the target is imported, the import path holds the spec file's folder, the project
folder above it (the nearest one with a ``pyproject.toml``, ``setup.py``, ``setup.cfg`` or
``.git``) and the current directory, so a spec works from any working directory. A class is
constructed with the layer's ``kwargs``. A ``torch.autograd.Function`` subclass, an
``nn.Module`` class (constructed with ``kwargs``) or instance is recognized and adapted by
:mod:`gradcheck.torch` -- when the target's module has imported PyTorch; ``gradcheck``
never imports it otherwise.

Every failure is a :class:`~gradcheck.SpecError` naming the spec key at fault,
``layer[i].target`` or ``layer[i].kwargs``, and what would be valid.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import re
import sys
import types
from contextlib import contextmanager

from gradcheck._errors import SpecError
from gradcheck.spec._values import show, suggest

__all__ = ["resolve_target", "check_target_syntax", "split_target", "import_path"]

_DOTTED = r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*"
_MODULE = re.compile(rf"^{_DOTTED}$")
_OBJECT = re.compile(rf"^{_DOTTED}$")
CONTRACT = ("forward(x, *params) -> y and backward(grad_y, x, *params) -> "
            "(grad_x, *grad_params)")
FORMS = ('"package.module:Object", "package.module" (its functions forward and backward), '
         '"path/to/file.py:Object" or "path/to/file.py"')
_PROJECT_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", ".git")


def split_target(target: str):
    """``(kind, where, object path)``: kind ``"file"`` or ``"module"``; object may be ""."""
    if target.endswith(".py"):
        return "file", target, ""
    left, sep, right = target.rpartition(":")
    if sep and left.endswith(".py"):
        return "file", left, right
    if sep:
        return "module", left, right
    return "module", target, ""


def check_target_syntax(ctx, key: str, target: str) -> None:
    kind, where, obj = split_target(target)
    ok = (bool(where) and (kind == "file" or _MODULE.match(where) is not None)
          and (not obj or _OBJECT.match(obj) is not None)
          and not (kind == "module" and target.count(":") > 1))
    if not ok:
        raise ctx.expected(key, FORMS, target)


def _project_root(folder):
    here = os.path.abspath(folder)
    while True:
        if any(os.path.exists(os.path.join(here, m)) for m in _PROJECT_MARKERS):
            return here
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


def import_path(spec_dir=None) -> list:
    """The folders put on ``sys.path`` while a target is imported (see module doc)."""
    folders = []
    if spec_dir:
        folders.append(os.path.abspath(spec_dir))
        root = _project_root(spec_dir)
        if root:
            folders.append(root)
    folders.append(os.getcwd())
    return list(dict.fromkeys(folders))


@contextmanager
def _on_path(folders):
    added = [f for f in folders if f not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for f in added:
            if f in sys.path:
                sys.path.remove(f)


def _first_line(exc) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else "(no message)"


def _where(folders) -> str:
    cwd = os.getcwd()
    others = [f for f in folders if f != cwd]
    if not others:
        return f"(the current directory {cwd} is on it)"
    return (f"(the current directory {cwd} is on it, and {', '.join(others)}, the spec's "
            f"folder and its project folder)")


def _import_module(name, folders, fail):
    with _on_path(folders):
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            missing = exc.name or ""
            if missing and (name == missing or name.startswith(missing + ".")):
                advice = ("run gradcheck from the directory that holds it"
                          if folders == [os.getcwd()] else
                          f"put it in one of these folders, or name its file: "
                          f"\"path/to/{name.split('.')[-1]}.py:Object\"")
                raise fail(f"cannot import module {show(name)}: no module named "
                           f"{show(missing)} on the import path {_where(folders)}; "
                           f"{advice}") from None
            raise fail(f"importing module {show(name)} failed: {exc}") from None
        except SyntaxError as exc:
            raise fail(f"importing module {show(name)} failed: SyntaxError: {exc.msg} "
                       f"({os.path.basename(exc.filename or '?')}, line {exc.lineno})") from None
        except Exception as exc:
            raise fail(f"importing module {show(name)} raised {type(exc).__name__}: "
                       f"{_first_line(exc)}") from None


def _import_file(path, spec_dir, folders, fail):
    tried = [path] if os.path.isabs(path) else \
        [os.path.join(d, path) for d in dict.fromkeys(filter(None, (spec_dir, os.getcwd())))]
    found = next((p for p in tried if os.path.isfile(p)), None)
    if found is None:
        raise fail(f"no file {show(path)} (looked for {', '.join(map(show, tried))}); give a "
                   f"path to a .py file, relative to the spec file's folder")
    found = os.path.abspath(found)
    digest = hashlib.sha1(found.encode()).hexdigest()[:10]
    stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(found))[0])
    name = f"_gradcheck_target_{stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, found)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    with _on_path([os.path.dirname(found), *folders]):
        try:
            spec.loader.exec_module(module)
        except SyntaxError as exc:
            del sys.modules[name]
            raise fail(f"importing {show(path)} failed: SyntaxError: {exc.msg} "
                       f"({os.path.basename(exc.filename or '?')}, line {exc.lineno})") from None
        except Exception as exc:
            del sys.modules[name]
            raise fail(f"importing {show(path)} raised {type(exc).__name__}: "
                       f"{_first_line(exc)}") from None
    return module


def _candidates(obj) -> list:
    """The public names of ``obj`` a layer could be: of a module, the classes and functions
    it defines itself (not what it imported: ``np``, ``torch``, ``Path``)."""
    names = [n for n in dir(obj) if not n.startswith("_")]
    if not isinstance(obj, types.ModuleType):
        return names
    return [n for n in names if (inspect.isclass(getattr(obj, n, None))
                                 or inspect.isfunction(getattr(obj, n, None)))
            and getattr(getattr(obj, n), "__module__", None) == obj.__name__]


def _attribute(module, module_name, attr_path, folders, fail):
    obj, done = module, []
    for part in attr_path.split("."):
        where = (f"module {show(module_name)}" if not done
                 else show(f"{module_name}:{'.'.join(done)}"))
        if not hasattr(obj, part) and not done and getattr(module, "__path__", None):
            try:   # "pkg:module": a submodule, imported
                with _on_path(folders):
                    obj = importlib.import_module(f"{module_name}.{part}")
                done.append(part)
                continue
            except ImportError:
                pass
        if not hasattr(obj, part):
            names = _candidates(obj)
            raise fail(f"{where} has no attribute {show(part)}; {suggest(part, names)}it "
                       f"defines: {', '.join(names[:12]) or 'nothing public'}")
        obj = getattr(obj, part)
        done.append(part)
    return obj


def _construct(cls, kwargs, label, fail_kwargs):
    """``cls(**kwargs)``; a constructor that raises is the spec's ``kwargs`` at fault."""
    try:
        return cls(**kwargs)
    except Exception as exc:
        raise fail_kwargs(f"{label}(**kwargs) raised {type(exc).__name__}: "
                          f"{_first_line(exc)}; give the constructor's arguments as "
                          f"kwargs = {{name = value, ...}}") from None


def _framework(obj, kwargs, label, fail_kwargs):
    """A torch Function subclass or Module (class or instance), adapted; else None."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    is_class = isinstance(obj, type)
    if is_class and issubclass(obj, torch.autograd.Function):
        if kwargs:
            raise fail_kwargs(f"{label} is a torch.autograd.Function, which is not "
                              f"constructed; it takes no kwargs (got {show(kwargs)}): leave "
                              f"kwargs out, or wrap it in an nn.Module")
        from gradcheck.torch._layer import TorchLayer

        return TorchLayer.from_function(obj, label)
    if is_class and issubclass(obj, torch.nn.Module):
        instance = _construct(obj, kwargs, label, fail_kwargs)
        from gradcheck.torch._layer import TorchLayer

        return TorchLayer.from_module(instance, label)
    if isinstance(obj, torch.nn.Module):
        if kwargs:
            raise fail_kwargs(f"{label} is an nn.Module instance, already constructed; it "
                              f"takes no kwargs (got {show(kwargs)}): name its class instead")
        from gradcheck.torch._layer import TorchLayer

        return TorchLayer.from_module(obj, label)
    return None


def resolve_target(target: str, *, kwargs=None, options=None, source="<spec>",
                   key="target", kwargs_key=None, spec_dir=None):
    """Import the target, construct a class with ``kwargs``, check the contract.

    Returns the object whose ``forward``/``backward`` will be called (a PyTorch
    Function or Module adapted to that contract). Raises :class:`~gradcheck.SpecError`
    (``FILE: KEY: ...``, KEY the target's or the kwargs' key) when that is impossible.
    ``options`` is the older name of ``kwargs``.
    """
    if kwargs_key is None:
        kwargs_key = key[: -len("target")] + "kwargs" if key.endswith("target") else key

    def fail(message):
        return SpecError(f"{source}: {key}: {message}", spec=source, key=key)

    def fail_kwargs(message):
        return SpecError(f"{source}: {kwargs_key}: {message}", spec=source, key=kwargs_key)

    kwargs = dict(kwargs if kwargs is not None else (options or {}))
    if spec_dir is None and source and os.path.isfile(source):
        spec_dir = os.path.dirname(os.path.abspath(source))
    folders = import_path(spec_dir)
    kind, where, attr_path = split_target(target)
    if kind == "file":
        module = _import_file(where, spec_dir, folders, fail)
    else:
        module = _import_module(where, folders, fail)
    obj = _attribute(module, where, attr_path, folders, fail) if attr_path else module
    label = attr_path or where
    adapted = _framework(obj, kwargs, label, fail_kwargs)
    if adapted is not None:
        return adapted
    if isinstance(obj, type):
        obj = _construct(obj, kwargs, label, fail_kwargs)
    elif kwargs:
        raise fail_kwargs(f"{label} is not a class, so it takes no kwargs; got "
                          f"{show(kwargs)}")
    missing = [m for m in ("forward", "backward") if not callable(getattr(obj, m, None))]
    if missing:
        what, member = (label, "method") if attr_path else (f"module {show(where)}", "function")
        raise fail(f"{what} has no {' or '.join(missing)} {member}; a python layer needs "
                   f"{CONTRACT}")
    return obj
