"""A user's own model: `FILE.py:NAME` or `package.module:NAME`, a class or factory returning an nn.Module.

Loading one runs the user's code, so it happens only where the user asked for it: on the command line, or
for a checkpoint whose recorded file is there with the same sha256 (or one the user names with --model-file).
An import that fails is a ModelError that names the file and line, never a traceback.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import inspect
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cnnkit.errors import ModelError

@dataclass(frozen=True)
class UserRef:
    """Where a user model lives: a .py file or an importable module, and the name in it."""

    kind: str  # "file" or "module"
    where: str  # the file's resolved path, or the dotted module name
    attr: str

    @property
    def name(self) -> str:
        return f"{self.where}:{self.attr}"


def parse_user_ref(name: str) -> UserRef:
    where, _, attr = name.strip().rpartition(":")
    if not attr.isidentifier():
        raise ModelError(f"model '{name}': '{attr}' is not a Python name", "write FILE.py:NAME or package.module:NAME")
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where).expanduser()
        if not path.is_file():
            raise ModelError(f"model file not found: {path}", "write FILE.py:NAME with the path of an existing .py file")
        return UserRef("file", str(path.resolve()), attr)
    if not all(part.isidentifier() for part in where.split(".")):
        raise ModelError(f"model '{name}': '{where}' is neither a .py file nor a module name",
                         "write FILE.py:NAME or package.module:NAME")
    return UserRef("module", where, attr)


def sha256_of(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def is_installed(path: Path) -> bool:
    """Whether `path` is Python's or an installed package's code (under sys.prefix and its kin), not a user's."""
    roots = [Path(p).resolve() for p in {sys.prefix, sys.base_prefix, sys.exec_prefix}]
    return any(path.resolve().is_relative_to(root) for root in roots)


def module_file(module: str) -> Path | None:
    """The file a dotted module name would import from, found without running any of it."""
    path = None
    spec = None
    for depth, part in enumerate(module.split(".")):
        dotted = ".".join(module.split(".")[: depth + 1])
        spec = importlib.machinery.PathFinder.find_spec(dotted, path)
        if spec is None:
            return None
        path = spec.submodule_search_locations
    return Path(spec.origin) if spec is not None and spec.origin not in (None, "built-in", "frozen") else None


def source_file(ref: UserRef) -> Path | None:
    return Path(ref.where) if ref.kind == "file" else module_file(ref.where)


def failure_at(source: dict, what: str, exc: BaseException) -> ModelError:
    """The user's line that failed, not cnnkit's: `what failed at FILE, line N: Error: message`."""
    file = source.get("path")
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if file is None or Path(f.filename) == Path(file)]
    if isinstance(exc, SyntaxError) and exc.lineno:
        where = f"{exc.filename}, line {exc.lineno}"
    elif frames:
        where = f"{frames[-1].filename}, line {frames[-1].lineno}"
    else:
        where = str(file or source.get("ref"))
    return ModelError(f"{what} at {where}: {type(exc).__name__}: {exc}",
                      "fix the model file; running it with python shows the same error")


def _import_failure(ref: UserRef, exc: BaseException) -> ModelError:
    file = source_file(ref)
    return failure_at({"path": str(file) if file else None, "ref": ref.where}, f"importing {ref.where} failed", exc)


def load_object(ref: UserRef, file: Path | None = None, code: bytes | None = None) -> Callable:
    """Import the module and return its NAME. This runs the user's code.

    From `file` when given, running exactly `code`, the bytes whose sha256 the caller checked: the file is
    not read again (it could change in between), and a cached __pycache__ .pyc beside it is never run.
    """
    try:
        if ref.kind == "file" or file is not None:
            path = Path(file or ref.where)
            code = path.read_bytes() if code is None else code
            module_name = f"cnnkit_user_model_{hashlib.sha256(code).hexdigest()[:16]}"
            spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module  # dataclasses and pickling look themselves up there
            exec(compile(code, str(path), "exec"), module.__dict__)
        else:
            module = importlib.import_module(ref.where)
    except ModelError:
        raise
    except ModuleNotFoundError as exc:
        if ref.kind == "module" and exc.name and ref.where.startswith(exc.name):
            raise no_module(ref) from None
        raise _import_failure(ref, exc) from None
    except (Exception, SystemExit) as exc:  # anything the user's code raises while it is imported
        raise _import_failure(ref, exc) from None
    if not hasattr(module, ref.attr):
        public = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise ModelError(f"{ref.where} has no '{ref.attr}'", f"it defines {', '.join(public[:10]) or 'nothing callable'}")
    target = getattr(module, ref.attr)
    if not callable(target):
        raise ModelError(f"{ref.name} is a {type(target).__name__}, not a class or function",
                         "point at an nn.Module class or a function that returns one")
    return target


def no_module(ref: UserRef) -> ModelError:
    return ModelError(f"no module named '{ref.where}'", "write package.module:NAME for a module on sys.path, "
                                                        "or FILE.py:NAME for a file")


def accepted(target: Callable) -> tuple[set[str], bool]:
    """(the keyword names `target` takes, whether it takes **kwargs)."""
    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return set(), True
    names = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return names, any(p.kind is p.VAR_KEYWORD for p in parameters)
