"""When the fused kernel does NOT serve a search: ``VQ_HF_DISABLE_FUSED``, and the compile-failure fallback.

The kernel's numerics are in test_fused_search.py (which also asserts that the kernel really ran there).
"""

import warnings

import pytest
import torch

pytest.importorskip("triton")

from vq_hf.quantization import backend, fused_search, search  # noqa: E402


class _CudaLike:
    """is_available() and select_search(x, 'auto') only look at ``x.is_cuda``: a stand-in lets the CPU suite
    check the environment switch the GPU path honours."""

    is_cuda = True


@pytest.mark.parametrize("value, disabled", [(None, False), ("0", False), ("false", False), ("no", False), ("", False),
                                             ("1", True), ("true", True), ("YES", True)])
def test_disable_env_turns_the_auto_kernel_off(monkeypatch, value, disabled):
    if value is None:
        monkeypatch.delenv("VQ_HF_DISABLE_FUSED", raising=False)
    else:
        monkeypatch.setenv("VQ_HF_DISABLE_FUSED", value)
    assert fused_search.is_available(_CudaLike()) is (not disabled)
    assert backend.select_search(_CudaLike(), "auto").name == ("torch" if disabled else "triton")
    assert backend.select_search(_CudaLike(), "torch").name == "torch"
    assert fused_search.is_available(torch.zeros(1, 2, 3)) is False  # CPU tensors never, whatever the switch


def test_compile_errors_are_told_from_runtime_errors():
    compile_error = type("CompilationError", (Exception,), {})
    assert fused_search._is_compile_error(compile_error("bad tile"))
    assert fused_search._is_compile_error(type("OutOfResources", (Exception,), {})("shared memory"))
    wrapped = RuntimeError("launch failed")
    wrapped.__cause__ = compile_error("ptx")
    assert fused_search._is_compile_error(wrapped)
    assert fused_search._is_compile_error(RuntimeError("PassManager::run failed"))  # backend failures
    # A fault while running is a real error, never hidden behind the torch path.
    assert not fused_search._is_compile_error(RuntimeError("CUDA error: an illegal memory access was encountered"))
    assert not fused_search._is_compile_error(RuntimeError("illegal instruction"))
    assert not fused_search._is_compile_error(ZeroDivisionError())


def test_a_compile_error_on_cpu_tensors_is_raised_not_hidden(monkeypatch):
    """The fallback is for CUDA shapes that do not compile; on CPU (the interpreter) an error surfaces."""
    compile_error = type("CompilationError", (Exception,), {})

    def broken(*args, **kwargs):
        raise compile_error("forced")

    monkeypatch.setattr(fused_search, "fused_quantize", broken)
    with pytest.raises(compile_error):
        fused_search.fused_nearest_codes(torch.randn(1, 5, 4), torch.randn(1, 3, 4))
    assert not fused_search._BROKEN


def _check_compile_fallback(monkeypatch, device: str) -> None:
    """A specialisation whose compilation fails warns once, then is served by the torch search — codes,
    distances and the EMA statistics the caller asked for — without trying to compile it again."""
    attempts = []

    def broken(*args, **kwargs):
        attempts.append(1)
        raise type("CompilationError", (Exception,), {})("out of shared memory (forced by the test)")

    monkeypatch.setattr(fused_search, "fused_quantize", broken)
    monkeypatch.setattr(fused_search, "_BROKEN", {})
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 50, 8, generator=g).to(device)
    cb = torch.randn(2, 7, 8, generator=g).to(device)
    weights = (torch.arange(50) % 3 != 0).float().to(device)
    counts, sums = torch.zeros(2, 7, device=device), torch.zeros(2, 7, 8, device=device)
    with pytest.warns(RuntimeWarning, match="failed to compile"):
        codes, dist = fused_search.fused_nearest_codes(x, cb, counts=counts, sums=sums, weights=weights)
    ref_codes, ref_dist = search.chunked_nearest_codes(x, cb)
    assert torch.equal(codes, ref_codes) and torch.equal(dist, ref_dist)
    ref_counts = torch.zeros(2, 7, device=device).scatter_add_(1, ref_codes, weights.expand(2, -1).contiguous())
    assert torch.equal(counts, ref_counts)
    for gi in range(2):
        keep = weights.bool()
        ref_sums = torch.zeros(7, 8, device=device).index_add_(0, ref_codes[gi][keep], x[gi][keep])
        torch.testing.assert_close(sums[gi], ref_sums)
    assert len(fused_search._BROKEN) == 1 and attempts == [1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        again, _ = fused_search.fused_nearest_codes(x, cb)
    assert torch.equal(again, ref_codes) and attempts == [1]  # the broken specialisation is not retried


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_kernel_that_fails_to_compile_falls_back_to_the_torch_search(monkeypatch):
    _check_compile_fallback(monkeypatch, "cuda")
