"""The one error of the check library: a bad configuration, exit 2 in the CLI."""


class ThresholdError(ValueError):
    """A bad threshold configuration; the message is one line naming the file or the entry."""


def read_text(path, what: str) -> str:
    """The UTF-8 text of the file `path`; ThresholdError, one line naming `what` (e.g. "baseline file X"), otherwise."""
    from bkprof.report.records import read_bytes

    try:
        return read_bytes(path, what, ThresholdError).decode("utf-8")
    except UnicodeDecodeError as error:
        raise ThresholdError(f"{what} is not UTF-8 text (byte {error.start}: {error.reason})") from None
