"""Built-in environments, each a subpackage using only the public API; and environment loading."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

from ..core.env import Environment
from ..core.errors import EnvLoadError

#: name -> "module:factory" of the built-in environments
BUILTIN: dict[str, str] = {
    "math": "envfoundry.envs.math:make_env",
    "shop": "envfoundry.envs.shop:make_env",
    "shop-web": "envfoundry.envs.shop:make_web_env",
    "support": "envfoundry.envs.support:make_env",
}


def _call_factory(obj: object, where: str, args: dict[str, str] | None = None) -> Environment:
    if isinstance(obj, Environment) or not callable(obj):
        if args:
            raise EnvLoadError(f"{where} is not a factory, so it takes no arguments (got {', '.join(args)})")
        env = obj
    else:
        import inspect

        try:
            inspect.signature(obj).bind(**(args or {}))
        except TypeError as e:
            raise EnvLoadError(f"factory {where!r} does not accept these arguments: {e}") from None
        except ValueError:
            pass  # no signature to check (a builtin or C callable)
        try:
            env = obj(**(args or {}))
        except EnvLoadError:
            raise
        except SystemExit as e:  # a factory that calls sys.exit() must not end the command silently
            raise EnvLoadError(f"factory {where!r} called sys.exit({e.code!r})") from None
        except Exception as e:  # noqa: BLE001 - a user's factory may raise anything
            raise EnvLoadError(f"factory {where!r} raised {type(e).__name__}: {e}") from None
    if not isinstance(env, Environment):
        raise EnvLoadError(
            f"{where} gave {type(env).__name__}, not an envfoundry Environment; the factory must "
            "return envfoundry.Environment(...)"
        )
    return env


def _load_file(path: Path, attr: str, spec: str, args: dict[str, str] | None) -> Environment:
    if path.is_dir():
        raise EnvLoadError(f"environment file {str(path)!r} is a directory; give path/to/file.py:factory")
    if not path.is_file():
        raise EnvLoadError(f"environment file {str(path)!r} does not exist")
    # the same name in every process (str hashes are salted per process): worker processes
    # unpickle task data whose classes live in this module
    digest = hashlib.sha1(str(path.resolve()).encode(), usedforsecurity=False).hexdigest()[:16]
    mod_name = f"_envfoundry_user_{digest}"
    try:
        mspec = importlib.util.spec_from_file_location(mod_name, path)
        if mspec is None or mspec.loader is None:
            raise EnvLoadError(f"cannot import {str(path)!r} as a Python file")
        module = importlib.util.module_from_spec(mspec)
        sys.modules[mod_name] = module
        mspec.loader.exec_module(module)
    except EnvLoadError:
        raise
    except OSError as e:
        raise EnvLoadError(f"cannot read environment file {str(path)!r}: {e}") from None
    except SystemExit as e:
        raise EnvLoadError(f"environment file {str(path)!r} called sys.exit({e.code!r}) while importing") from None
    except Exception as e:  # noqa: BLE001 - a user's file may raise anything at import
        raise EnvLoadError(
            f"environment file {str(path)!r} failed to import: {type(e).__name__}: {e}"
        ) from None
    if not hasattr(module, attr):
        raise EnvLoadError(f"environment file {str(path)!r} has no attribute {attr!r}")
    return _call_factory(getattr(module, attr), spec, args)


def load(spec: str, args: dict[str, str] | None = None) -> Environment:
    """Load an environment by built-in name, ``path/to/file.py:factory`` or ``pkg.module:attr``.

    ``args`` are passed to the factory as keyword arguments (``--env-arg key=value`` on the CLI),
    e.g. ``load("math", {"levels": "1,2"})``. The result remembers both in ``env.loaded_from``,
    so worker processes can load the same environment.
    """
    env = _load(spec, args)
    env.loaded_from = (canonical_spec(spec), dict(args or {}))
    return env


def canonical_spec(spec: str) -> str:
    """``spec`` with an environment file's path made absolute (what a run stores, so that it
    resumes from any directory); built-in names and ``pkg.module:attr`` are returned as they are."""
    if spec in BUILTIN:
        return spec
    target, sep, attr = spec.rpartition(":")
    if sep and target and attr and (target.endswith(".py") or "/" in target or "\\" in target):
        return f"{Path(target).resolve()}:{attr}"
    return spec


def _load(spec: str, args: dict[str, str] | None) -> Environment:
    if spec in BUILTIN:
        spec_target = BUILTIN[spec]
    else:
        spec_target = spec
    target, sep, attr = spec_target.rpartition(":")
    if not sep or not target or not attr:
        raise EnvLoadError(
            f"unknown environment {spec!r}: use a built-in name ({', '.join(BUILTIN)}), "
            "path/to/file.py:factory or package.module:factory"
        )
    if target.endswith(".py") or "/" in target or "\\" in target:
        return _load_file(Path(target), attr, spec, args)
    try:
        module = importlib.import_module(target)
    except ImportError as e:
        raise EnvLoadError(f"cannot import module {target!r} for environment {spec!r}: {e}") from None
    except SystemExit as e:
        raise EnvLoadError(f"module {target!r} called sys.exit({e.code!r}) while importing") from None
    except Exception as e:  # noqa: BLE001 - a user's module may raise anything at import
        raise EnvLoadError(f"module {target!r} failed to import: {type(e).__name__}: {e}") from None
    if not hasattr(module, attr):
        raise EnvLoadError(f"module {target!r} has no attribute {attr!r}")
    obj: Callable[..., Environment] | Environment = getattr(module, attr)
    return _call_factory(obj, spec, args)
