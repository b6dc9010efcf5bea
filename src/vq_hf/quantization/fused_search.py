"""Fused nearest-code search (Triton): distance + argmin in one pass, never writing the N×K matrix.

`search.py` is the reference and the CPU / no-Triton path (and this module's fallback);
:func:`vq_hf.quantization.backend.select_search` imports this module lazily and sends CUDA tensors here when
:func:`is_available` says yes. Both return the same thing:

    codes      (G, N) int64    index of the nearest codeword of each vector in its group's codebook
    distances  (G, N) float32  squared Euclidean distance ‖x − e_code‖² to that codeword

Precision policy (why the kernel agrees with an fp64 argmin):

1. *Centring.* The argmin is translation invariant, so the kernel searches on ``x − c`` and ``e − c`` with
   ``c`` the codebook mean of each group. This removes the common offset that makes the expansion
   ``‖e‖² − 2 x·e`` cancel catastrophically (an uncentred bf16 search picks the wrong code for > 99 % of
   vectors at a mean offset of 100; centred it is exact).
2. *Candidate search.* Each program keeps, for its BLOCK_N rows, the best two scores ``‖e_c‖² − 2 x_c·e_c``
   over all K codewords, computed with ``tl.dot`` at ``precision`` and accumulated in fp32:
   ``"tf32x3"`` (default: three TF32 tensor-core products, ≈ fp32 accuracy), ``"tf32"`` (fastest, 10-bit
   mantissa; the re-check below repairs the top-2 order, not a best code that fell out of the top two) or
   ``"ieee"`` (fp32 FMA, slowest).
3. *Exact re-check.* The two candidates are re-scored as ``Σ (x − e)²`` in fp64 from the original fp32
   inputs (exact for the values involved), and the smaller wins, ties going to the lower index like
   ``torch.argmin``. The returned distance is that fp64 value rounded to fp32.

So the result equals the fp64 argmin unless three codewords are within the candidate-search error of each
other (score differences below roughly 1e-6·‖x_c‖·‖e_c‖ for tf32x3 / ieee).

The optional epilogue of :func:`fused_quantize` also writes the chosen codewords (the gather) and adds each
vector into per-code count / sum accumulators (the EMA statistics of eq. 4) with atomics, reading ``x``
once more from cache instead of running separate gather / index_add kernels. fp32 atomics make the sums'
summation order, and so their last bits, run-dependent (as ``torch.index_add_`` on CUDA); counts are exact.

With ``TRITON_INTERPRET=1`` set before Triton is first imported, the same kernel runs on CPU tensors through
Triton's interpreter (numpy, fp32 products whatever ``precision`` says): slow, meant for tests of the kernel
logic on machines without a GPU (tests/test_fused_search.py runs it in a subprocess for that reason).

A tile configuration that fails to compile on some GPU / Triton pair (e.g. too much shared memory) makes
:func:`fused_nearest_codes` warn once and serve those shapes with search.py's torch path; the environment
variable ``VQ_HF_DISABLE_FUSED=1`` keeps ``search_backend="auto"`` off the kernel (an explicit
``search_backend="triton"`` still runs it: that is how the tests compare the two). ``benchmarks/compile_fused_kernel.py``
compiles every configuration ahead of time for a given architecture without a GPU.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
from typing import Optional

import torch

from .search import chunked_nearest_codes
from .updates import ema_accumulate_

__all__ = [
    "FusedSearchOutput",
    "PRECISIONS",
    "fused_nearest_codes",
    "fused_quantize",
    "interpreting",
    "is_available",
    "triton_importable",
]

PRECISIONS = ("tf32x3", "tf32", "ieee")

try:  # Triton is optional: without it search.py's torch path is used.
    import triton
    import triton.language as tl

    _TRITON_IMPORT_ERROR: Optional[BaseException] = None
except Exception as err:  # pragma: no cover - depends on the environment
    triton = None
    tl = None
    _TRITON_IMPORT_ERROR = err


def triton_importable() -> bool:
    """True when ``import triton`` works in this environment."""
    return _TRITON_IMPORT_ERROR is None


def is_available(x: torch.Tensor) -> bool:
    """Whether the fused kernel should serve ``x``: a CUDA tensor and Triton importable.

    CPU tensors answer False even though the interpreter can run them: it is far slower than the GEMM path.
    Setting the environment variable ``VQ_HF_DISABLE_FUSED=1`` answers False everywhere (A/B timing, or to
    rule the kernel out when debugging).
    """
    disabled = os.environ.get("VQ_HF_DISABLE_FUSED", "0").strip().lower() not in ("", "0", "false", "no")
    return bool(x.is_cuda and triton_importable() and not disabled)


@dataclass
class FusedSearchOutput:
    """What :func:`fused_quantize` returns.

    Attributes:
        codes: (G, N) int64, nearest codeword per vector.
        distances: (G, N) float32, ‖x − e_code‖².
        quantized: (G, N, D) float32 chosen codewords, or None when not requested.
        counts: (G, K) float32 vectors assigned to each code (added to the given tensor), or None.
        sums: (G, K, D) float32 sum of the vectors assigned to each code (added to the given tensor), or None.
    """

    codes: torch.Tensor
    distances: torch.Tensor
    quantized: Optional[torch.Tensor] = None
    counts: Optional[torch.Tensor] = None
    sums: Optional[torch.Tensor] = None


if triton is not None:

    def _nearest_code_kernel(
        x_ptr, cb_ptr, cbc_ptr, sq_ptr, center_ptr,
        codes_ptr, dist_ptr, quant_ptr, counts_ptr, sums_ptr, w_ptr,
        N, K, D,
        stride_xg, stride_xn, stride_xd,
        stride_cg, stride_ck, stride_cd,
        BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
        X_RESIDENT: tl.constexpr, PRECISION: tl.constexpr,
        WRITE_QUANT: tl.constexpr, STATS: tl.constexpr, HAS_WEIGHTS: tl.constexpr,
    ):
        # Grid: (cdiv(N, BLOCK_N), G). cbc (centred codebook) and sq (its squared norms) are contiguous
        # (G, K, D) / (G, K); quant (G, N, D), sums (G, K, D), counts (G, K), codes, dist (G, N) too.
        pid_n = tl.program_id(0)
        g = tl.program_id(1).to(tl.int64)
        rows = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        row_ok = rows < N
        rows64 = rows.to(tl.int64)
        x_rows = x_ptr + g * stride_xg + rows64[:, None] * stride_xn
        dd0 = tl.arange(0, BLOCK_D)
        inf = float("inf")

        if X_RESIDENT:
            # D fits one chunk: keep the centred input tile in registers for the whole K loop.
            d_ok0 = dd0 < D
            m0 = row_ok[:, None] & d_ok0[None, :]
            c0 = tl.load(center_ptr + g * D + dd0, mask=d_ok0, other=0.0)
            xr = tl.load(x_rows + dd0[None, :] * stride_xd, mask=m0, other=0.0)
            xr = tl.where(m0, xr - c0[None, :], 0.0)

        best1 = tl.full((BLOCK_N,), inf, tl.float32)
        best2 = tl.full((BLOCK_N,), inf, tl.float32)
        idx1 = tl.zeros((BLOCK_N,), tl.int32)
        idx2 = tl.zeros((BLOCK_N,), tl.int32)
        kk = tl.arange(0, BLOCK_K)
        for k0 in range(0, K, BLOCK_K):
            cols = k0 + kk
            col_ok = cols < K
            cb_rows = cbc_ptr + (g * K + cols.to(tl.int64))[:, None] * D
            acc = tl.zeros((BLOCK_N, BLOCK_K), tl.float32)
            if X_RESIDENT:
                e = tl.load(cb_rows + dd0[None, :], mask=col_ok[:, None] & d_ok0[None, :], other=0.0)
                acc = tl.dot(xr, tl.trans(e), acc, input_precision=PRECISION)
            else:
                for d_start in range(0, D, BLOCK_D):
                    dd = d_start + dd0
                    d_ok = dd < D
                    m = row_ok[:, None] & d_ok[None, :]
                    c = tl.load(center_ptr + g * D + dd, mask=d_ok, other=0.0)
                    xa = tl.load(x_rows + dd[None, :] * stride_xd, mask=m, other=0.0)
                    xa = tl.where(m, xa - c[None, :], 0.0)
                    e = tl.load(cb_rows + dd[None, :], mask=col_ok[:, None] & d_ok[None, :], other=0.0)
                    acc = tl.dot(xa, tl.trans(e), acc, input_precision=PRECISION)
            sq = tl.load(sq_ptr + g * K + cols, mask=col_ok, other=inf)
            score = sq[None, :] - 2.0 * acc
            score = tl.where(col_ok[None, :], score, inf)

            # Best two of this tile (first index on ties) ...
            t1 = tl.min(score, axis=1)
            j1 = tl.argmin(score, axis=1)
            score = tl.where(kk[None, :] == j1[:, None], inf, score)
            t2 = tl.min(score, axis=1)
            j2 = tl.argmin(score, axis=1)
            j1 = j1 + k0
            j2 = j2 + k0
            # ... merged into the running best two. Tiles come in index order, so a strict "<" keeps the
            # earlier index on equal scores.
            take = t1 < best1
            a = tl.where(take, best1, t1)
            a_i = tl.where(take, idx1, j1)
            b = tl.where(take, t2, best2)
            b_i = tl.where(take, j2, idx2)
            best1 = tl.where(take, t1, best1)
            idx1 = tl.where(take, j1, idx1)
            use_a = (a < b) | ((a == b) & (a_i < b_i))
            best2 = tl.where(use_a, a, b)
            idx2 = tl.where(use_a, a_i, b_i)

        # Exact re-check of the two candidates in fp64 on the original (uncentred) values.
        has2 = best2 < inf
        e1_rows = cb_ptr + g * stride_cg + idx1.to(tl.int64)[:, None] * stride_ck
        e2_rows = cb_ptr + g * stride_cg + idx2.to(tl.int64)[:, None] * stride_ck
        d1 = tl.zeros((BLOCK_N,), tl.float64)
        d2 = tl.zeros((BLOCK_N,), tl.float64)
        for d_start in range(0, D, BLOCK_D):
            dd = d_start + dd0
            m = row_ok[:, None] & (dd < D)[None, :]
            xv = tl.load(x_rows + dd[None, :] * stride_xd, mask=m, other=0.0).to(tl.float64)
            e1 = tl.load(e1_rows + dd[None, :] * stride_cd, mask=m, other=0.0).to(tl.float64)
            e2 = tl.load(e2_rows + dd[None, :] * stride_cd, mask=m & has2[:, None], other=0.0).to(tl.float64)
            d1 += tl.sum((xv - e1) * (xv - e1), axis=1)
            d2 += tl.sum((xv - e2) * (xv - e2), axis=1)
        second = has2 & ((d2 < d1) | ((d2 == d1) & (idx2 < idx1)))
        code = tl.where(second, idx2, idx1)
        dist = tl.where(second, d2, d1).to(tl.float32)
        out_off = g * N + rows64
        tl.store(codes_ptr + out_off, code.to(tl.int64), mask=row_ok)
        tl.store(dist_ptr + out_off, dist, mask=row_ok)

        if WRITE_QUANT or STATS:
            code64 = code.to(tl.int64)
            e_rows = cb_ptr + g * stride_cg + code64[:, None] * stride_ck
            # Weighted statistics: a zero weight (padding) adds nothing, and is not even issued as an atomic.
            if HAS_WEIGHTS:
                wv = tl.load(w_ptr + rows64, mask=row_ok, other=0.0)
                stat_ok = row_ok & (wv != 0.0)
            else:
                wv = tl.full((BLOCK_N,), 1.0, tl.float32)
                stat_ok = row_ok
            if STATS:
                tl.atomic_add(counts_ptr + g * K + code64, wv, mask=stat_ok)
            for d_start in range(0, D, BLOCK_D):
                dd = d_start + dd0
                m = row_ok[:, None] & (dd < D)[None, :]
                if WRITE_QUANT:
                    ev = tl.load(e_rows + dd[None, :] * stride_cd, mask=m, other=0.0)
                    tl.store(quant_ptr + out_off[:, None] * D + dd[None, :], ev, mask=m)
                if STATS:
                    ms = m & stat_ok[:, None]
                    xv = tl.load(x_rows + dd[None, :] * stride_xd, mask=ms, other=0.0)
                    tl.atomic_add(sums_ptr + (g * K + code64)[:, None] * D + dd[None, :], xv * wv[:, None], mask=ms)

    _JIT_KERNEL = triton.jit(_nearest_code_kernel)


def interpreting() -> bool:
    """Whether Triton was imported in interpreter mode (TRITON_INTERPRET=1 before ``import triton``)."""
    try:
        return bool(triton.knobs.runtime.interpret)
    except AttributeError:  # pragma: no cover - Triton < 3.4 has no knobs module
        return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _launch_config(n: int, k: int, d: int, on_cuda: bool) -> dict:
    """Tile sizes: tl.dot needs every dimension ≥ 16; an input tile of ≤ 128 columns stays in registers."""
    block_d = max(16, min(128, _next_pow2(d)))
    x_resident = d <= block_d
    if not on_cuda:
        # The interpreter runs one numpy op per tile operation: big tiles mean few Python-level steps.
        return dict(BLOCK_N=max(16, min(128, _next_pow2(n))), BLOCK_K=max(16, min(128, _next_pow2(k))),
                    BLOCK_D=block_d, X_RESIDENT=x_resident)
    # Shared memory (compiled for sm_90 with Triton 3.9, tf32x3): D = 64 at 128×64 tiles and 3 stages takes
    # 128 KiB; D = 256 at 128-wide D chunks would take 257 KiB, past the H100's 227 KiB per block. Wider
    # vectors therefore get narrower row tiles, 64-wide D chunks and 2 stages.
    if d <= 64:
        return dict(BLOCK_N=128, BLOCK_K=64, BLOCK_D=block_d, X_RESIDENT=True, num_warps=8, num_stages=3)
    if d <= 128:
        return dict(BLOCK_N=64, BLOCK_K=64, BLOCK_D=128, X_RESIDENT=True, num_warps=4, num_stages=2)
    return dict(BLOCK_N=64, BLOCK_K=64, BLOCK_D=64, X_RESIDENT=False, num_warps=4, num_stages=2)


def _check_inputs(x: torch.Tensor, codebook: torch.Tensor, precision: str) -> None:
    if not triton_importable():
        raise RuntimeError(f"fused_search needs Triton, which failed to import: {_TRITON_IMPORT_ERROR!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}; expected one of {PRECISIONS}")
    if x.dim() != 3 or codebook.dim() != 3:
        raise ValueError(
            f"x must be (G, N, D) and codebook (G, K, D); got x {tuple(x.shape)}, codebook {tuple(codebook.shape)}"
        )
    if x.shape[0] != codebook.shape[0] or x.shape[2] != codebook.shape[2]:
        raise ValueError(
            f"x {tuple(x.shape)} and codebook {tuple(codebook.shape)} disagree on G (dim 0) or D (dim 2)"
        )
    if codebook.shape[1] == 0:
        raise ValueError(f"codebook {tuple(codebook.shape)} has no codewords (K = 0)")
    if x.dtype != torch.float32 or codebook.dtype != torch.float32:
        raise TypeError(
            f"fused_search expects float32 x and codebook (distances are fp32 by policy); got x {x.dtype}, "
            f"codebook {codebook.dtype}. Cast outside autocast first."
        )
    if x.device != codebook.device:
        raise ValueError(f"x is on {x.device} but codebook is on {codebook.device}")
    if x.device.type not in ("cuda", "cpu"):
        raise ValueError(f"fused_search runs on CUDA (or CPU through the interpreter), not on {x.device}")


def fused_quantize(
    x: torch.Tensor,
    codebook: torch.Tensor,
    *,
    precision: str = "tf32x3",
    return_quantized: bool = False,
    counts: Optional[torch.Tensor] = None,
    sums: Optional[torch.Tensor] = None,
    weights: Optional[torch.Tensor] = None,
    block_sizes: Optional[dict] = None,
) -> FusedSearchOutput:
    """Nearest codeword of every vector, optionally with the gathered codewords and EMA statistics.

    Args:
        x: (G, N, D) float32, the vectors of each of G groups (any strides).
        codebook: (G, K, D) float32.
        precision: candidate-search precision of ``tl.dot``: "tf32x3" | "tf32" | "ieee" (module docstring).
        return_quantized: also return ``codebook[g, codes[g, n]]`` as a (G, N, D) tensor.
        counts: optional (G, K) float32 tensor; the number of vectors assigned to each code is added to it
            in place. Must be given together with ``sums``.
        sums: optional (G, K, D) float32 tensor; the sum of the vectors assigned to each code is added in place.
        weights: optional (N,) float32 per-vector weights of the statistics (0 = padding, left out); only
            with ``counts`` / ``sums``. Without them every vector counts once.
        block_sizes: override of the tile sizes (keys BLOCK_N, BLOCK_K, BLOCK_D); for tests of tails.

    Returns:
        :class:`FusedSearchOutput` (codes (G, N) int64, distances (G, N) float32, ...).
    """
    _check_inputs(x, codebook, precision)
    if (counts is None) != (sums is None):
        raise ValueError("counts and sums go together: pass both (EMA statistics) or neither")
    g, n, d = x.shape
    k = codebook.shape[1]
    stats = counts is not None
    if stats:
        if counts.shape != (g, k) or counts.dtype != torch.float32 or not counts.is_contiguous():
            raise ValueError(f"counts must be a contiguous float32 ({g}, {k}) tensor; got {counts.dtype} "
                             f"{tuple(counts.shape)}")
        if sums.shape != (g, k, d) or sums.dtype != torch.float32 or not sums.is_contiguous():
            raise ValueError(f"sums must be a contiguous float32 ({g}, {k}, {d}) tensor; got {sums.dtype} "
                             f"{tuple(sums.shape)}")
        if counts.device != x.device or sums.device != x.device:
            raise ValueError(f"counts ({counts.device}) and sums ({sums.device}) must be on {x.device}")
    if weights is not None:
        if not stats:
            raise ValueError("weights only weigh the statistics: pass counts and sums with them")
        if weights.shape != (n,) or weights.dtype != torch.float32 or weights.device != x.device:
            raise ValueError(f"weights must be a float32 ({n},) tensor on {x.device}; got {weights.dtype} "
                             f"{tuple(weights.shape)} on {weights.device}")
        weights = weights.contiguous()

    codes = torch.empty((g, n), dtype=torch.int64, device=x.device)
    distances = torch.empty((g, n), dtype=torch.float32, device=x.device)
    quantized = torch.empty((g, n, d), dtype=torch.float32, device=x.device) if return_quantized else None
    if n == 0 or g == 0:
        return FusedSearchOutput(codes, distances, quantized, counts, sums)

    # The codebook side is K×D: centring it and its squared norms cost nothing next to the N×K search.
    center = codebook.mean(dim=1)  # (G, D)
    centred = (codebook - center[:, None, :]).contiguous()
    sq_norms = centred.pow(2).sum(dim=-1).contiguous()  # (G, K)
    center = center.contiguous()

    on_cuda = x.is_cuda
    config = _launch_config(n, k, d, on_cuda)
    if block_sizes:
        config.update(block_sizes)
        config["X_RESIDENT"] = d <= config["BLOCK_D"]
    if not on_cuda and not interpreting():
        raise RuntimeError(
            "fused_search got CPU tensors, which only Triton's interpreter can run: set TRITON_INTERPRET=1 "
            "before triton is first imported (e.g. in a subprocess), or use search.nearest_codes on CPU"
        )
    grid = (triton.cdiv(n, config["BLOCK_N"]), g)
    # Unused output pointers still need a tensor of the right device; the kernel never touches them.
    dummy = distances
    # Triton launches on the current CUDA device and stream: make that x's device.
    with torch.cuda.device(x.device) if on_cuda else contextlib.nullcontext():
        _JIT_KERNEL[grid](
            x, codebook, centred, sq_norms, center,
            codes, distances,
            quantized if return_quantized else dummy,
            counts if stats else dummy,
            sums if stats else dummy,
            weights if weights is not None else dummy,
            n, k, d,
            x.stride(0), x.stride(1), x.stride(2),
            codebook.stride(0), codebook.stride(1), codebook.stride(2),
            PRECISION=precision, WRITE_QUANT=return_quantized, STATS=stats, HAS_WEIGHTS=weights is not None,
            **config,
        )
    return FusedSearchOutput(codes, distances, quantized, counts, sums)


# Kernel specialisations that failed to compile on this machine (Triton version / GPU mismatch): their
# calls go to the torch path instead of failing the training step. Keyed by what selects a specialisation.
_BROKEN: dict = {}


def _specialisation(x: torch.Tensor, codebook: torch.Tensor, precision: str) -> tuple:
    cfg = _launch_config(x.shape[1], codebook.shape[1], x.shape[2], x.is_cuda)
    return (x.device.index, precision, tuple(sorted(cfg.items())))


@torch.compiler.disable  # an opaque call under torch.compile: the kernel launch is not traced
def fused_nearest_codes(
    x: torch.Tensor,
    codebook: torch.Tensor,
    *,
    precision: str = "tf32x3",
    counts: Optional[torch.Tensor] = None,
    sums: Optional[torch.Tensor] = None,
    weights: Optional[torch.Tensor] = None,
):
    """search.py's contract: ``(x (G, N, D) fp32, codebook (G, K, D) fp32) -> (codes (G, N) int64,
    distances (G, N) fp32)``, computed without materialising the (G, N, K) distance matrix.

    With ``counts`` (G, K) / ``sums`` (G, K, D) (and optional ``weights`` (N,)), the EMA statistics of the
    assignment are added to them in place, in the kernel's epilogue — or by the torch path when this shape's
    kernel failed to compile, so the caller can rely on them either way."""
    key = _specialisation(x, codebook, precision) if x.is_cuda else None
    if key not in _BROKEN:
        try:
            out = fused_quantize(x, codebook, precision=precision, counts=counts, sums=sums, weights=weights)
            return out.codes, out.distances
        except (ValueError, TypeError):
            raise  # bad input: the caller's error, not the kernel's
        except Exception as err:  # noqa: BLE001 - compilation failures differ across Triton versions
            if key is None or not _is_compile_error(err):
                raise
            _BROKEN[key] = f"{type(err).__name__}: {err}"
            warnings.warn(
                f"fused_search: the Triton kernel failed to compile for {key} with Triton "
                f"{triton.__version__}; using the torch GEMM search for these shapes instead. Error: {_BROKEN[key]}",
                RuntimeWarning,
                stacklevel=2,
            )
    codes, distances = _torch_fallback(x, codebook)
    if counts is not None:
        w = torch.ones(x.shape[1], dtype=torch.float32, device=x.device) if weights is None else weights
        ema_accumulate_(counts, sums, x, codes, w)
    return codes, distances


def _is_compile_error(err: BaseException) -> bool:
    """Errors raised while compiling (not running) a kernel: Triton's compilation errors, its out-of-resources
    error, and the backend's (ptxas / MLIR) failures, which surface as RuntimeError / subprocess errors."""
    names = {type(e).__name__ for e in (err, err.__cause__, err.__context__) if e is not None}
    return bool(names & {"CompilationError", "OutOfResources", "CompileTimeAssertionFailure",
                         "CalledProcessError", "PTXASError", "MLIRCompilationError"}) or (
        isinstance(err, RuntimeError) and "CUDA error" not in str(err) and "illegal" not in str(err).lower())


def _torch_fallback(x: torch.Tensor, codebook: torch.Tensor):
    return chunked_nearest_codes(x, codebook)
