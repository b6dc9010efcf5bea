"""PNG curves of a finished run, drawn from its history (matplotlib, Agg backend — no display needed).

- ``curve_<metric>.png``: the task's main evaluation metric against the step, raw and Polyak-averaged
  weights side by side (the paper's Fig. 2 for PER, Fig. 4 for bits/dim);
- ``curve_training_loss.png``: the training loss;
- ``curve_perplexity.png``: dataset-level perplexity per codebook at each evaluation, and the running
  training perplexity averaged over codebooks (the progress bar shows the batch perplexity: ``pplx`` for one
  codebook, ``pplx_sum`` summed over several);
- ``curve_norm_ratio.png``: mean encoder-output norm / mean codeword norm (the scale argument of Fig. 1).
"""

from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _series(rows, key, **match):
    xs, ys = [], []
    for r in rows:
        if all(r.get(k) == v for k, v in match.items()) and key in r and r[key] is not None:
            xs.append(r["step"])
            ys.append(r[key])
    return xs, ys


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_history(rows: list[dict], out_dir: str | pathlib.Path, main_metric: str, title: str = "") -> list[pathlib.Path]:
    """Write the PNGs that have data; returns their paths."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []

    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = False
    for weights, style in (("raw", "-o"), ("polyak", "--s")):
        xs, ys = _series(rows, main_metric, kind="eval", weights=weights)
        if xs:
            ax.plot(xs, ys, style, markersize=3, label=f"{weights} weights")
            drawn = True
    if drawn:
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(main_metric)
        ax.set_title(title or main_metric)
        ax.legend()
        ax.grid(alpha=0.3)
        written.append(_save(fig, out_dir / f"curve_{main_metric}.png"))
    else:
        plt.close(fig)

    xs, ys = _series(rows, "loss", kind="train")
    if xs:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(xs, ys, lw=1)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss")
        ax.set_title(title or "training loss")
        ax.grid(alpha=0.3)
        written.append(_save(fig, out_dir / "curve_training_loss.png"))

    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = False
    xs, ys = _series(rows, "perplexity", kind="eval", weights="raw")
    if xs:
        arr = np.asarray(ys, dtype=float).reshape(len(xs), -1)
        for i in range(arr.shape[1]):
            ax.plot(xs, arr[:, i], "-o", markersize=3, label=f"eval, codebook {i}" if arr.shape[1] > 1 else "eval")
        drawn = True
    xs, ys = _series(rows, "running_perplexity", kind="train")
    if xs:
        arr = np.asarray(ys, dtype=float).reshape(len(xs), -1)
        ax.plot(xs, arr.mean(1), lw=1, alpha=0.7, label="training (running, mean over codebooks)")
        drawn = True
    if drawn:
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("perplexity")
        ax.set_title("codebook perplexity (evaluation: each codebook; training: mean)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        written.append(_save(fig, out_dir / "curve_perplexity.png"))
    else:
        plt.close(fig)

    xs, ys = _series(rows, "norm_ratio", kind="train")
    if xs:
        arr = np.asarray(ys, dtype=float).reshape(len(xs), -1)
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.semilogy(xs, np.clip(arr.mean(1), 1e-12, None), lw=1)
        ax.axhline(1.0, color="gray", lw=0.8, ls=":")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("|encoder output| / |codeword|")
        ax.set_title("encoder-to-codeword norm ratio (Fig. 1)")
        ax.grid(alpha=0.3)
        written.append(_save(fig, out_dir / "curve_norm_ratio.png"))
    return written
