"""Loading an environment from a spec: a registered name, ``path/to/file.py:factory`` or
``package.module:factory``.

Names come from :mod:`.registry` (installed packages' entry points, envfoundry's own environments
among them, and :func:`~.registry.register_env`). A factory's arguments arrive as strings from the
command line and are converted by its type hints (:mod:`.env_args`).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .env import Environment
from .env_args import convert_args
from .errors import EnvLoadError
from .registry import REGISTRY, check_name, is_path_target

#: ``loader(url, args) -> Environment`` for specs that are URLs (``http://HOST:PORT``, a served environment);
#: core cannot import the client, so the top package installs it (:func:`set_url_loader`)
_url_loader: Callable[[str, dict[str, Any]], Environment] | None = None
_URL_SCHEMES = ("http://", "https://", "ws://", "wss://")


def set_url_loader(loader: Callable[[str, dict[str, Any]], Environment] | None) -> Any:
    """Install the loader of URL specs (None: none); the previous one is returned."""
    global _url_loader
    previous, _url_loader = _url_loader, loader
    return previous


def is_url(spec: str) -> bool:
    """Whether ``spec`` names a served environment (``http://HOST:PORT``) rather than a name or a file."""
    return spec.lower().startswith(_URL_SCHEMES)


#: a folder holding one of these files is an environment, loaded by the ``module:function`` target
#: (called as ``function(folder, args)``); core imports nothing above it, so the loader is named, not
#: imported: ``environment.yaml`` is envfoundry.declarative's format
FOLDER_LOADERS: dict[str, str] = {"environment.yaml": "envfoundry.declarative:load_folder"}


def folder_loader(spec: str) -> str | None:
    """The loader target of ``spec`` when it is a folder holding a marker of :data:`FOLDER_LOADERS`."""
    path = Path(spec)
    if ":" in spec.replace("\\", "/").split("/")[-1] or not path.is_dir():
        return None
    return next((t for marker, t in FOLDER_LOADERS.items() if (path / marker).is_file()), None)


def load(spec: str, args: Mapping[str, Any] | None = None) -> Environment:
    """Load an environment by registered name, ``path/to/file.py:factory``, ``pkg.module:attr`` or a
    folder (``./my_env`` holding ``environment.yaml``, see :data:`FOLDER_LOADERS`).

    ``args`` are passed to the factory as keyword arguments (``--env-arg key=value`` on the CLI),
    strings converted by the factory's type hints, e.g. ``load("math", {"levels": "1,2"})``. The
    result remembers both in ``env.loaded_from``, so worker processes can load the same environment.
    """
    env, source = _load(spec, dict(args or {}))
    env.loaded_from = (source, dict(args or {}))
    return env


def canonical_spec(spec: str) -> str:
    """``spec`` with an environment file's path made absolute (what a run stores, so that it
    resumes from any directory); names and ``pkg.module:attr`` are returned as they are."""
    if is_url(spec):
        return spec
    target, sep, attr = spec.rpartition(":")
    if sep and target and attr and is_path_target(target):
        return f"{Path(target).resolve()}:{attr}"
    if folder_loader(spec) is not None and not (spec in REGISTRY and check_name(spec) is None):
        return str(Path(spec).resolve())
    return spec


def _load(spec: str, args: dict[str, Any]) -> tuple[Environment, str]:
    """The environment and the spec that any process can load it from again."""
    if is_url(spec):
        if _url_loader is None:
            raise EnvLoadError(f"{spec} is a served environment, but no client is installed (import envfoundry)")
        return _url_loader(spec, args), spec
    entry = REGISTRY.entry(spec) if ":" not in spec else None
    if entry is not None:
        # an installed package's name means the same in every process; a name registered in
        # this process may not exist in a worker, so workers get its target
        source = spec if entry.installed else entry.target
        return _load_target(entry.target, spec, args), source
    loader = folder_loader(spec)
    if loader is not None:
        return _load_folder(loader, Path(spec), args), str(Path(spec).resolve())
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr:
        if Path(spec).is_dir():  # a folder that is not an environment: say what it lacks
            odd = [m for m in FOLDER_LOADERS if (Path(spec) / m).exists()]
            raise EnvLoadError(f"unknown environment {spec!r}: "
                               + (f"{Path(spec) / odd[0]} is not a file" if odd
                                  else f"the folder holds no {' or '.join(FOLDER_LOADERS)}"))
        names = ", ".join(REGISTRY) or "none"
        hint = ("; envfoundry's own environments are missing from the installed package's metadata: "
                "reinstall it (pip install -e .)") if REGISTRY.own_missing() else ""
        raise EnvLoadError(
            f"unknown environment {spec!r}: use a registered name ({names}), "
            f"path/to/file.py:factory or package.module:factory{hint}"
        )
    return _load_target(spec, spec, args), canonical_spec(spec)


def _load_target(target_spec: str, where: str, args: dict[str, Any]) -> Environment:
    target, _, attr = target_spec.rpartition(":")
    if is_path_target(target):
        return _load_file(Path(target), attr, where, args)
    try:
        module = importlib.import_module(target)
    except ImportError as e:
        raise EnvLoadError(f"cannot import module {target!r} for environment {where!r}: {e}") from None
    except SystemExit as e:
        raise EnvLoadError(f"module {target!r} called sys.exit({e.code!r}) while importing") from None
    except Exception as e:  # noqa: BLE001 - a user's module may raise anything at import
        raise EnvLoadError(f"module {target!r} failed to import: {type(e).__name__}: {e}") from None
    return _call_factory(_attr(module, attr, f"module {target!r}"), where, args)


def _load_folder(loader: str, folder: Path, args: dict[str, Any]) -> Environment:
    module, _, attr = loader.partition(":")
    try:
        fn = _attr(importlib.import_module(module), attr, f"module {module!r}")
        env = fn(folder, args)
    except EnvLoadError:
        raise
    except ImportError as e:
        raise EnvLoadError(f"cannot import {module!r} to load the folder {str(folder)!r}: {e}") from None
    except Exception as e:  # noqa: BLE001 - a loader's bug must still name the folder
        raise EnvLoadError(f"loading the folder {str(folder)!r} raised {type(e).__name__}: {e}") from None
    if not isinstance(env, Environment):
        raise EnvLoadError(f"the loader {loader!r} gave {type(env).__name__}, not an Environment")
    return env


def _attr(module: Any, attr: str, what: str) -> Any:
    obj = module
    for part in attr.split("."):  # "module:Class.method" too
        if not hasattr(obj, part):
            raise EnvLoadError(f"{what} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def _load_file(path: Path, attr: str, spec: str, args: dict[str, Any]) -> Environment:
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
    return _call_factory(_attr(module, attr, f"environment file {str(path)!r}"), spec, args)


def _call_factory(obj: object, where: str, args: dict[str, Any]) -> Environment:
    if isinstance(obj, Environment) or not callable(obj):
        if args:
            raise EnvLoadError(f"{where} is not a factory, so it takes no arguments (got {', '.join(args)})")
        env = obj
    else:
        try:
            inspect.signature(obj).bind(**args)
        except TypeError as e:
            raise EnvLoadError(f"factory {where!r} does not accept these arguments: {e}") from None
        except ValueError:
            pass  # no signature to check (a builtin or C callable)
        kwargs = convert_args(obj, args, where)
        try:
            env = obj(**kwargs)
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


__all__ = ["FOLDER_LOADERS", "canonical_spec", "folder_loader", "load"]
