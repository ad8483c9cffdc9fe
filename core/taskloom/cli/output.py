"""Writing a file the user names (``generate -o FILE``) without destroying what the name points at.

* A regular file, a symlink to one, or a path that does not exist yet is written atomically:
  the text goes to a temporary file beside the real target, which one rename then replaces.
  A symlink stays a symlink (its target is replaced), and an existing target keeps its
  permission bits; a new file gets the usual ``0666`` minus the umask.
* Anything else that exists (a FIFO, a device such as ``/dev/null``, a terminal) is written
  in place, as a shell redirection would: replacing it would destroy it.
* A path the kernel resolves through ``/proc`` (``/dev/stdout``, ``/dev/fd/N``) stands for an
  open file: one of this process's descriptors is written through that descriptor (so the text
  lands after what the command printed, not over it), any other is appended to.
* A directory, a missing parent directory or one we may not write in is an
  :class:`~taskloom.errors.InputError` naming the user's path, raised by :func:`stage_output`
  before anything visible has changed.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import sys
from pathlib import Path

from taskloom.errors import InputError

#: symlinks followed at most when looking for ``/proc`` on the way to the target (Linux's limit)
MAX_SYMLINKS = 40
#: a descriptor in ``/proc``: group 1 the process id (None for ``self``), group 2 the descriptor
_PROC_FD = re.compile(r"/proc/(?:self|(\d+))/fd/(\d+)")


class StagedOutput:
    """Text ready to land at a user's path: :meth:`commit` publishes it, :meth:`discard` drops it.

    Either ``temporary`` (a written file beside ``target``, renamed onto it by :meth:`commit`)
    or ``text`` (written in place by :meth:`commit`, through descriptor ``fd`` if given) is.
    """

    def __init__(self, path: Path, *, target: Path | None = None, temporary: Path | None = None,
                 text: str | None = None, fd: int | None = None) -> None:
        self.path = path
        self._target = target
        self._temporary = temporary
        self._text = text
        self._fd = fd

    def commit(self) -> None:
        """Make the text appear at the path: one rename, or an in-place write."""
        try:
            if self._temporary is not None and self._target is not None:
                os.replace(self._temporary, self._target)
                self._temporary = None
            elif self._text is not None and self._fd is not None:
                sys.stdout.flush()  # what was printed comes first
                sys.stderr.flush()
                with open(self._fd, "w", encoding="utf-8", closefd=False) as handle:
                    handle.write(self._text)
            elif self._text is not None:
                # appending: a FIFO or device does not mind, another process's file keeps its
                # content
                with open(self.path, "a", encoding="utf-8") as handle:
                    handle.write(self._text)
        except OSError as exc:
            raise _error(self.path, exc) from None

    def discard(self) -> None:
        """Remove the temporary file if :meth:`commit` has not used it; idempotent."""
        if self._temporary is not None:
            self._temporary.unlink(missing_ok=True)
            self._temporary = None


def _error(path: Path, exc: OSError) -> InputError:
    return InputError(f"output {path}: cannot write it ({exc.strerror or exc})")


def _via_proc(path: Path) -> tuple[bool, int | None]:
    """Whether resolving ``path`` passes through ``/proc`` (``/dev/stdout``, ``/dev/fd/1``...),
    and the descriptor of this process it names, if it names one.
    """
    current = os.path.abspath(path)
    for _ in range(MAX_SYMLINKS):
        here = os.path.join(os.path.realpath(os.path.dirname(current)),
                            os.path.basename(current))
        if here.startswith("/proc/"):
            match = _PROC_FD.fullmatch(here)
            if match is not None and match[1] in (None, str(os.getpid())):
                return True, int(match[2])
            return True, None
        if not os.path.islink(here):
            return False, None
        current = os.path.join(os.path.dirname(here), os.readlink(here))
    return False, None


def stage_output(path: Path, text: str) -> StagedOutput:
    """Check that ``path`` can take ``text`` and prepare it without changing what is visible.

    For an atomic write the temporary file is written, flushed to disk and given the
    target's owner (as far as we may) and mode here, so that every failure the user can cause
    happens now.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise _error(path, exc) from None
    if info is not None and stat.S_ISDIR(info.st_mode):
        raise InputError(f"output {path}: is a directory")
    via_proc, fd = _via_proc(path) if info is not None else (False, None)
    if info is not None and (via_proc or not stat.S_ISREG(info.st_mode)):
        if not os.access(path, os.W_OK):
            raise InputError(f"output {path}: cannot write it (permission denied)")
        return StagedOutput(path, text=text, fd=fd)
    target = Path(os.path.realpath(path))
    if not target.parent.is_dir():
        raise InputError(f"output {path}: directory {target.parent} does not exist")
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise InputError(f"output {path}: cannot write in {target.parent} "
                         f"({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            if info is not None:
                if (info.st_uid, info.st_gid) != (os.geteuid(), os.getegid()):
                    with contextlib.suppress(PermissionError):  # only root may give files away
                        os.fchown(handle.fileno(), info.st_uid, info.st_gid)
                os.fchmod(handle.fileno(), stat.S_IMODE(info.st_mode))
            handle.write(text.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException as exc:
        temporary.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _error(path, exc) from None
        raise
    return StagedOutput(path, target=target, temporary=temporary)
