"""What batch norm contributes on top of re-estimation (the paper's Fig. 1 scale argument).

``test_collapse_vanilla_without_bn_vs_bn_reestimating`` (test_quantization_reestimation.py) compares vanilla
VQ with BN + re-estimation; re-estimation alone already passes its bar there, so it says nothing about BN.
Here the encoder outputs keep drifting after the last k-means (scale × 1.03 and an offset of one unit per
step, as an encoder whose output statistics move during training): without BN the data leaves the codebook
behind — the encoder-to-codeword norm ratio grows and the batch lands on a handful of codes — while BN keeps
the quantizer's input at zero mean and unit variance, where the k-means codebook still covers it.

Mutant this catches: the quantizer skipping its batch norm (``if self.batch_norm is not None`` → ``if False``
in ``VectorQuantizer.forward``): both runs then behave like the no-BN control and the BN run collapses too.
"""

import torch

from vq_hf import VectorQuantizer

K = 64


def _drifting(steps, batch=128, dim=8, n_modes=64, growth=1.03, shift=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    modes = torch.randn(n_modes, dim, generator=g)
    direction = torch.randn(dim, generator=g)
    for t in range(steps):
        idx = torch.randint(n_modes, (batch,), generator=g)
        x = modes[idx] + 0.1 * torch.randn(batch, dim, generator=g)
        yield x * growth**t + t * shift * direction


def _train(batch_norm: bool, steps: int = 150):
    """Last-20-step mean batch perplexity, codes used and encoder/codeword norm ratio at the end."""
    torch.manual_seed(0)
    vq = VectorQuantizer(8, K, quantizer_type="reestimating", batch_norm=batch_norm, warmup_steps=10,
                         reestimate_every=15, reestimate_steps=45, reservoir_size=1024)
    opt = torch.optim.Adam(vq.parameters(), lr=1e-2)
    ppl = []
    for x in _drifting(steps):
        out = vq(x)
        if out.quantizing:
            out.loss.backward()
            opt.step()
            opt.zero_grad()
        ppl.append(float(out.perplexity[0]))
    assert int(vq.num_reestimations) == 3  # k-means at steps 10, 25, 40; plain VQ afterwards
    return sum(ppl[-20:]) / 20, int(out.used_codes[0]), float(out.norm_ratio[0])


def test_batch_norm_rescues_the_codebook_when_the_encoder_drifts_after_reestimation():
    no_bn, used_no_bn, ratio_no_bn = _train(batch_norm=False)
    bn, used_bn, ratio_bn = _train(batch_norm=True)
    print(f"BN rescue: perplexity no-BN={no_bn:.1f} ({used_no_bn} codes, norm ratio {ratio_no_bn:.1f}) "
          f"BN={bn:.1f} ({used_bn} codes, norm ratio {ratio_bn:.2f}) (K={K})")
    # Re-estimation alone: the inputs drifted away from the k-means codebook (paper Fig. 1: norm ratio ≫ 1).
    assert ratio_no_bn > 3 and no_bn < 12, (no_bn, ratio_no_bn)
    # With BN the codebook stays on the data.
    assert 0.5 < ratio_bn < 2 and bn > 32 and used_bn > 40, (bn, used_bn, ratio_bn)
    assert bn >= 4 * no_bn, (no_bn, bn)
