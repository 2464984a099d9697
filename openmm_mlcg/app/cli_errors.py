"""How the command line reports errors: user errors as one line and exit status 2, the rest as tracebacks."""
from __future__ import annotations

import sys
import traceback
import zipfile

import yaml

from ..util.locks import OutputLockedError

__all__ = ["USER_ERRORS", "run_guarded", "EXIT_USER_ERROR"]

EXIT_USER_ERROR = 2
#: exceptions that mean "the input or the environment is wrong", not "the program is wrong"
USER_ERRORS = (ValueError, TypeError, OSError, EOFError, zipfile.BadZipFile, yaml.YAMLError, OutputLockedError,
               FloatingPointError)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in text:
        text = f"{text}: {exc.filename}"
    return text if not isinstance(exc, (TypeError, EOFError, zipfile.BadZipFile)) else f"{type(exc).__name__}: {text}"


def run_guarded(func, args, command: str, debug: bool = False) -> int:
    """``func(args)`` as an exit status: user errors -> one line on stderr and 2 (with the traceback if
    ``debug``), Ctrl-C -> 130."""
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        print(f"openmm-mlcg {command}: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as exc:
        if debug:
            traceback.print_exc()
        print(f"openmm-mlcg {command}: error: {_one_line(exc)}" + ("" if debug else " (--debug shows the traceback)"),
              file=sys.stderr)
        return EXIT_USER_ERROR
