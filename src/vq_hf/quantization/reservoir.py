"""Per-codebook reservoir sampling (Algorithm R), vectorised on the device.

Sequential Algorithm R gives the item with 0-based arrival index ``j`` the slot ``j`` while ``j < S``, and
afterwards a uniform draw ``r ∈ {0, …, j}``, replacing slot ``r`` when ``r < S``. Here every incoming item
draws its own ``r`` at once; when several items of one batch draw the same slot, the LAST in arrival order
is kept — exactly what the sequential loop leaves behind, so the sample stays exactly uniform over
everything seen since the last :meth:`Reservoir.reset`. There is no Python loop over vectors and no host
synchronisation: the winner per slot is found with ``scatter_reduce(amax)`` and written with one
``index_copy_``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Reservoir"]


class Reservoir(nn.Module):
    """One uniform reservoir of ``size`` vectors per codebook.

    Buffers (persistent, fixed shape, so save → load → continue is exact):
        samples: ``(G, size + 1, D)`` float32; row ``size`` is a scratch row that absorbs rejected items.
        seen: ``(G,)`` int64, items offered since the last reset.

    Args:
        num_codebooks: G.
        size: S, samples kept per codebook.
        dim: D, the per-codebook vector size.
    """

    def __init__(self, num_codebooks: int, size: int, dim: int):
        super().__init__()
        if num_codebooks < 1:
            raise ValueError(f"num_codebooks must be >= 1, got {num_codebooks}")
        if size < 1:
            raise ValueError(f"reservoir_size must be >= 1, got {size}")
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.num_codebooks = num_codebooks
        self.size = size
        self.dim = dim
        self.register_buffer("samples", torch.zeros(num_codebooks, size + 1, dim))
        self.register_buffer("seen", torch.zeros(num_codebooks, dtype=torch.long))

    def extra_repr(self) -> str:
        return f"num_codebooks={self.num_codebooks}, size={self.size}, dim={self.dim}"

    @torch.no_grad()
    def reset(self) -> None:
        """Forget everything (the stored rows are ignored until overwritten)."""
        self.seen.zero_()

    def filled(self) -> torch.Tensor:
        """``(G,)`` int64 number of valid rows per codebook (a device tensor)."""
        return self.seen.clamp(max=self.size)

    def contents(self, group: int) -> torch.Tensor:
        """The valid rows of one codebook's reservoir, ``(n, D)`` (host-synchronises to read n)."""
        n = int(self.filled()[group])
        return self.samples[group, :n]

    @torch.no_grad()
    def insert(
        self,
        x: torch.Tensor,
        valid: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        """Offer a batch of vectors; invalid (padded) ones are skipped and not counted.

        Args:
            x: ``(G, N, D)`` vectors, in arrival order along N.
            valid: ``(N,)`` or ``(G, N)`` bool, True for real positions; None means all.
            generator: a generator on ``x.device`` (seeded by the caller for reproducibility).
        """
        G, N, D = x.shape
        if G != self.num_codebooks or D != self.dim:
            raise ValueError(
                f"Reservoir.insert: x must be (G={self.num_codebooks}, N, D={self.dim}); got {tuple(x.shape)}"
            )
        if N == 0:
            return
        S = self.size
        device = self.samples.device
        x = x.detach().to(device=device, dtype=torch.float32)
        if valid is None:
            valid = torch.ones(G, N, dtype=torch.bool, device=device)
        else:
            valid = valid.to(device=device, dtype=torch.bool).expand(G, N)
        # Arrival index j among the valid items of each codebook.
        order = torch.cumsum(valid.long(), dim=1) - 1
        j = self.seen.unsqueeze(1) + order
        # float64 uniform keeps floor(u·(j+1)) unbiased for streams far beyond 2^24 items.
        u = torch.rand(G, N, dtype=torch.float64, device=device, generator=generator)
        r = torch.minimum(torch.floor(u * (j + 1).to(torch.float64)).long(), j)
        slot = torch.where(j < S, j, r)
        accept = valid & (slot < S)
        slot = torch.where(accept, slot, torch.full_like(slot, S))
        flat = slot + torch.arange(G, device=device).unsqueeze(1) * (S + 1)
        # Same-slot collisions: the last item in arrival order (largest j) wins, as in sequential Algorithm R.
        key = torch.where(accept, j, torch.full_like(j, -1)).reshape(-1)
        winner = torch.full((G * (S + 1),), -1, dtype=torch.long, device=device)
        winner.scatter_reduce_(0, flat.reshape(-1), key, reduce="amax", include_self=True)
        write = accept.reshape(-1) & (winner.gather(0, flat.reshape(-1)) == key)
        scratch = (torch.arange(G, device=device) * (S + 1) + S).unsqueeze(1).expand(G, N).reshape(-1)
        dest = torch.where(write, flat.reshape(-1), scratch)
        src = torch.where(write.unsqueeze(1), x.reshape(G * N, D), torch.zeros((), device=device))
        src = src.to(self.samples.dtype)
        self.samples.view(G * (S + 1), D).index_copy_(0, dest, src)
        self.seen.add_(valid.sum(1))
