"""TorchScript for the bundle: ``torch.jit.script`` with the upstream deprecation warning silenced and module
constants declared in a fixed order, so that a saved module's bytes do not depend on the process (split from
:mod:`.export`)."""
from __future__ import annotations

import contextlib
import threading
import warnings

import torch

__all__ = ["quiet_torchscript", "script_module"]


@contextlib.contextmanager
def quiet_torchscript():
    """Silence only TorchScript's upstream deprecation warnings (torch >= 2.9 deprecates torch.jit)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated.*")
        warnings.filterwarnings("ignore", message=r".*TorchScript.*deprecated.*", )
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.jit.*")
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit.*")
        yield


class _SortedSet(set):
    """A set that iterates in sorted order (by ``str``) instead of hash order."""

    def __iter__(self):
        return iter(sorted(set.__iter__(self), key=str))


_SCRIPT_LOCK = threading.Lock()


@contextlib.contextmanager
def _sorted_constants():
    """Make TorchScript emit module constants in a fixed order.

    ``torch.jit._recursive`` collects a module's constants (``__constants__`` and ``Final`` attributes) in a
    ``set`` and declares them in the generated code in its iteration order, which follows Python's per-process
    string hashing (``PYTHONHASHSEED``): the same model scripted in two processes gave ``.pt`` members that differ
    in the order of those declarations (and hence in ``.data/serialization_id``, a hash of the records). Inside
    this block the module's ``set`` iterates sorted; with a future torch that no longer uses it, nothing changes.
    """
    from torch.jit import _recursive

    with _SCRIPT_LOCK:
        saved = vars(_recursive).get("set", _MISSING)
        _recursive.set = _SortedSet
        try:
            yield
        finally:
            if saved is _MISSING:
                del _recursive.set
            else:
                _recursive.set = saved


_MISSING = object()


def script_module(module):
    """``torch.jit.script`` with the TorchScript deprecation warning silenced (ScriptModules pass through) and
    module constants declared in a fixed order, so that the saved module's bytes do not depend on the process
    (see :func:`_sorted_constants`)."""
    if isinstance(module, torch.jit.ScriptModule):
        return module
    with quiet_torchscript(), _sorted_constants():
        return torch.jit.script(module)
