"""Host-side counters and seeded random streams shared by the stateful quantizers.

Every quantizer keeps its schedule counters (``step``, ``epoch``, …) in 0-dim int64 buffers, so they travel
with the state dict and save → load → continue is exact; the host needs their values every forward, and a
``.item()`` on a GPU tensor is a synchronisation. :class:`HostCounters` keeps a host mirror per buffer that
is refreshed only when the buffer was replaced or modified by someone else (load_state_dict,
from_pretrained, ``.to()``, user code).

Random draws use counter-based streams: a generator is re-seeded from ``(rng_seed, tag, counters…)`` before
each use, so a draw depends only on where in the run it happens, never on how many draws came before.
"""

from __future__ import annotations

import weakref

import torch

__all__ = ["HostCounters", "STREAM_TAGS", "clear_mirrors", "mix_seed"]

_MASK64 = (1 << 63) - 1
# One tag per independent random stream; new streams get new numbers (old ones never change meaning).
STREAM_TAGS = {"init": 1, "reservoir": 2, "kmeans": 3, "revival": 4, "dropout": 5}


def mix_seed(*parts: int) -> int:
    """Deterministic 63-bit seed from integers (splitmix64 steps); independent streams per (tag, counters)."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) & 0xFFFFFFFFFFFFFFFF
        h = (h + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & _MASK64


class _Mirror:
    """Host copy of a 0-dim integer buffer, refreshed (one sync) only if the buffer was replaced or
    modified by anyone else (load_state_dict, from_pretrained, .to(), user code)."""

    __slots__ = ("ref", "version", "value")

    def __init__(self):
        self.ref = None
        self.version = -1
        self.value = 0


class HostCounters:
    """Mixin for an ``nn.Module`` with 0-dim integer buffers read on the host and an ``rng_seed`` buffer.

    The module sets ``self._mirrors = {}`` and ``self._generators = {}`` in ``__init__`` and registers
    :func:`clear_mirrors` as a load_state_dict post hook.
    """

    def _read(self, name: str) -> int:
        t = getattr(self, name)
        m = self._mirrors.get(name)
        if m is None or m.ref is None or m.ref() is not t or m.version != t._version:
            m = self._mirrors.setdefault(name, _Mirror())
            m.value = int(t.item())
            m.ref = weakref.ref(t)
            m.version = t._version
        return m.value

    def _write(self, name: str, value: int) -> None:
        t = getattr(self, name)
        t.fill_(value)
        m = self._mirrors.setdefault(name, _Mirror())
        m.value = int(value)
        m.ref = weakref.ref(t)
        m.version = t._version

    def _generator(self, tag: str, device: torch.device, *counters: int) -> torch.Generator:
        key = f"{tag}:{device}"
        gen = self._generators.get(key)
        if gen is None:
            gen = torch.Generator(device=device)
            self._generators[key] = gen
        gen.manual_seed(mix_seed(self._read("rng_seed"), STREAM_TAGS[tag], *counters))
        return gen


def clear_mirrors(module, incompatible_keys) -> None:
    module._mirrors.clear()
