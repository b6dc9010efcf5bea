"""Count the operators (≈ CUDA kernel launches in eager mode) of the hot paths, on CPU.

On a GPU, small problems are bound by how many kernels are dispatched (3–5 µs each in eager PyTorch), not by
arithmetic. This counts leaf aten operators (those that would launch a kernel; views and allocations
excluded) with torch.profiler for: the quantizer's forward + backward, one k-means++ seeding step (per
centre), and one reservoir insert. Multiply by the per-launch cost for a dispatch floor.

    python benchmarks/count_ops.py
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

# Operators that do not launch a kernel (metadata, views, allocation) or only wrap others.
NO_KERNEL = {
    "aten::view", "aten::as_strided", "aten::unsqueeze", "aten::squeeze", "aten::expand", "aten::transpose",
    "aten::t", "aten::reshape", "aten::permute", "aten::select", "aten::slice", "aten::detach", "aten::alias",
    "aten::_unsafe_view", "aten::resolve_conj", "aten::resolve_neg", "aten::empty", "aten::empty_strided",
    "aten::empty_like", "aten::lift_fresh", "aten::result_type", "aten::is_nonzero", "aten::item",
    "aten::_local_scalar_dense", "aten::split", "aten::chunk", "aten::unbind", "aten::movedim",
    "aten::flatten", "aten::contiguous", "aten::narrow", "aten::to", "aten::_to_copy", "aten::expand_as",
    "aten::view_as", "aten::_reshape_alias", "aten::squeeze_", "aten::unsqueeze_", "aten::resize_",
}


def leaf_ops(fn) -> tuple[int, dict]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    count, names = 0, {}
    for event in prof.events():
        if not event.name.startswith("aten::") or event.name in NO_KERNEL:
            continue
        if any(c.name.startswith("aten::") and c.name not in NO_KERNEL for c in event.cpu_children):
            continue  # not a leaf: its children are counted
        count += 1
        names[event.name] = names.get(event.name, 0) + 1
    return count, names


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="list the operators")
    args = parser.parse_args(argv)
    from vq_hf.quantization import Reservoir, VectorQuantizer
    from vq_hf.quantization.kmeans import kmeans_plusplus

    results = {}
    for qt in ("vanilla", "ema"):
        for bn in (False, True):
            vq = VectorQuantizer(64, 512, quantizer_type=qt, batch_norm=bn).train()
            x = torch.randn(8192, 64, requires_grad=True)
            probe = torch.randn(8192, 64)

            def step(vq=vq, x=x, probe=probe):
                x.grad = None
                vq.zero_grad(set_to_none=True)
                out = vq(x)
                ((out.quantized * probe).sum() + out.loss).backward()

            step()
            step()
            results[f"quantizer forward+backward ({qt}, batch_norm={bn})"] = leaf_ops(step)

    points = torch.randn(20480, 64)
    gen = torch.Generator().manual_seed(0)
    few, _ = leaf_ops(lambda: kmeans_plusplus(points, 33, generator=gen))
    many, names = leaf_ops(lambda: kmeans_plusplus(points, 65, generator=gen))
    results["k-means++ seeding, per centre"] = ((many - few) / 32, names)

    res = Reservoir(1, 20480, 64)
    batch = torch.randn(1, 65536, 64)
    res.insert(batch[:, :20480], generator=gen)
    results["reservoir insert (65,536 → 20,480 × 64)"] = leaf_ops(lambda: res.insert(batch, generator=gen))

    print("| path | kernel-launching ops | dispatch floor at 3–5 µs per op |\n|---|---|---|")
    for name, (count, ops) in results.items():
        print(f"| {name} | {count:g} | {count * 3e-3:.2f}–{count * 5e-3:.2f} ms |")
        if args.verbose:
            print("   ", dict(sorted(ops.items(), key=lambda kv: -kv[1])))


if __name__ == "__main__":
    main()
