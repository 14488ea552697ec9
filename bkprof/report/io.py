"""Every file and folder bkprof writes goes through here: whole or not at all, and nothing left behind.

A file is written to a temporary sibling, fsynced and renamed over its target (a symlink's target,
never the link itself); an existing file keeps its mode. Devices, FIFOs and /dev/stdout are written
in place, since replacing them would turn them into regular files. A folder of several files (an
`OutputSet`) is built in a temporary sibling folder and renamed into place under a lock on its
parent, so it appears as one complete set with its manifest, or not at all. Temporary files and
folders are removed on every exit Python sees, SIGTERM and SIGHUP included.

Only the standard library is imported here: the CLI checks output paths before importing torch.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import fcntl
import json
import os
import shlex
import shutil
import signal
import stat
import sys
import tempfile
import threading
from pathlib import Path

MANIFEST = "bkprof-manifest.json"
_TEMP_MARK = ".bkprof-tmp-"


class OutputError(ValueError):
    """An output path that cannot be written; the message is one line naming the path as given."""


def _named(path: str | os.PathLike, option: str | None) -> str:
    return f"{option} {os.fspath(path)}" if option else os.fspath(path)


# ---------------------------------------------------------------- temporary paths and signals

_pending: set[str] = set()
_pending_lock = threading.RLock()  # re-entered by the signal handler
_handled_signals: set[int] = set()


def _remove(path: str) -> None:
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
    except FileNotFoundError:
        pass


def _cleanup_pending() -> None:
    with _pending_lock:
        for path in list(_pending):
            _remove(path)
        _pending.clear()


def _on_signal(number, frame) -> None:
    _cleanup_pending()
    # die of the same signal, as the process would have without this handler
    signal.signal(number, signal.SIG_DFL)
    os.kill(os.getpid(), number)


def _install_signal_handlers() -> None:
    """Remove temporary outputs on SIGTERM/SIGHUP where nobody else handles them (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for number in (signal.SIGTERM, signal.SIGHUP):
        if number not in _handled_signals and signal.getsignal(number) == signal.SIG_DFL:
            signal.signal(number, _on_signal)
            _handled_signals.add(number)


atexit.register(_cleanup_pending)


def _track(path: str) -> None:
    _install_signal_handlers()
    with _pending_lock:
        _pending.add(path)


def _untrack(path: str) -> None:
    with _pending_lock:
        _pending.discard(path)


# ---------------------------------------------------------------- single files

def _through_fd_link(path: Path) -> bool:
    """Whether `path` is, or links through, /dev/stdout, /dev/fd/N or /proc/PID/fd/N (an open descriptor)."""
    seen = 0
    current = Path(os.path.abspath(path))
    while True:
        text = str(current)
        if text in ("/dev/stdout", "/dev/stderr", "/dev/stdin") or text.startswith(("/dev/fd/", "/proc/")):
            return True
        if not current.is_symlink() or seen > 40:
            return False
        current = Path(os.path.abspath(current.parent / os.readlink(current)))
        seen += 1


def _in_place(path: Path) -> bool:
    """Devices, FIFOs, sockets and open descriptors are written where they are, not replaced."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode) or _through_fd_link(path)


def _nearest_existing(folder: Path) -> Path:
    while not os.path.lexists(folder) and folder != folder.parent:
        folder = folder.parent
    return folder


def _check_parent(target: Path, given: str) -> None:
    """The folder `target` goes in exists or can be created, and can be written."""
    existing = _nearest_existing(target.parent)
    if not existing.is_dir():
        raise OutputError(f"cannot write {given}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {given}: folder {existing} is not writable")


def check_output(path: str | os.PathLike, option: str | None = None) -> Path:
    """The file `path` will be written to (a symlink's target); OutputError now, before any work, when it cannot be.

    `option` (e.g. "--output") goes in front of the path in the message.
    """
    given = _named(path, option)
    if os.fspath(path) == "":
        raise OutputError(f"cannot write {given}: an empty path")
    if os.fspath(path).endswith("/") and not _in_place(Path(path)):  # Path() would drop the slash
        raise OutputError(f"cannot write {given}: names a folder (it ends in /), not a file")
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"cannot write {given}: is a folder, not a file")
    if _in_place(path):
        if not os.access(path, os.W_OK):
            raise OutputError(f"cannot write {given}: is not writable")
        return path
    target = Path(os.path.realpath(path))
    if target.is_symlink():
        raise OutputError(f"cannot write {given}: is a symlink loop")
    if target.is_dir():
        raise OutputError(f"cannot write {given}: is a folder, not a file")
    if target.exists() and not os.access(target, os.W_OK):
        raise OutputError(f"cannot write {given}: is not writable")
    _check_parent(target, given)
    return target


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a folder; the data itself is synced
    finally:
        os.close(fd)


def _write_in_place(path: Path, data: bytes) -> None:
    # O_APPEND: /dev/stdout redirected to a file keeps what was printed before
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        write_all(fd, data)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written (one call may write fewer)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def write_atomic(path: str | os.PathLike, text: str | bytes, option: str | None = None) -> Path:
    """Write `text` (or bytes: a PNG, say) to `path` whole or not at all; returns the path written.

    A symlink's target is written, a device or FIFO is written in place, an existing file keeps its
    mode; a folder (or a path that cannot be written) is an OutputError naming `path` as given.
    """
    data = text if isinstance(text, bytes) else text.encode("utf-8")
    target = check_output(path, option)
    if _in_place(target):
        _write_in_place(target, data)
        return Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}{_TEMP_MARK}", suffix=".tmp")
    _track(tmp)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
        _fsync_folder(target.parent)
    except BaseException:
        _remove(tmp)
        raise
    finally:
        _untrack(tmp)
    return Path(path)


# ---------------------------------------------------------------- sets of files (folders)

class OutputSet:
    """A folder of outputs that appears whole, with its manifest, or not at all.

    Create it before the work (the path is checked then), write the files into `staging`, then
    `commit(config)`; `discard()` (or leaving the `with` block by an exception) removes everything.
    An existing folder is replaced whole, but only when it is empty or holds exactly files its
    manifest lists (an earlier bkprof set); anything else, even one file, is an OutputError before
    the work, so bkprof deletes only files it wrote. `suffixes` (what the set writes) is kept for
    the callers; it no longer makes a folder without a manifest replaceable.
    """

    def __init__(self, path: str | os.PathLike, option: str | None = None, suffixes: tuple[str, ...] = ()):
        self.given = _named(path, option)
        self.path = Path(path)
        self.target = self._checked_target(tuple(suffixes))
        self.staging: Path | None = None
        # the folder replaced keeps its mode; a new one gets what mkdir would give it
        self.mode = stat.S_IMODE(os.stat(self.target).st_mode) if self.target.is_dir() else 0o777 & ~_umask()

    def _checked_target(self, suffixes: tuple[str, ...]) -> Path:
        if os.fspath(self.path) == "":
            raise OutputError(f"cannot write {self.given}: an empty path")
        target = Path(os.path.realpath(self.path))
        if os.path.lexists(target) and not target.is_dir():
            raise OutputError(f"cannot write {self.given}: is a file, not a folder")
        if target.is_dir():
            self._refuse_foreign(target)
        if target == target.parent:
            raise OutputError(f"cannot write {self.given}: cannot replace the root folder")
        _check_parent(target, self.given)
        return target

    def _refuse_foreign(self, target: Path) -> None:
        foreign = _foreign(target)
        if foreign is not None:
            raise OutputError(f"cannot write {self.given}: the folder holds files bkprof did not write ({foreign}, "
                              f"not listed in a {MANIFEST}); give a new or empty folder")

    def open(self) -> Path:
        """Create the staging folder (a hidden sibling of the target) and return it."""
        if self.staging is None:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            self.staging = Path(tempfile.mkdtemp(dir=self.target.parent, prefix=f".{self.target.name}{_TEMP_MARK}"))
            _track(str(self.staging))
        return self.staging

    def __enter__(self) -> "OutputSet":
        self.open()
        return self

    def __exit__(self, kind, error, trace) -> None:
        if kind is not None:
            self.discard()

    def discard(self) -> None:
        if self.staging is not None:
            _remove(str(self.staging))
            _untrack(str(self.staging))
            self.staging = None

    def commit(self, config: dict | None = None) -> Path:
        """Write the manifest and put the set in place of the old one, whole; returns the path given."""
        staging = self.open()
        try:
            names = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file() and p.name != MANIFEST)
            write_atomic(staging / MANIFEST, json.dumps(manifest(config, names), indent=2, default=str) + "\n")
            for name in names:
                _fsync_file(staging / name)
            for folder in {(staging / name).parent for name in names} | {staging}:
                _fsync_folder(folder)
            os.chmod(staging, self.mode)
            with _locked(self.target.parent):
                old = self._swap_in(staging)
            if old != staging:
                _untrack(str(staging))
            self.staging = None
            _fsync_folder(self.target.parent)
        except BaseException:
            self.discard()
            raise
        if old is not None:
            _remove(str(old))
            _untrack(str(old))
        return self.path

    def _swap_in(self, staging: Path) -> Path | None:
        """Put the new set in place of the old one; returns where the old one now is, for removal.

        At every instant one whole set is at the target: the two folders are exchanged in one
        rename (Linux renameat2 RENAME_EXCHANGE), so even SIGKILL cannot fall between two renames.
        Where the system cannot exchange, the old set is renamed aside and the new one in with
        SIGINT, SIGTERM and SIGHUP held back in between (SIGKILL there leaves the old set whole,
        under its hidden `.NAME.bkprof-tmp-old-*` name)."""
        if not os.path.lexists(self.target):
            os.rename(staging, self.target)
            return None
        if not self.target.is_dir():
            raise OutputError(f"cannot write {self.given}: became a file while bkprof ran")
        self._refuse_foreign(self.target)  # again under the lock: a file may have appeared meanwhile
        if _exchange(staging, self.target):
            return staging
        old = Path(tempfile.mkdtemp(dir=self.target.parent, prefix=f".{self.target.name}{_TEMP_MARK}old-"))
        with signals_held():
            os.replace(self.target, old / "set")
            os.rename(staging, self.target)
            _track(str(old))
        return old


def _foreign(folder: Path) -> str | None:
    """The first file in `folder` (its subfolders too) that the folder's manifest does not list, or
    the first file at all when there is no readable manifest; None when every file is listed."""
    found = []
    for root, folders, files in os.walk(folder):
        links = [name for name in folders if os.path.islink(os.path.join(root, name))]  # os.walk does not enter them
        found += [os.path.relpath(os.path.join(root, name), folder) for name in files + links]
    found = sorted(name for name in found if name != MANIFEST)
    if not found:
        return None
    listed = _listed(folder / MANIFEST)
    return next((name for name in found if name not in listed), None)


def _listed(manifest: Path) -> set[str]:
    """The files a manifest says its set holds; none when it is missing or not a bkprof manifest."""
    try:
        files = json.loads(manifest.read_text(encoding="utf-8")).get("files")
    except (OSError, ValueError, AttributeError, RecursionError):
        return set()
    return {name for name in files if isinstance(name, str)} if isinstance(files, list) else set()


def _exchange(new: Path, old: Path) -> bool:
    """Swap two folders in one atomic rename; False where the system or the file system cannot."""
    import ctypes
    import errno

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_cwd, exchange = -100, 2  # AT_FDCWD, RENAME_EXCHANGE
    if renameat2(at_cwd, os.fsencode(new), at_cwd, os.fsencode(old), exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), os.fspath(old))


HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def signals_held():
    """SIGINT, SIGTERM and SIGHUP wait until the block ends, then act as they would have (main thread;
    elsewhere Python runs no handler).

    The block's own handler notes them. Blocking them in the main thread (pthread_sigmask) is not
    enough: where other threads run (a multiprocessing queue's feeder, Ray's), the kernel hands the
    signal to one of those, and Python still runs the handler in the main thread at once, inside the
    block (tests/test_reliability_hostile.py has the case)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []
    before = {number: signal.signal(number, lambda number, frame: noted.append(number)) for number in HELD_SIGNALS}
    try:
        yield
    finally:
        restore_signal_handlers(before)
        for number in dict.fromkeys(noted):
            signal.raise_signal(number)


def restore_signal_handlers(handlers: dict) -> None:
    """Put back handlers as signal.getsignal gave them (None, a handler not set from Python: the default)."""
    for number, handler in handlers.items():
        signal.signal(number, handler if handler is not None else signal.SIG_DFL)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


class _locked:
    """An exclusive flock on a folder: concurrent commits into one parent take turns."""

    def __init__(self, folder: Path):
        self.folder = folder

    def __enter__(self):
        self.fd = os.open(self.folder, os.O_RDONLY)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def manifest(config: dict | None, files: list[str]) -> dict:
    """What made a set: the command line, its configuration, the bkprof version, the time (UTC), the files."""
    from bkprof import __version__

    return {
        "command": shlex.join(["bkprof", *sys.argv[1:]]),
        "config": config or {},
        "version": __version__,
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "files": files,
    }


@contextlib.contextmanager
def output_folders(specs: list[tuple[str | os.PathLike | None, str, tuple[str, ...]]], config: dict | None = None,
                   files: list[tuple[str | os.PathLike | None, str]] = ()):
    """Staging folders for (path, option, suffixes) specs, None where no path is given; committed
    together when the block ends normally, discarded when it raises. Two specs naming one folder
    share one set; a folder inside another spec's folder is a subfolder of that set. `files`, the
    command's (path, option) output files, may not lie in or over one of the folders: refused
    before the work (the set would replace the file, or the file land in the set)."""
    _refuse_files_in_folders(specs, files)
    chosen = {i: OutputSet(path, option, suffixes) for i, (path, option, suffixes) in enumerate(specs) if path is not None}
    outer: dict[Path, OutputSet] = {}
    for candidate in sorted(chosen.values(), key=lambda c: len(c.target.parts)):
        if not any(candidate.target.is_relative_to(t) for t in outer):
            outer[candidate.target] = candidate
    with contextlib.ExitStack() as stack:
        for candidate in outer.values():
            stack.enter_context(candidate)
        folders: list[Path | None] = []
        for i in range(len(specs)):
            if i not in chosen:
                folders.append(None)
                continue
            target = chosen[i].target
            home = next(t for t in outer if target.is_relative_to(t))
            folder = outer[home].staging / target.relative_to(home)
            folder.mkdir(parents=True, exist_ok=True)
            folders.append(folder)
        with _named_errors(outer.values()):
            yield folders
            for candidate in outer.values():
                candidate.commit(config)


def _refuse_files_in_folders(specs, files) -> None:
    for file, file_option in files:
        if file is None:
            continue
        where = Path(file).absolute()
        for folder, folder_option, _ in specs:
            if folder is not None and (where == Path(folder).absolute() or where.is_relative_to(Path(folder).absolute())
                                       or Path(folder).absolute().is_relative_to(where)):
                raise OutputError(f"{file_option} {file} and {folder_option} {folder} overlap: give the report file "
                                  "and the folder different places")


@contextlib.contextmanager
def _named_errors(sets):
    """A write into a set that fails (a full disk) is an OutputError naming the option and the folder
    given, not the hidden staging file; other OSErrors (an input that cannot be read) pass as they are."""
    try:
        yield
    except OSError as error:
        where = os.path.abspath(os.fsdecode(error.filename)) if error.filename else None
        for candidate in sets:
            homes = [str(p) for p in (candidate.staging, candidate.target) if p is not None]
            if where is None or any(where.startswith(home) for home in homes) or _TEMP_MARK in where:
                raise OutputError(f"cannot write {candidate.given}: {error.strerror or error}") from None
        raise
