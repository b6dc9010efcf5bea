"""The rotation trick (Fifty et al., 2024, "Restructuring vector quantization with the rotation trick").

The straight-through estimator copies the decoder's gradient at the codeword ``q`` unchanged onto the
encoder output ``z``. The rotation trick instead writes ``q = λ R z`` with ``R`` the rotation that takes
the direction of ``z`` onto the direction of ``q`` (in the plane they span, identity elsewhere) and
``λ = ‖q‖ / ‖z‖``, both treated as constants (stop-gradient). The gradient reaching ``z`` is then
``λ Rᵀ g``: rotated and rescaled, so it carries how ``z`` sits relative to its codeword.

With ``u = z/‖z‖``, ``q̂ = q/‖q‖`` and ``w = (u + q̂)/‖u + q̂‖`` (the paper's Householder form),
``R = I − 2wwᵀ + 2q̂uᵀ`` and ``Rᵀg = g − 2w(wᵀg) + 2u(q̂ᵀg)``: O(D) per vector, no D×D matrix.

The forward value is ``q`` itself, bit for bit (the output is the codeword, so ``decode(codes)`` still
reproduces it exactly). Where the rotation is undefined — ``z`` or ``q`` of (near) zero norm, or ``q̂ = −u``
— the gradient falls back to the straight-through copy.
"""

from __future__ import annotations

import torch

__all__ = ["GRADIENT_ESTIMATORS", "apply_gradient_estimator", "rotation_trick", "rotate_gradient", "straight_through"]

GRADIENT_ESTIMATORS = ("ste", "rotation")
_EPS = 1e-12


def rotate_gradient(z: torch.Tensor, q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``λ Rᵀ g`` for vectors along the last axis (``z``, ``q``, ``g`` of one shape), computed in fp32 (fp64 for
    fp64 inputs)."""
    dt = torch.promote_types(g.dtype, torch.float32)
    z, q, g32 = z.to(dt), q.to(dt), g.to(dt)
    zn = z.norm(dim=-1, keepdim=True)
    qn = q.norm(dim=-1, keepdim=True)
    u = z / zn.clamp_min(_EPS)
    qh = q / qn.clamp_min(_EPS)
    s = u + qh
    sn = s.norm(dim=-1, keepdim=True)
    w = s / sn.clamp_min(_EPS)
    rotated = g32 - 2.0 * w * (w * g32).sum(-1, keepdim=True) + 2.0 * u * (qh * g32).sum(-1, keepdim=True)
    rotated = rotated * (qn / zn.clamp_min(_EPS))
    degenerate = (zn <= _EPS) | (qn <= _EPS) | (sn <= 1e-6)
    return torch.where(degenerate, g32, rotated).to(g.dtype)


class _RotationTrick(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, q):
        ctx.save_for_backward(z.detach(), q)
        return q.clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        z, q = ctx.saved_tensors
        return rotate_gradient(z, q, g), None


def rotation_trick(z: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """A tensor equal to ``q`` whose gradient with respect to ``z`` is ``λ Rᵀ g`` (module docstring).

    Args:
        z: ``(..., D)`` encoder outputs, with gradient.
        q: ``(..., D)`` the selected codewords; no gradient flows into ``q`` through this function (the
            codebook is trained by its own loss or EMA rule, as with the straight-through estimator).
    """
    if z.shape != q.shape:
        raise ValueError(f"rotation_trick: z {tuple(z.shape)} and q {tuple(q.shape)} must have one shape")
    return _RotationTrick.apply(z, q.detach())


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, q):
        return q.clone()

    @staticmethod
    def backward(ctx, g):
        return g, None


def straight_through(z: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """A tensor equal to ``q`` bit for bit (``z + sg(q − z)`` is not, in floating point) whose gradient is
    copied unchanged onto ``z``."""
    if z.shape != q.shape:
        raise ValueError(f"straight_through: z {tuple(z.shape)} and q {tuple(q.shape)} must have one shape")
    return _StraightThrough.apply(z, q.detach())


def apply_gradient_estimator(name: str, z: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``q`` in the forward pass, with the gradient to ``z`` given by estimator ``name`` (GRADIENT_ESTIMATORS)."""
    if name == "rotation":
        return rotation_trick(z, q)
    if name == "ste":
        return straight_through(z, q)
    raise ValueError(f"gradient_estimator must be one of {GRADIENT_ESTIMATORS}, got {name!r}")
