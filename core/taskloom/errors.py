"""Exception types shared by the core and the plugins, so callers can catch one family."""

from __future__ import annotations


class TaskloomError(Exception):
    """Base class of every error taskloom raises on purpose."""


class PluginError(TaskloomError):
    """A plugin contributed something invalid, e.g. a name another plugin already registered."""


class UnknownNameError(TaskloomError, LookupError):
    """A generator, handler, storage scheme, processor or collector name nobody registered."""

    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        self.kind, self.name, self.known = kind, name, sorted(known)
        listing = ", ".join(self.known) if self.known else "none registered"
        super().__init__(f"unknown {kind} {name!r}; known {kind}s: {listing}")

    def __str__(self) -> str:  # LookupError/KeyError would otherwise repr() the message
        return self.args[0]


class TaskEncodingError(TaskloomError, TypeError):
    """A task or result holds a value that has no JSON form; the message names its path."""


class InputError(TaskloomError, ValueError):
    """A file or value the user gave cannot be used (unreadable, not UTF-8, malformed).

    The message names the file or the option and the offending value, so the command line can
    report it in one line instead of a traceback.
    """


class StorageError(TaskloomError):
    """A storage backend cannot be opened or used (bad URL, corrupt file, unreachable server)."""


class QueryError(TaskloomError, ValueError):
    """A pool query uses an operator or shape outside the supported Mongo-style subset."""


class UnknownTaskError(TaskloomError, LookupError):
    """No task with this id exists in the pool."""

    def __str__(self) -> str:
        return self.args[0] if self.args else ""


class LeaseLostError(TaskloomError):
    """A worker acted on a task it no longer holds (its lease expired and was reclaimed)."""


class ConfigError(TaskloomError, ValueError):
    """A ``{class, module_path, kwargs}`` config cannot be built: a bad module, class or keyword.

    The message names the config path (``model.kwargs.num_leaves``) and the bad value; the
    underlying ImportError, AttributeError or TypeError is chained as the cause.
    """


class CollectError(TaskloomError):
    """Collected runs cannot be read: no such experiment, an unreadable or refused artifact.

    The message names the experiment, or the run id and the artifact path, and the cause is
    chained, so the user sees what to fix instead of a traceback from inside MLflow or pyarrow.
    """


class MissingArtifactError(CollectError, LookupError):
    """A run has no artifact at the requested path (``only_exist=True`` skips these runs)."""
