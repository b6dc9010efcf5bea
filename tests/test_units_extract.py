"""vq_hf.units: extract_units / `vq-hf units` — saved codes equal model.encode, decode_codes reproduces eval output."""

import json
from types import SimpleNamespace

import datasets
import numpy as np
import pytest
import torch

from vq_hf import units as units_mod
from vq_hf.units import extract_units, run_length_encode

# ------------------------------------------------------------------------------------------ helpers


def _tiny_cifar_model():
    from vq_hf.models import VQVAEConfig, VQVAEModel

    torch.manual_seed(0)
    cfg = VQVAEConfig(
        architecture="cifar10", hidden_size=16, num_residual_layers=1, num_codebooks=2, codebook_size=16, latent_dim=12
    )
    return VQVAEModel(cfg).eval()


def _spread_codebook(model, pixel_values):
    """Codewords = encoder outputs of real images, so an untrained model still uses many different codes."""
    with torch.no_grad():
        latents = model(pixel_values=pixel_values).latents  # (B, G*D, 8, 8)
        g, k, d = model.quantizer.codebook.shape
        vecs = latents.reshape(latents.shape[0], g, d, -1).permute(1, 0, 3, 2).reshape(g, -1, d)
        gen = torch.Generator().manual_seed(0)
        for i in range(g):
            model.quantizer.codebook[i].copy_(vecs[i, torch.randperm(vecs.shape[1], generator=gen)[:k]])


@pytest.fixture(scope="module")
def cifar_split():
    from vq_hf.data import load_cifar10

    return load_cifar10(splits=["test"], decode=False)["test"].select(range(10))


# ------------------------------------------------------------------------------------------ CIFAR round trip


def test_cifar_units_round_trip_encode_and_decode(cifar_split, tmp_path):
    from vq_hf.data import Cifar10Collator

    model = _tiny_cifar_model()
    batch = Cifar10Collator()(list(cifar_split))
    _spread_codebook(model, batch["pixel_values"])

    units = extract_units(model, cifar_split, batch_size=4, progress=False)  # 4 + 4 + 2: batching must not matter
    units.save_to_disk(str(tmp_path / "units"))
    loaded = datasets.load_from_disk(str(tmp_path / "units"))
    assert loaded.column_names == ["id", "codes", "shape", "length"]
    assert loaded["id"] == [str(i) for i in range(10)]
    assert loaded["shape"] == [[8, 8]] * 10 and loaded["length"] == [64] * 10

    saved = torch.tensor(np.asarray(loaded["codes"])).reshape(10, 8, 8, 2)  # (B, 8, 8, G)
    expected = model.encode(pixel_values=batch["pixel_values"]).codes
    assert torch.equal(saved, expected)
    assert len(torch.unique(saved)) > 4  # not a degenerate single-code case

    with torch.no_grad():
        eval_out = model(pixel_values=batch["pixel_values"], labels=batch["labels"])
    decoded = model.decode_codes(saved)
    assert torch.equal(decoded.reconstruction, eval_out.logits.argmax(-1))
    summary = json.loads(loaded.info.description)
    assert summary["num_examples"] == 10 and summary["codebook_size"] == 16 and summary["num_codebooks"] == 2


def test_dedup_is_refused_for_image_grids(cifar_split):
    with pytest.raises(ValueError, match="dedup=True needs sequence codes"):
        extract_units(_tiny_cifar_model(), cifar_split, batch_size=4, dedup=True, progress=False)


def test_cli_writes_the_same_units(cifar_split, tmp_path, capsys):
    model = _tiny_cifar_model()
    model.save_pretrained(str(tmp_path / "model"))
    out = tmp_path / "units"
    rc = units_mod.cli(
        ["--model", str(tmp_path / "model"), "--split", "test", "--output", str(out), "--batch_size", "3",
         "--max_examples", "5", "--no_progress", "--device", "cpu"]
    )
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["num_examples"] == 5 and summary["output"] == str(out)
    loaded = datasets.load_from_disk(str(out))
    direct = extract_units(model, cifar_split.select(range(5)), batch_size=5, progress=False)
    assert loaded["codes"] == direct["codes"]


# ------------------------------------------------------------------------------------------ sequences


class _SeqModel(torch.nn.Module):
    """Stands for VQVAEForCTC: codes = feature values at every 2nd frame, right-padded, lengths = ceil(n / 2)."""

    def __init__(self, num_codebooks=1):
        super().__init__()
        self.config = SimpleNamespace(architecture="speech", codebook_size=10)
        self.g = num_codebooks
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def encode(self, input_features, attention_mask=None):
        codes = input_features[:, ::2, : self.g].round().long()
        lengths = (attention_mask.sum(1) + 1) // 2
        mask = torch.arange(codes.shape[1])[None] < lengths[:, None]
        return SimpleNamespace(codes=codes.masked_fill(~mask[..., None], 9), lengths=lengths, mask=mask)


def _seq_collate(examples):
    n = max(len(e["frames"]) for e in examples)
    feats = torch.zeros(len(examples), n, 2)
    att = torch.zeros(len(examples), n, dtype=torch.long)
    for i, e in enumerate(examples):
        f = torch.tensor(e["frames"], dtype=torch.float32)
        feats[i, : len(f)] = f
        att[i, : len(f)] = 1
    return {"input_features": feats, "attention_mask": att, "labels": torch.zeros(len(examples), 1)}


def _seq_dataset():
    # frames (T, 2); codes of codebook 0 at frames 0, 2, 4, ...
    rows = [
        [[1, 5], [0, 0], [1, 5], [0, 0], [2, 6], [0, 0], [2, 6]],  # codes 1 1 2 2 → runs (1,2) (2,2)
        [[3, 7]],  # a single latent
        [[4, 4], [0, 0], [4, 4], [0, 0], [4, 4]],  # 4 4 4 → one run of 3
    ]
    return datasets.Dataset.from_dict({"id": ["utt-a", "utt-b", "utt-c"], "frames": rows})


def test_sequence_units_drop_padding_and_dedup_keeps_run_lengths(monkeypatch):
    monkeypatch.setattr(units_mod, "_SHARD_ROWS", 2)  # exercise multi-shard concatenation, order kept
    ds = _seq_dataset()
    plain = extract_units(_SeqModel(), ds, collator=_seq_collate, batch_size=2, progress=False)
    assert plain["id"] == ["utt-a", "utt-b", "utt-c"]
    assert plain["codes"] == [[1, 1, 2, 2], [3], [4, 4, 4]]  # padded positions (code 9) removed
    assert plain["shape"] == [[4], [1], [3]] and plain["length"] == [4, 1, 3]

    dedup = extract_units(_SeqModel(), ds, collator=_seq_collate, batch_size=2, dedup=True, progress=False)
    assert dedup["codes"] == [[1, 2], [3], [4]]
    assert dedup["durations"] == [[2, 2], [1], [3]]
    assert dedup["length"] == [2, 1, 1]

    two = extract_units(_SeqModel(2), ds, collator=_seq_collate, batch_size=3, dedup=True, max_examples=1, progress=False)
    assert two["codes"] == [[[1, 5], [2, 6]]] and two["durations"] == [[2, 2]]  # rows compared over both codebooks


def test_run_length_encode_and_argument_errors():
    runs, durations = run_length_encode(np.array([[1, 0], [1, 0], [1, 1], [2, 1]]))
    assert runs.tolist() == [[1, 0], [1, 1], [2, 1]] and durations.tolist() == [2, 1, 1]
    with pytest.raises(ValueError, match="batch_size"):
        extract_units(_SeqModel(), _seq_dataset(), collator=_seq_collate, batch_size=0)
    with pytest.raises(TypeError, match="encode"):
        extract_units(torch.nn.Linear(1, 1), _seq_dataset(), collator=_seq_collate)
    with pytest.raises(ValueError, match="no examples"):
        extract_units(_SeqModel(), _seq_dataset().select([]), collator=_seq_collate, progress=False)


# ------------------------------------------------------------------------------------------ handwriting (real model)


def test_handwriting_units_match_encode_and_teacher_forced_decode():
    from vq_hf.data import LineImageCollator
    from vq_hf.models import VQVAEConfig, VQVAEModel

    torch.manual_seed(0)
    cfg = VQVAEConfig(
        architecture="handwriting", conv_channels=[4] * 7, rnn_hidden_size=8, rnn_projection_size=8, codebook_size=16,
        latent_dim=8, mixer_hidden_size=8, pixelcnn_hidden_size=8, pixelcnn_num_layers=2,
    )
    model = VQVAEModel(cfg).eval()
    rng = np.random.default_rng(0)
    widths = (13, 24, 7, 40)
    ds = datasets.Dataset.from_dict(
        {"id": list("abcd"), "columns": [rng.integers(0, 256, size=(w, 32), dtype=np.uint8).tolist() for w in widths]}
    ).with_format("torch")
    collate = LineImageCollator()
    with torch.no_grad():  # codewords = real latents, so the untrained model uses many codes
        full = collate(list(ds))
        out = model(pixel_values=full["pixel_values"], pixel_mask=full["pixel_mask"])
        valid = out.latents[out.codes_mask]
        model.quantizer.codebook[0].copy_(valid[torch.randperm(valid.shape[0], generator=torch.Generator().manual_seed(0))[:16]])

    units = extract_units(model, ds, batch_size=2, progress=False)
    assert list(units["length"]) == [(w + 3) // 4 for w in widths]  # one latent per 4 columns, padding dropped
    assert len({c for row in units["codes"] for c in row}) > 3
    for start in (0, 2):  # the same 2-example batches extract_units formed
        batch = collate([ds[start], ds[start + 1]])
        enc = model.encode(pixel_values=batch["pixel_values"], pixel_mask=batch["pixel_mask"])
        for j in range(2):
            n = int(enc.lengths[j])
            assert units[start + j]["codes"] == enc.codes[j, :n, 0].tolist()
        # decode_codes of the saved codes (re-padded) reproduces the eval forward pass under teacher forcing
        saved = torch.zeros_like(enc.codes)
        for j in range(2):
            row = torch.tensor(units[start + j]["codes"])
            saved[j, : len(row), 0] = row
        with torch.no_grad():
            ref = model(pixel_values=batch["pixel_values"], pixel_mask=batch["pixel_mask"])
        levels = (batch["pixel_values"] * cfg.num_gray_levels).floor().clamp(max=cfg.num_gray_levels - 1).long()
        dec = model.decode_codes(saved, mask=enc.mask, labels=levels)
        assert torch.allclose(dec.logits, ref.logits, atol=1e-5)

    dedup = extract_units(model, ds, batch_size=2, dedup=True, progress=False)
    for plain, runs, durations in zip(units["codes"], dedup["codes"], dedup["durations"]):
        assert sum(durations) == len(plain)
        assert np.repeat(runs, durations).tolist() == plain
