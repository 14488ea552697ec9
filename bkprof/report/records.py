"""Files bkprof reads back (runs files, `check --history`, baselines): appended whole, read with bounds.

A JSON Lines file may be shared by several processes (two `validate --resume` on one runs file, CI
jobs on one history). Each record is appended as one line under an exclusive `flock` of the file,
in one write, fsynced; a write cut short (a full disk) is truncated back, so a line is whole or
absent. A line left torn by an earlier crash (the file does not end in a newline) is ended before
the next record, so the two are never glued; readers set such a line aside with a warning naming
it. Nothing here rewrites a file.

Every value read back is checked before use: JSON nested at most MAX_DEPTH deep, integers of at
most MAX_DIGITS digits, no NaN or Infinity, and each field of the kind its schema says; a bad one
is a RecordError, one line naming the file, the line and the field.

Only the standard library is imported here.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import stat
import sys
from pathlib import Path

from bkprof.report.io import signals_held, write_all

MAX_DEPTH = 32        # bkprof's own documents nest 6 deep
MAX_DIGITS = 30       # an integer longer than this is no count bkprof writes (2^64 has 20 digits)
MAX_WARNINGS = 5      # set-aside lines named one by one; the rest are counted


class RecordError(ValueError):
    """A file read back that is not what bkprof wrote; one line naming the file, the line and the field."""


# ---------------------------------------------------------------- parsing with bounds

def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_DIGITS:
        raise ValueError(f"an integer of {len(text.lstrip('-')):,} digits (at most {MAX_DIGITS})")
    return int(text)


def _no_constant(text: str):
    raise ValueError(f"the non-finite number {text}")


def _depth_ok(node) -> bool:
    stack = [(node, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth > MAX_DEPTH:
                return False
            stack += [(child, depth + 1) for child in (node.values() if isinstance(node, dict) else node)]
    return True


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 reads as inf
        raise ValueError(f"the number {text[:20]} is out of range")
    return value


def parse(text: str, constant=_no_constant):
    """One JSON value with bkprof's bounds; ValueError (one line, no position) when it breaks one.

    json.JSONDecodeError (a ValueError) means the text is not JSON at all: a torn line, say.
    `constant` is given NaN, Infinity and -Infinity (default: refused).
    """
    try:
        value = json.loads(text, parse_int=_bounded_int, parse_constant=constant,
                           parse_float=_finite_float if constant is _no_constant else float)
    except RecursionError:
        raise ValueError(f"nested more than {MAX_DEPTH} deep") from None
    if not _depth_ok(value):
        raise ValueError(f"nested more than {MAX_DEPTH} deep")
    return value


def dumps(record) -> str:
    """One record as one line; non-finite numbers are refused (json would write NaN, which is not JSON)."""
    return json.dumps(record, sort_keys=True, allow_nan=False)


# ---------------------------------------------------------------- schemas

NUMBER = "number"
INTEGER = "integer"
TEXT = "text"
BOOL = "true/false"
OBJECT = "object"

_KINDS = {
    NUMBER: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
    INTEGER: lambda v: isinstance(v, int) and not isinstance(v, bool),
    TEXT: lambda v: isinstance(v, str),
    BOOL: lambda v: isinstance(v, bool),
    OBJECT: lambda v: isinstance(v, dict),
}


def check_fields(record, schema: dict[str, tuple[str, bool]], where: str) -> dict:
    """`record` must be an object whose fields have the kinds of `schema` (field -> (kind, may be null));
    fields the schema does not name are left alone. RecordError naming `where` and the field otherwise."""
    if not isinstance(record, dict):
        raise RecordError(f"{where}: not a JSON object (got {_json_kind(record)})")
    for field, (kind, nullable) in schema.items():
        if field not in record:
            raise RecordError(f"{where}: field {field!r} is missing")
        value = record[field]
        if value is None and nullable:
            continue
        if not _KINDS[kind](value):
            raise RecordError(f"{where}: field {field!r} must be {_article(kind)}{' or null' if nullable else ''}, "
                              f"got {_shown(value)}")
    return record


def _article(kind: str) -> str:
    return kind if kind == BOOL else f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def _json_kind(value) -> str:
    return {type(None): "null", bool: "true/false", int: "a number", float: "a number", str: "a text",
            list: "an array"}.get(type(value), type(value).__name__)


def _shown(value) -> str:
    text = json.dumps(value) if not isinstance(value, (dict, list)) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


# ---------------------------------------------------------------- JSON Lines files

def read_bytes(path: str | os.PathLike, what: str, error: type[Exception] = RecordError) -> bytes:
    """The bytes of the file `path`; `error`, one line naming `what`, where it is missing, a folder or unreadable."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise error(f"{what} does not exist") from None
    except IsADirectoryError:
        raise error(f"{what} is a folder, not a file") from None
    except OSError as failure:
        raise error(f"{what} cannot be read: {failure.strerror or failure}") from None


def read_lines(path: str | os.PathLike, what: str, check) -> list[dict]:
    """The records of the JSON Lines file at `path`, each passed through `check(value, where)`.

    A line that is not JSON at all (a write cut short by a crash) is set aside with a warning on
    stderr naming it; a line that is JSON but breaks a bound or the schema is a RecordError; so is
    a file where no line is a record (a TOML file given as a history, say). `what` names the file
    in messages, e.g. "--runs-file runs.jsonl".
    """
    data = read_bytes(path, what)
    records, aside = [], []
    for number, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            value = parse(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            aside.append(number)
            continue
        except ValueError as error:
            raise RecordError(f"{what}: line {number}: {error}") from None
        records.append(check(value, f"{what}: line {number}"))
    if aside and not records:
        raise RecordError(f"{what} is not a bkprof JSON Lines file: line {aside[0]} is not JSON")
    _warn_aside(what, aside)
    return records


def _warn_aside(what: str, numbers: list[int]) -> None:
    for number in numbers[:MAX_WARNINGS]:
        print(f"bkprof: warning: {what}: line {number} is not a whole JSON line (a write cut short); set aside",
              file=sys.stderr)
    if len(numbers) > MAX_WARNINGS:
        print(f"bkprof: warning: {what}: {len(numbers) - MAX_WARNINGS} more such lines set aside", file=sys.stderr)


def append_line(path: str | os.PathLike, record, what: str) -> None:
    """Append `record` as one line, whole or not at all, under an exclusive lock on the file.

    OSError (a full disk, say) leaves the file as it was; the caller names `what` in its message.
    """
    data = (dumps(record) + "\n").encode("utf-8")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # /dev/null, a FIFO: no lock, no truncation to undo
            write_all(fd, data)
            return
        fcntl.flock(fd, fcntl.LOCK_EX)  # released when fd closes
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            _warn_torn(fd, size, what)
            data = b"\n" + data  # end the torn line, so this record starts a line of its own
        with signals_held():
            try:
                write_all(fd, data)
                os.fsync(fd)
            except BaseException:
                os.ftruncate(fd, size)  # a record is whole or absent
                raise
    finally:
        os.close(fd)


def _warn_torn(fd: int, size: int, what: str) -> None:
    newlines, offset = 0, 0
    while offset < size:
        chunk = os.pread(fd, 1 << 20, offset)
        if not chunk:
            break
        newlines += chunk.count(b"\n")
        offset += len(chunk)
    print(f"bkprof: warning: {what}: line {newlines + 1} is not a whole JSON line (a write cut short); "
          "set aside, the new record starts on the next line", file=sys.stderr)


# ---------------------------------------------------------------- reports hold no NaN or Infinity

NOT_COMPUTED = "not_computed"  # the top-level key naming each value written as null, and why


def finite_json(payload: dict, default=None) -> str:
    """`payload` as indented JSON (RFC 8259: no NaN, no Infinity). A value that could not be computed
    (an overflowing ratio, a NaN) is written as null, and `not_computed` maps its path to the reason."""
    text = json.dumps(payload, indent=2, default=default)
    if "NaN" not in text and "Infinity" not in text:  # the common case: nothing to mend
        return text
    found: dict[str, str] = {}
    marked = json.loads(text, parse_constant=_Marked)
    mended = _mend(marked, "", found)
    if found:
        mended[NOT_COMPUTED] = {**(mended.get(NOT_COMPUTED) or {}), **found}
    return json.dumps(mended, indent=2, allow_nan=False)


class _Marked:
    def __init__(self, text: str):
        self.text = text


def _mend(node, where: str, found: dict):
    if isinstance(node, _Marked):
        found[where] = f"{node.text}: out of range or undefined, written as null"
        return None
    if isinstance(node, dict):
        return {k: _mend(v, f"{where}.{k}" if where else str(k), found) for k, v in node.items()}
    if isinstance(node, list):
        return [_mend(v, f"{where}.{i}" if where else str(i), found) for i, v in enumerate(node)]
    return node
