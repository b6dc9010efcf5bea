"""CPU-side accounting of what a piece of PyTorch code would cost on a GPU: host syncs and kernel launches.

A development tool (it patches ``torch.Tensor.tolist`` / ``numpy`` / ``cpu`` while a counter is active), so it
lives here, not in the installed package: ``benchmarks/count_ops.py`` and the host-sync tests import it with
``benchmarks/`` on ``sys.path``.

On a GPU, an operator that needs a value computed on the device (``.item()``, a data-dependent output
shape, a blocking copy) stalls the Python thread until the whole CUDA queue has drained; and in eager mode
every operator that launches a kernel costs a few microseconds of host dispatch. Neither needs a GPU to be
*found*: both are properties of which ATen operators the code calls, with which arguments. This module
records them with a :class:`~torch.utils._python_dispatch.TorchDispatchMode`, which sees every ATen operator
after autograd and after ``CompositeImplicitAutograd`` decompositions (so ``t.item()`` arrives as
``aten::_local_scalar_dense``, ``x[mask]`` as ``aten::index.Tensor`` with a bool index, ``torch.where(c)``
as ``aten::nonzero``), forward and backward alike, and nothing below that (operators called from inside
another operator's C++ kernel are not seen).

- :class:`HostSyncCounter` — context manager recording every operator that forces a device→host
  synchronisation on CUDA, with the op name and the Python location (first frame inside the ``vq_hf``
  package).
- :func:`count_kernel_ops` — runs a callable and counts the operators that would launch a kernel
  (views, metadata changes and bare allocations excluded), together with its host syncs.

What counts as a host sync (CUDA behaviour of PyTorch 2.x, checked against the ATen sources):

- reading a value: ``aten::_local_scalar_dense`` (``.item()``, ``bool(t)``, ``int(t)``, ``float(t)``,
  ``if t:``, ``range(t)``, formatting a 0-dim tensor), ``aten::equal``, ``aten::allclose``;
- data-dependent output shapes: ``aten::nonzero`` (``torch.nonzero``, ``argwhere``, one-argument
  ``torch.where``; ``nonzero_static`` does *not* sync), ``aten::masked_select``, the ``unique`` family,
  ``aten::bincount`` (reads min/max), ``aten::repeat_interleave`` without ``output_size``, ``histc`` with
  ``min == max`` (reads min/max), indexing or index-put with a bool/uint8 index (``x[mask]``,
  ``x[mask] = t``; CUDA turns the mask into indices with ``nonzero``; the exception is
  ``x[mask] = <python scalar>``, which PyTorch routes to ``masked_fill_``);
- host-side computations and checks: ``aten::_linalg_check_errors`` and any ``*_ex`` op called with
  ``check_errors=True`` (``torch.linalg.inv``, ``cholesky``, ``solve``…), ``linalg_eig``, ``_linalg_eigh``,
  ``_linalg_svd``, ``linalg_pinv`` (documented to synchronise), ``normal`` with a tensor ``std`` (checks
  ``std >= 0`` on the host), ``_ctc_loss`` with tensor lengths (copies the lengths to the host);
- copies between the host and a device with ``non_blocking=False`` (``.cpu()``, ``.to("cuda")``,
  ``torch.tensor(data, device="cuda")``) — **only when the tensors really live on a device**; on a
  CPU-only run source and destination are both the CPU and the copy is invisible at the dispatcher;
- ``Tensor.tolist()``, ``Tensor.numpy()`` (and ``np.asarray(t)``), ``Tensor.cpu()``: these dispatch no
  operator on a CPU tensor, so while a counter is active they are wrapped and recorded as "python reads"
  (``python_reads=True``, the default).

Not detected (limits of a CPU-side check):

- anything not expressed as an ATen operator: ``torch.cuda.synchronize()``, ``Event/Stream.synchronize``,
  ``torch.cuda.memory_*`` queries, NCCL collectives, cuDNN/cuBLAS internals, Triton launches;
- syncs inside another operator's kernel that this module does not list (the dispatch mode only sees the
  outer operator): the list above is the set of known cases, not a proof;
- on a CPU-only run, copies between host and device (see above), and ``torch.tensor(data, device=...)``
  (the blocking host→device copy behind it cannot be told from a host tensor);
- tensors that would legitimately live on the host in a GPU run: with ``cpu_is_device=True`` (the
  default, for CPU-only tests) every CPU tensor stands for a device tensor, except tensors created from
  Python data inside the counter (``torch.tensor(...)``, which stay on the host in a GPU run too).
  Set ``cpu_is_device=False`` on a GPU run to count only syncs on real device tensors;
- version drift: e.g. ``torch.multinomial`` without replacement (or with one sample) synchronised in older
  PyTorch releases through ``.item()`` checks; recent ones (2.13, checked) use device-side asserts and do
  not, so it is not listed.

Kernel counts are the number of operators that would each launch (at least) one kernel in eager mode.
Some launch more than one on CUDA (cuBLAS ``baddbmm`` copies its bias first, cub scans and ``topk`` run
several passes, ``multinomial`` normalises then samples), so the count is a floor on launches; it is still
far closer to CUDA than profiling the CPU kernels, whose implementations call further operators (extra
``copy_``, ``as_strided_``, ``fill_``) that a CUDA kernel does not.
"""

from __future__ import annotations

import collections
import os
import sys
import threading
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import vq_hf

__all__ = ["HostSync", "HostSyncCounter", "OpCount", "count_kernel_ops", "is_kernel_op", "NO_KERNEL", "SYNC_OPS"]

_PACKAGE_DIR = os.path.dirname(os.path.abspath(vq_hf.__file__))  # the locations reported are inside vq_hf
_THIS_FILE = os.path.abspath(__file__)
_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__))

_READ_VALUE = "reads a tensor value on the host (.item(), bool(t), int(t), float(t), `if t:`)"
_DATA_SHAPE = "data-dependent output shape: CUDA copies a count to the host"

# Operators that synchronise whatever their arguments (keyed by schema name, i.e. all overloads).
SYNC_OPS: dict[str, str] = {
    "aten::_local_scalar_dense": _READ_VALUE,
    # Composite ops that normally arrive as _local_scalar_dense; kept in case a backend registers them.
    "aten::item": _READ_VALUE,
    "aten::is_nonzero": _READ_VALUE,
    "aten::equal": "compares on the device and returns a Python bool",
    "aten::allclose": "compares on the device and returns a Python bool",
    "aten::nonzero": _DATA_SHAPE + " (use torch.nonzero_static)",
    "aten::masked_select": _DATA_SHAPE,
    "aten::_unique": _DATA_SHAPE,
    "aten::_unique2": _DATA_SHAPE,
    "aten::unique_dim": _DATA_SHAPE,
    "aten::unique_consecutive": _DATA_SHAPE,
    "aten::unique_dim_consecutive": _DATA_SHAPE,
    "aten::bincount": "reads the input's min and max on the host to size the output",
    "aten::_linalg_check_errors": "copies LAPACK error codes to the host",
    "aten::linalg_eig": "documented to synchronise on CUDA (computed on the host)",
    "aten::_linalg_eigh": "documented to synchronise on CUDA",
    "aten::_linalg_svd": "documented to synchronise on CUDA",
    "aten::linalg_pinv": "documented to synchronise on CUDA",
}

_INDEX_READ = {"aten::index", "aten::_unsafe_index"}
_INDEX_WRITE = {"aten::index_put", "aten::index_put_", "aten::_index_put_impl_", "aten::_unsafe_index_put"}
_COPIES = {"aten::_to_copy", "aten::copy_", "aten::_copy_from", "aten::_copy_from_and_resize"}
_CTC_TENSOR_LENGTHS = {"aten::_ctc_loss", "aten::_ctc_loss_backward", "aten::_use_cudnn_ctc_loss"}

# Operators that launch no kernel on a GPU, besides views (``OpOverload.is_view``): bare allocations,
# in-place metadata changes, metadata-only reinterpretations, and host reads (counted as syncs instead).
NO_KERNEL: frozenset[str] = frozenset({
    "aten::empty", "aten::empty_strided", "aten::empty_like", "aten::empty_permuted", "aten::new_empty",
    "aten::new_empty_strided", "aten::resize_", "aten::resize_as_", "aten::_resize_output_", "aten::set_",
    "aten::as_strided_", "aten::squeeze_", "aten::unsqueeze_", "aten::t_", "aten::transpose_",
    "aten::swapdims_", "aten::swapaxes_", "aten::detach_", "aten::_unsafe_view", "aten::lift",
    "aten::lift_fresh", "aten::_assert_tensor_metadata", "aten::is_same_size", "aten::sym_size",
    "aten::sym_stride", "aten::sym_numel", "aten::sym_storage_offset", "aten::_has_compatible_shallow_copy_type",
    "aten::_local_scalar_dense", "aten::item", "aten::is_nonzero",
})


def is_kernel_op(func: torch._ops.OpOverload) -> bool:
    """Whether ``func`` would launch (at least) one kernel on a GPU: not a view, not in :data:`NO_KERNEL`."""
    return not func.is_view and func._schema.name not in NO_KERNEL


def _op_name(func: torch._ops.OpOverload) -> str:
    overload = func._overloadname
    return func._schema.name if overload == "default" else f"{func._schema.name}.{overload}"


def _bind(func: torch._ops.OpOverload, args: tuple, kwargs: dict) -> dict[str, Any]:
    """Arguments by schema name (positional ones zipped with the schema, keyword ones as given)."""
    bound = {a.name: v for a, v in zip(func._schema.arguments, args)}
    bound.update(kwargs)
    return bound


@dataclass(frozen=True)
class HostSync:
    """One operator that forces a device→host synchronisation on CUDA.

    Attributes:
        op: the ATen operator, e.g. ``"aten::_local_scalar_dense"`` or ``"aten::index.Tensor"``.
        reason: why it synchronises.
        location: ``"path/file.py:LINE in function"`` of the innermost frame inside the focus package
            (``vq_hf`` by default), else of the innermost frame outside torch and this module.
        stack: up to four such frames, innermost first (focus frames, then the first caller outside it).
        backward_node: the autograd node being run (e.g. ``"IndexSelectBackward0"``) when the op comes
            from a backward pass, else None.
    """

    op: str
    reason: str
    location: str
    stack: tuple[str, ...] = ()
    backward_node: str | None = None

    def __str__(self) -> str:
        where = self.location + (f" [backward: {self.backward_node}]" if self.backward_node else "")
        return f"{self.op} at {where} — {self.reason}"


# ----------------------------------------------------------------------------- python-level reads

# Tensor methods that read data on the host without dispatching an operator for a CPU tensor.
_PYTHON_READS = ("tolist", "numpy", "cpu")
_patch_lock = threading.Lock()
_patch_users = 0
_originals: dict[str, Any] = {}
_active = threading.local()  # .counters: list of active HostSyncCounter on this thread, outermost first


def _active_counters() -> list[HostSyncCounter]:
    return getattr(_active, "counters", [])


def _make_wrapper(name: str, original):
    def wrapper(self, *args, **kwargs):
        counters = [c for c in _active_counters() if c.python_reads]
        if not counters:
            return original(self, *args, **kwargs)
        for c in counters:
            c._python_read(self, name)
        # The copy this method dispatches (if any) is the same sync: do not record it twice.
        for c in counters:
            c._suppress += 1
        try:
            return original(self, *args, **kwargs)
        finally:
            for c in counters:
                c._suppress -= 1

    wrapper.__name__ = name
    wrapper.__doc__ = getattr(original, "__doc__", None)
    return wrapper


def _patch_python_reads() -> None:
    global _patch_users
    with _patch_lock:
        if _patch_users == 0:
            for name in _PYTHON_READS:
                # Only torch.Tensor's own attribute is replaced (the C method lives on TensorBase), so
                # restoring is deleting it again when it was inherited.
                _originals[name] = torch.Tensor.__dict__.get(name)
                setattr(torch.Tensor, name, _make_wrapper(name, getattr(torch.Tensor, name)))
        _patch_users += 1


def _unpatch_python_reads() -> None:
    global _patch_users
    with _patch_lock:
        _patch_users -= 1
        if _patch_users == 0:
            for name in _PYTHON_READS:
                original = _originals.pop(name)
                if original is None:
                    delattr(torch.Tensor, name)
                else:
                    setattr(torch.Tensor, name, original)


# ----------------------------------------------------------------------------- the counter


class HostSyncCounter(TorchDispatchMode):
    """Record every ATen operator that would force a device→host synchronisation on CUDA.

    Use as a context manager around the code to check (forward and backward are both seen)::

        with HostSyncCounter() as syncs:
            loss = model(x).loss
            loss.backward()
        assert syncs.count == 0, syncs.report()

    See the module docstring for exactly what is and is not detected. Eager mode only (under
    ``torch.compile`` the compiled region is not dispatched op by op). Counters nest (an outer counter
    also sees what an inner one sees). All operators seen are tallied in :attr:`ops` as well, which is
    what :func:`count_kernel_ops` builds on.

    Args:
        cpu_is_device: treat CPU tensors as stand-ins for device tensors (CPU-only tests of GPU code);
            tensors created from Python data inside the counter (``torch.tensor``) still count as host
            tensors. False: only operators on non-CPU tensors count (for runs on a real GPU).
        focus: directories whose frames are reported as the location (default: the ``vq_hf`` package).
        python_reads: also record ``Tensor.tolist()``, ``.numpy()`` and ``.cpu()`` calls, which dispatch
            nothing on CPU tensors (the methods are wrapped on ``torch.Tensor`` while a counter is active).

    Attributes:
        syncs: the :class:`HostSync` events, in order.
        ops: ``collections.Counter`` of every operator seen (``"aten::mul.Tensor"`` → calls).
    """

    def __init__(self, cpu_is_device: bool = True, focus: Iterable[str] | None = None, python_reads: bool = True):
        super().__init__()
        self.cpu_is_device = cpu_is_device
        self.focus = tuple(os.path.abspath(p) for p in (focus if focus is not None else (_PACKAGE_DIR,)))
        self.python_reads = python_reads
        self.syncs: list[HostSync] = []
        self.ops: collections.Counter[str] = collections.Counter()
        self._suppress = 0
        # Tensors made from Python data (aten::lift_fresh outputs): host tensors in a GPU run too. Keyed by
        # id with a weak reference to check identity: a WeakSet would compare tensors with ==, an operator.
        self._host_made: dict[int, weakref.ref] = {}

    # -- context management

    def __enter__(self):
        _active.counters = _active_counters() + [self]
        if self.python_reads:
            _patch_python_reads()
        try:
            return super().__enter__()
        except BaseException:
            self._leave()
            raise

    def __exit__(self, exc_type, exc, tb):
        try:
            return super().__exit__(exc_type, exc, tb)
        finally:
            self._leave()

    def _leave(self) -> None:
        counters = _active_counters()
        if self in counters:
            counters.remove(self)
        if self.python_reads:
            _unpatch_python_reads()

    # -- results

    @property
    def count(self) -> int:
        """Number of host syncs recorded."""
        return len(self.syncs)

    def report(self) -> str:
        """Human-readable list of the syncs (for assertion messages)."""
        if not self.syncs:
            return "no host synchronisation"
        lines = [f"{len(self.syncs)} host synchronisation(s):"]
        lines += [f"  {i + 1}. {s}" for i, s in enumerate(self.syncs)]
        return "\n".join(lines)

    def assert_count(self, expected: int) -> None:
        """Raise ``AssertionError`` (with :meth:`report`) unless exactly ``expected`` syncs were recorded."""
        if self.count != expected:
            raise AssertionError(f"expected {expected} host synchronisation(s), got {self.count}\n{self.report()}")

    # -- dispatch

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.ops[_op_name(func)] += 1
        if not self._suppress:
            reason = self._sync_reason(func, args, kwargs)
            if reason is not None:
                # Recorded before running: the op may raise (that is often why it reads the value).
                self._record(_op_name(func), reason)
        out = func(*args, **kwargs)
        if func._schema.name == "aten::lift_fresh" and isinstance(out, torch.Tensor):
            self._remember_host_made(out)
        return out

    def _remember_host_made(self, t: torch.Tensor) -> None:
        key = id(t)

        def forget(ref, key=key, table=self._host_made):
            if table.get(key) is ref:  # the id may already belong to a newer tensor
                del table[key]

        self._host_made[key] = weakref.ref(t, forget)

    def _is_host_made(self, t: torch.Tensor) -> bool:
        ref = self._host_made.get(id(t))
        return ref is not None and ref() is t

    def _is_device(self, t: torch.Tensor) -> bool:
        """Whether ``t`` stands for a device tensor (see ``cpu_is_device``)."""
        if t.device.type == "meta":
            return False
        if t.device.type != "cpu":
            return True
        return self.cpu_is_device and not self._is_host_made(t)

    def _any_device(self, args, kwargs) -> bool:
        return any(self._is_device(t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor))

    def _sync_reason(self, func, args, kwargs) -> str | None:
        name = func._schema.name
        if name in SYNC_OPS:
            return SYNC_OPS[name] if self._any_device(args, kwargs) else None
        if name in _COPIES:
            return self._copy_reason(func, args, kwargs)
        if name == "aten::lift_fresh":
            # torch.tensor(data, device=...) copies host data to the device with non_blocking=False.
            t = args[0] if args else None
            if isinstance(t, torch.Tensor) and t.device.type not in ("cpu", "meta"):
                return "torch.tensor(...) on a device: blocking host→device copy"
            return None
        bound = _bind(func, args, kwargs)
        if bound.get("check_errors") is True and self._any_device(args, kwargs):
            return "check_errors=True copies LAPACK error codes to the host"
        if name in _INDEX_READ or name in _INDEX_WRITE:
            return self._index_reason(name, bound)
        if name == "aten::repeat_interleave" and func._overloadname == "Tensor":
            if bound.get("output_size") is None and self._any_device(args, kwargs):
                return "repeat_interleave without output_size reads sum(repeats) on the host"
            return None
        if name == "aten::histc":
            if bound.get("min", 0) == bound.get("max", 0) and self._any_device(args, kwargs):
                return "histc with min == max reads the input's min and max on the host"
            return None
        if name == "aten::normal" and isinstance(bound.get("std"), torch.Tensor):
            return "normal with a tensor std checks std >= 0 on the host" if self._is_device(bound["std"]) else None
        if name in _CTC_TENSOR_LENGTHS and func._overloadname == "Tensor":
            lengths = [bound.get("input_lengths"), bound.get("target_lengths")]
            if any(isinstance(t, torch.Tensor) and self._is_device(t) for t in lengths):
                return "CTC loss with tensor lengths copies the lengths to the host"
        return None

    def _index_reason(self, name: str, bound: dict[str, Any]) -> str | None:
        indices = [i for i in (bound.get("indices") or ()) if isinstance(i, torch.Tensor)]
        masks = [i for i in indices if i.dtype in (torch.bool, torch.uint8)]
        if not masks or not self._is_device(bound["self"]):
            return None
        if name in _INDEX_WRITE:
            value = bound.get("values", bound.get("value"))
            # PyTorch's canDispatchToMaskedFill: one mask on self's device, a one-element host value and no
            # accumulation go to masked_fill_ (no sync): `x[mask] = 0.0`.
            if (
                not bound.get("accumulate", False)
                and len(indices) == 1
                and isinstance(value, torch.Tensor)
                and value.numel() == 1
                and not self._is_device(value)
            ):
                return None
            return "index_put with a bool mask: CUDA converts the mask to indices with nonzero"
        return "indexing with a bool mask: CUDA converts the mask to indices with nonzero"

    def _copy_reason(self, func, args, kwargs) -> str | None:
        bound = _bind(func, args, kwargs)
        if func._schema.name == "aten::_to_copy":
            src = bound["self"].device
            dst = bound.get("device") or src
        elif func._schema.name == "aten::copy_":
            src, dst = bound["src"].device, bound["self"].device
        else:  # _copy_from(self, dst) / _copy_from_and_resize(self, dst)
            src, dst = bound["self"].device, bound["dst"].device
        dst = torch.device(dst)
        crosses = (src.type == "cpu") != (dst.type == "cpu") and "meta" not in (src.type, dst.type)
        if crosses and not bound.get("non_blocking", False):
            direction = "device→host" if dst.type == "cpu" else "host→device"
            return f"blocking {direction} copy (non_blocking=False)"
        return None

    def _python_read(self, tensor: torch.Tensor, method: str) -> None:
        if self._suppress or not isinstance(tensor, torch.Tensor) or not self._is_device(tensor):
            return
        if method == "cpu" and tensor.device.type != "cpu":
            return  # a real device tensor: the dispatched _to_copy is recorded instead
        self._record(f"Tensor.{method}()", "copies the tensor's data to the host")

    # -- locations

    def _record(self, op: str, reason: str) -> None:
        frames = self._frames()
        node = torch._C._current_autograd_node()
        self.syncs.append(
            HostSync(
                op=op,
                reason=reason,
                location=frames[0] if frames else "<unknown>",
                stack=tuple(frames[:4]),
                backward_node=node.name() if node is not None else None,
            )
        )

    def _frames(self) -> list[str]:
        """Focus frames (innermost first) followed by the first outside caller; else the first outside frame."""
        focus, outside = [], None
        frame = sys._getframe(1)
        while frame is not None:
            path = os.path.abspath(frame.f_code.co_filename)
            if path != _THIS_FILE and not path.startswith(_TORCH_DIR + os.sep):
                text = f"{_short(path, self.focus)}:{frame.f_lineno} in {frame.f_code.co_name}"
                if any(path.startswith(root + os.sep) for root in self.focus):
                    focus.append(text)
                elif outside is None:
                    outside = text
                    if focus:
                        break  # the focus frames and who called them
            frame = frame.f_back
        return focus + ([outside] if outside else [])


def _short(path: str, roots: tuple[str, ...]) -> str:
    """``vq_hf/quantization/quantizer.py`` for a focus file; a cwd-relative path for others when shorter."""
    for root in roots:
        if path.startswith(root + os.sep):
            return os.path.relpath(path, os.path.dirname(root))
    rel = os.path.relpath(path)
    return rel if not rel.startswith("..") else path


# ----------------------------------------------------------------------------- kernel counting


@dataclass
class OpCount:
    """Result of :func:`count_kernel_ops`.

    Attributes:
        kernel_ops: operators that would launch (at least) one kernel, see :func:`is_kernel_op`.
        by_op: those operators by name (``"aten::mul.Tensor"`` → calls), most frequent first.
        host_syncs: the :class:`HostSync` events of the same run.
        all_ops: every operator seen, views and allocations included.
        result: what the callable returned.
    """

    kernel_ops: int
    by_op: dict[str, int]
    host_syncs: list[HostSync] = field(default_factory=list)
    all_ops: dict[str, int] = field(default_factory=dict)
    result: Any = None


class _KernelTally(HostSyncCounter):
    """A :class:`HostSyncCounter` that also keeps the kernel-launching subset of :attr:`ops`."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.kernels: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if is_kernel_op(func):
            self.kernels[_op_name(func)] += 1
        return super().__torch_dispatch__(func, types, args, kwargs)


def count_kernel_ops(fn: Callable[..., Any], *args, cpu_is_device: bool = True, **kwargs) -> OpCount:
    """Run ``fn(*args, **kwargs)`` once and count its kernel-launching operators and host syncs.

    Multiply ``kernel_ops`` by the per-launch cost of eager PyTorch on a GPU (≈ 3–5 µs) for the dispatch
    floor of the call. Warm the callable up first if its first call differs (lazy state, caches).
    ``cpu_is_device`` is passed to :class:`HostSyncCounter`.
    """
    with _KernelTally(cpu_is_device=cpu_is_device) as tally:
        result = fn(*args, **kwargs)
    return OpCount(
        kernel_ops=sum(tally.kernels.values()),
        by_op=dict(tally.kernels.most_common()),
        host_syncs=list(tally.syncs),
        all_ops=dict(tally.ops.most_common()),
        result=result,
    )
