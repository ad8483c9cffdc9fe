"""``instantiate``: build an object from a qlib-style ``{"class", "module_path", "kwargs"}`` config.

Tasks name their model, dataset and records this way, as qlib's ``init_instance_by_config``
reads them, so qlib task templates build unchanged. Two things go further than qlib: configs
nested inside ``kwargs`` are built too (see :func:`is_config` for which dicts count), and every
mistake (a module that does not import, a class the module lacks, a keyword the class does
not take) is a :class:`~taskloom.errors.ConfigError` naming the config path, such as
``model.kwargs.num_leaves``, with the original exception chained.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from taskloom.errors import ConfigError

#: the keys a config may have; any other key in a config is an error (a typo such as "kwarg")
CONFIG_KEYS = ("class", "module_path", "kwargs")


def instantiate(
    config: Any,
    /,
    *,
    default_module: str | ModuleType | None = None,
    accept_types: type | tuple[type, ...] = (),
    try_kwargs: Mapping[str, Any] | None = None,
    config_path: str = "config",
    **overrides: Any,
) -> Any:
    """Build the object ``config`` describes, as qlib's ``init_instance_by_config`` does.

    ``config`` is a dict ``{"class": ..., "module_path": ..., "kwargs": {...}}`` or a class
    path string. The class is a name looked up in ``module_path`` (a module name, a module
    object or a ``.py`` file), or ``default_module`` when the config has none; or it is a
    self-contained ``"package.module:Class"`` / ``"package.module.Class"`` path (then
    ``module_path`` is ignored, as in qlib); or the class (any callable) itself. Configs nested
    in ``kwargs`` are built first, depth first. ``overrides`` replace keyword arguments of the
    top-level config and are passed as given (not built). ``try_kwargs`` are passed only to a
    class whose signature takes them (qlib passes ``model``/``dataset`` to records this way).
    An object that is not a config comes back unchanged; with ``accept_types`` it must be an
    instance of them. ``config_path`` names the config in error messages (``"model"``).
    """
    if accept_types and isinstance(config, accept_types):
        return config
    if isinstance(config, str):
        config = {"class": config}
    elif not isinstance(config, Mapping):
        if accept_types:
            expected = " or ".join(t.__name__ for t in _as_tuple(accept_types))
            raise ConfigError(
                f"{config_path}: expected a config or a {expected}, got {type(config).__name__}"
            )
        return config
    factory = _resolve(config, default_module, config_path)
    kwargs = _kwargs(config, config_path)
    built = {
        name: _build_nested(value, f"{config_path}.kwargs.{name}")
        for name, value in kwargs.items()
        if name not in overrides
    }
    built.update(overrides)
    signature = _signature(factory)
    for name, value in (try_kwargs or {}).items():
        if name not in built and _accepts(signature, name):
            built[name] = value
    _check_call(factory, signature, built, config_path)
    try:
        return factory(**built)
    except Exception as exc:
        exc.add_note(f"taskloom: raised while building {config_path} ({_name(factory)})")
        raise


def is_config(value: Any) -> bool:
    """Whether a dict nested in ``kwargs`` is a config that :func:`instantiate` builds.

    It is when it has a ``"class"`` key that can be resolved on its own: a class (or any
    callable), a ``"module:Class"`` or dotted ``"module.Class"`` string, or a bare class name
    next to a ``"module_path"`` key. A bare name without ``module_path`` (qlib's processor
    lists, ``{"class": "DropnaLabel"}``) is left as a dict, because its owner resolves it
    against a default module of its own. Any other dict is data; its values are searched.
    """
    if type(value) is not dict or "class" not in value:
        return False
    klass = value["class"]
    if isinstance(klass, str):
        return ":" in klass or "." in klass or "module_path" in value
    return callable(klass)


def _build_nested(value: Any, path: str) -> Any:
    """``value`` with every config inside it built; plain dicts, lists and tuples are rebuilt.

    Only exact ``dict``/``list``/``tuple`` are searched, so a named tuple or a mapping type of
    the user's own passes through untouched.
    """
    if is_config(value):
        return instantiate(value, config_path=path)
    if type(value) is dict:
        return {key: _build_nested(item, f"{path}.{key}") for key, item in value.items()}
    if type(value) in (list, tuple):
        return type(value)(_build_nested(item, f"{path}.{i}") for i, item in enumerate(value))
    return value


def _resolve(config: Mapping[str, Any], default_module: Any, path: str) -> Callable[..., Any]:
    """The callable a config's ``class`` names, imported from its module."""
    if "class" not in config:
        raise ConfigError(f"{path}: a config needs a 'class' key, got keys {sorted(config)}")
    unknown = sorted(str(key) for key in config if key not in CONFIG_KEYS)
    if unknown:
        raise ConfigError(
            f"{path}: unknown config key(s) {unknown}; a config has only {list(CONFIG_KEYS)}"
        )
    klass = config["class"]
    if not isinstance(klass, str):
        if callable(klass):
            return klass
        raise ConfigError(f"{path}.class: expected a class or a class path, got {klass!r:.80}")
    if klass.startswith("file://"):
        raise ConfigError(
            f"{path}: {klass!r} is a pickle file; taskloom builds objects from configs only "
            "and never unpickles them"
        )
    if ":" in klass or "." in klass:
        module_name, attribute = klass.split(":", 1) if ":" in klass else klass.rsplit(".", 1)
        module = _import(module_name, f"{path}.class", klass)
    else:
        attribute = klass
        source = config.get("module_path", default_module)
        if source is None:
            raise ConfigError(
                f"{path}.class: {klass!r} names no module; give 'module_path' or a class path "
                f"such as 'package.module:{klass}'"
            )
        where = f"{path}.module_path" if "module_path" in config else "default_module"
        module = _import(source, where, source)
    found: Any = module
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError as exc:
            raise ConfigError(
                f"{path}.class: module {module.__name__!r} has no attribute {attribute!r}"
            ) from exc
    if not callable(found):
        raise ConfigError(
            f"{path}.class: {module.__name__}:{attribute} is a {type(found).__name__}, "
            "not a class or function"
        )
    return found


def _import(source: Any, where: str, shown: Any) -> ModuleType:
    """The module ``source`` names: a module object, a ``.py`` file or an importable name."""
    if isinstance(source, ModuleType):
        return source
    if not isinstance(source, str | Path) or not str(source):
        raise ConfigError(f"{where}: expected a module name, got {shown!r:.80}")
    text = str(source)
    try:
        if text.endswith(".py"):
            return _import_file(Path(text))
        return importlib.import_module(text)
    except ConfigError:
        raise
    except Exception as exc:  # ImportError, or anything the module raised while importing
        origin = f" (from {shown!r:.80})" if shown != source else ""
        raise ConfigError(
            f"{where}: cannot import module {text!r}{origin}: {type(exc).__name__}: {exc}"
        ) from exc


def _import_file(path: Path) -> ModuleType:
    """Import a ``.py`` file as a module named after its path (qlib's ``module_path`` form)."""
    if not path.is_file():
        raise ModuleNotFoundError(f"no such file: {path}")
    name = re.sub(r"\W", "_", str(path.resolve().with_suffix("")))
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _kwargs(config: Mapping[str, Any], path: str) -> Mapping[str, Any]:
    """The config's ``kwargs`` (``None`` or missing is no arguments); keys must be strings."""
    kwargs = config.get("kwargs")
    if kwargs is None:
        return {}
    if not isinstance(kwargs, Mapping):
        raise ConfigError(f"{path}.kwargs: expected a mapping, got {kwargs!r:.80}")
    for name in kwargs:
        if not isinstance(name, str):
            raise ConfigError(f"{path}.kwargs: keyword {name!r} is not a string")
    return kwargs


def _signature(factory: Callable[..., Any]) -> inspect.Signature | None:
    """The call signature, or ``None`` when Python cannot tell (some built-in types)."""
    try:
        return inspect.signature(factory)
    except (TypeError, ValueError):
        return None


def _accepts(signature: inspect.Signature | None, name: str) -> bool:
    """Whether a call with this signature takes the keyword ``name``."""
    if signature is None:
        return False
    params = signature.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return True
    param = params.get(name)
    return param is not None and param.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )


def _check_call(factory: Callable[..., Any], signature: inspect.Signature | None,
                kwargs: Mapping[str, Any], path: str) -> None:
    """Refuse, before calling, keywords the factory does not take and missing arguments."""
    if signature is None:
        return
    for name, value in kwargs.items():
        if not _accepts(signature, name):
            takes = [n for n in signature.parameters if _accepts(signature, n)]
            raise ConfigError(
                f"{path}.kwargs.{name}: {_name(factory)} takes no keyword {name!r} "
                f"(given {value!r:.60}); it takes {takes}"
            )
    try:
        signature.bind(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{path}.kwargs: {_name(factory)}: {exc}") from exc


def _name(factory: Callable[..., Any]) -> str:
    """``module:QualName`` of a class or function, for messages."""
    module = getattr(factory, "__module__", None)
    qualname = getattr(factory, "__qualname__", None) or repr(factory)
    return f"{module}:{qualname}" if module else qualname


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    """``accept_types`` as a tuple, for listing the names in a message."""
    return types if isinstance(types, tuple) else (types,)
