"""One-line errors with exit code 2 for every bad input, from the option parser or from the library."""

from __future__ import annotations

import contextlib
import signal
import sys
from typing import Callable

import typer
import typer.core

from bkprof.report.io import OutputError
from bkprof.sizes import TooLarge

BAD_INPUT = 2
INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class BadInput(Exception):
    """Input the library rejected; printed as one line naming the bad value, exit 2."""


class Interrupted(Exception):
    """SIGINT, SIGTERM or SIGHUP inside `interruptible()`; printed as one line, exit 130."""


@contextlib.contextmanager
def interruptible():
    """Inside the block SIGINT, SIGTERM and SIGHUP raise Interrupted, so the work unwinds like any error
    (worker processes ended, staging folders removed) and the command ends with one line, not a traceback.
    A second signal while it unwinds is ignored: the unwinding is bounded (workers get 5 s)."""
    def interrupt(number, frame):
        for each in SIGNALS:
            signal.signal(each, signal.SIG_IGN)
        raise Interrupted(f"interrupted by {signal.Signals(number).name}")

    old = {number: signal.signal(number, interrupt) for number in SIGNALS}
    try:
        yield
    finally:
        for number, handler in old.items():
            signal.signal(number, handler)


def _say(message: str) -> None:
    print(f"bkprof: error: {message}", file=sys.stderr, flush=True)  # click 8.1's test runner reads an unflushed stream


class LazyText(str):
    """An option's help text read when the command's options are first needed (Command.get_params),
    so a choice option can list a registry's names as they are then.

    A str, not a bare function: some typer releases call string methods on every help text and
    metavar while the command is built."""

    def __new__(cls, read: Callable[[], str]):
        self = super().__new__(cls, "")
        self.read = read
        return self


class _FlagsWithoutType:
    """--help lists a flag (--backward, --help) without a `<bool>` value: it takes none; a choice
    option's list of values is read when the command's options are first needed."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
            if isinstance(getattr(param, "help", None), LazyText):  # choices read only now (options.choice_option)
                param.help = param.help.read()
        return params


class Command(_FlagsWithoutType, typer.core.TyperCommand):
    """Every bkprof command (`@app.command(cls=Command)`)."""


class OneLineErrors(_FlagsWithoutType, typer.core.TyperGroup):
    """Typer prints usage boxes for bad options; bkprof prints one line naming the bad value."""

    def main(self, *args, **kwargs):
        kwargs["standalone_mode"] = False
        _encodable_output()
        try:
            code = super().main(*args, **kwargs)
        except (BadInput, OutputError, TooLarge) as error:
            _say(str(error))
            sys.exit(BAD_INPUT)
        except MemoryError:
            _say("out of memory (Python could not allocate); lower the sizes or the batch")
            sys.exit(BAD_INPUT)
        except OSError as error:
            # a path the system refused (output paths are checked before the work, input files as they
            # are parsed): the path and the system's reason, without guessing whether it was read or written
            where = f"{error.filename}: " if error.filename else ""
            _say(f"{where}{error.strerror or error}")
            sys.exit(BAD_INPUT)
        except Interrupted as error:
            print(f"bkprof: {error}", file=sys.stderr)
            sys.exit(INTERRUPTED)
        except typer.Abort as error:
            if isinstance(error.__context__, KeyboardInterrupt):  # click's word for Ctrl-C
                print("bkprof: interrupted", file=sys.stderr)
                sys.exit(INTERRUPTED)
            _say("aborted")
            sys.exit(1)
        except Exception as error:
            if _out_of_memory(error):
                _say(f"out of memory: {_first_line(error)}; lower the sizes or the batch")
                sys.exit(BAD_INPUT)
            # click's UsageError / BadParameter (vendored by newer typer, imported by older)
            if not hasattr(error, "format_message") or not hasattr(error, "exit_code"):
                raise
            if error.format_message():  # empty for a bare `bkprof`, which has just printed its help
                _say(error.format_message())
            sys.exit(error.exit_code)
        sys.exit(code if isinstance(code, int) else 0)


def _encodable_output() -> None:
    """Where stdout or stderr cannot encode every character (PYTHONIOENCODING=ascii, a C locale), write
    what it cannot as ? rather than end in UnicodeEncodeError: a report's '·' must not cost the report."""
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        if encoding not in ("utf8", "utf16", "utf32") and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")


def _out_of_memory(error: BaseException) -> bool:
    """An allocator failure (CPU or CUDA); only asked when torch is loaded, since only torch raises one."""
    if "torch" not in sys.modules:
        return False
    from bkprof.profile.memory import is_out_of_memory

    return is_out_of_memory(error)


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
