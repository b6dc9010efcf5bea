"""Compile the fused nearest-code kernel ahead of time for a CUDA architecture, without a GPU.

Uses Triton's own compiler and ptxas (bundled with the triton wheel) to build every tile configuration that
``fused_search._launch_config`` picks, and prints the shared memory per block and whether tensor-core
instructions were emitted. A configuration over the card's shared-memory limit would fail at launch (and
fall back to the torch search), so this catches tile choices that cannot run, on a machine with no GPU.

    python benchmarks/compile_fused_kernel.py --arch 90 --dims 8,64,128,256
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

# Shared memory per block (bytes) that a kernel may use: the opt-in maximum per architecture.
SHARED_LIMIT = {80: 166912, 86: 101376, 89: 101376, 90: 232448}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90, help="compute capability ×10: 80 (A100), 90 (H100)")
    parser.add_argument("--dims", default="8,64,128,256", help="vector sizes D to compile for")
    parser.add_argument("--precisions", default="tf32x3,tf32,ieee")
    parser.add_argument("--epilogue", action="store_true", help="also compile the gather + statistics epilogue")
    args = parser.parse_args(argv)

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from vq_hf.quantization import fused_search

    kernel = fused_search._JIT_KERNEL
    signature = {name: "*fp32" for name in ("x_ptr", "cb_ptr", "cbc_ptr", "sq_ptr", "center_ptr", "dist_ptr",
                                             "quant_ptr", "counts_ptr", "sums_ptr")}
    signature["codes_ptr"] = "*i64"
    for name in ("N", "K", "D", "stride_xg", "stride_xn", "stride_xd", "stride_cg", "stride_ck", "stride_cd"):
        signature[name] = "i32"
    for name in ("BLOCK_N", "BLOCK_K", "BLOCK_D", "X_RESIDENT", "PRECISION", "WRITE_QUANT", "STATS"):
        signature[name] = "constexpr"
    limit = SHARED_LIMIT.get(args.arch)
    failures = 0
    for d in (int(v) for v in args.dims.split(",")):
        config = fused_search._launch_config(65536, 4096, d, on_cuda=True)
        num_warps, num_stages = config.pop("num_warps"), config.pop("num_stages")
        for precision in args.precisions.split(","):
            for epilogue in ((False, True) if args.epilogue else (False,)):
                constexprs = dict(config, PRECISION=precision, WRITE_QUANT=epilogue, STATS=epilogue)
                label = f"sm_{args.arch} D={d} {precision}{' +epilogue' if epilogue else ''} {config}"
                t0 = time.perf_counter()
                try:
                    compiled = triton.compile(ASTSource(fn=kernel, signature=signature, constexprs=constexprs),
                                              target=GPUTarget("cuda", args.arch, 32),
                                              options={"num_warps": num_warps, "num_stages": num_stages})
                except Exception as err:  # noqa: BLE001 - reported, and counted in the exit status
                    failures += 1
                    print(f"FAIL {label}: {type(err).__name__}: {str(err)[:500]}", flush=True)
                    continue
                shared = compiled.metadata.shared
                ptx = compiled.asm["ptx"]
                mma = "wgmma" in ptx or "mma.sync" in ptx
                fits = limit is None or shared <= limit
                failures += not fits
                print(f"{'OK  ' if fits else 'OVER'} {label}: shared {shared / 1024:.0f} KiB"
                      f"{'' if limit is None else f' (limit {limit / 1024:.0f} KiB)'}, tensor cores: {mma}, "
                      f"{time.perf_counter() - t0:.1f} s", flush=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
