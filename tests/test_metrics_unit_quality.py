"""vq_hf.metrics.unit_quality on small cases computed by hand."""

import math

import numpy as np
import pytest

from vq_hf.metrics import unit_quality as uq


def test_purity_cluster_purity_pnmi_nmi_by_hand():
    labels = [["a", "a", "b", "b"]]
    units = [[1, 1, 1, 2]]
    # joint counts: (a,1)=2 (b,1)=1 (b,2)=1 over 4 frames
    assert uq.purity(labels, units) == pytest.approx(3 / 4)  # unit 1 → a (2), unit 2 → b (1)
    assert uq.cluster_purity(labels, units) == pytest.approx(3 / 4)  # a → 1 (2), b → 1 or 2 (1)
    mi = 0.5 * math.log2(4 / 3) + 0.25 * math.log2(2 / 3) + 0.25 * 1.0
    assert uq.pnmi(labels, units) == pytest.approx(mi / 1.0)  # H(y) = 1 bit
    hz = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert uq.nmi(labels, units) == pytest.approx(mi / ((1.0 + hz) / 2))
    # units that copy the labels are perfect; a constant unit explains nothing
    assert uq.pnmi([[0, 1, 2, 1]], [[7, 8, 9, 8]]) == pytest.approx(1.0)
    assert uq.purity([[0, 1, 2, 1]], [[7, 8, 9, 8]]) == 1.0
    assert uq.pnmi([[0, 1, 2, 1]], [[3, 3, 3, 3]]) == 0.0
    # pooled over utterances, not averaged per utterance
    assert uq.purity([["a", "a"], ["b", "b", "b", "a"]], [[1, 1], [1, 1, 2, 2]]) == pytest.approx((2 + 1) / 6 + 0)


def test_boundary_f1_tolerance_and_one_to_one_matching():
    labels = [[0, 0, 1, 1, 1, 2, 2, 2]]  # boundaries at 2, 5
    units = [[4, 4, 4, 5, 5, 5, 5, 6]]  # boundaries at 3, 7
    exact = uq.boundary_f1(labels, units, tolerance=0)
    assert exact["precision"] == 0 and exact["recall"] == 0 and exact["f1"] == 0
    one = uq.boundary_f1(labels, units, tolerance=1)  # 3 matches 2; 7 is 2 away from 5
    assert one["precision"] == pytest.approx(0.5) and one["recall"] == pytest.approx(0.5)
    two = uq.boundary_f1(labels, units, tolerance=2)
    assert two["f1"] == pytest.approx(1.0) and two["tolerance_frames"] == 2
    # one unit boundary cannot be credited to two reference boundaries
    many = uq.boundary_f1([[0, 1, 2, 3]], [[0, 0, 1, 1]], tolerance=1)  # ref 1,2,3; hyp 2
    assert many["precision"] == 1.0 and many["recall"] == pytest.approx(1 / 3)


def test_mapped_error_rate_collapses_repeats_and_maps_to_majority():
    labels = [["a", "a", "b", "b", "c", "c"]]
    units = [[1, 1, 1, 2, 2, 2]]  # 1 → a (2 vs 1), 2 → c (2 vs 1): hyp "a c" vs ref "a b c"
    assert uq.majority_mapping(labels, units) == {1: "a", 2: "c"}
    assert uq.mapped_error_rate(labels, units) == pytest.approx(1 / 3)
    # over-segmentation by repeated units of the same label costs nothing
    assert uq.mapped_error_rate([["a"] * 4 + ["b"] * 2], [[1, 2, 1, 2, 3, 3]]) == 0.0


def test_bitrate_segment_length_used_units():
    units = [[1, 1, 2, 2, 1], [3]]  # de-duplicated: 1 2 1 | 3 → p = 1/2, 1/4, 1/4 → H = 1.5 bits, N = 4
    assert uq.bitrate_bits_per_second(units, total_seconds=2.0) == pytest.approx(4 / 2 * 1.5)
    assert uq.mean_segment_length(units) == pytest.approx(6 / 4)
    assert uq.used_units(units) == 3


def test_units_to_frames_maps_latent_t_onto_frames_t_s_to_t_plus_1_s():
    assert uq.units_to_frames([5, 6, 7], 3, 9).tolist() == [5, 5, 5, 6, 6, 6, 7, 7, 7]
    assert uq.units_to_frames([5, 6, 7], 3, 8).tolist() == [5, 5, 5, 6, 6, 6, 7, 7]  # last latent cut
    assert uq.units_to_frames([5, 6, 7], 3, 11).tolist() == [5, 5, 5, 6, 6, 6, 7, 7, 7, 7, 7]  # rounding tail
    with pytest.raises(ValueError, match="do not match"):
        uq.units_to_frames([5, 6, 7], 3, 20)
    assert uq.codebook_tuples_to_ids(np.array([[1, 2], [0, 5], [1, 2]])).tolist() == [1, 0, 1]


def _abx_corpus(unit_of):
    """Two speakers × 3 phones, 3 segments of 3 frames per (phone, speaker); units from ``unit_of(phone, spk)``."""
    labels, units, speakers = [], [], []
    for spk in ("s1", "s2"):
        for rep in range(3):
            y = [p for p in (0, 1, 2) for _ in range(3)]
            labels.append(y)
            units.append([unit_of(p, spk) for p in y])
            speakers.append(spk)
    return labels, units, speakers


def test_abx_known_answers():
    labels, units, speakers = _abx_corpus(lambda p, s: p)  # units = phones: no errors
    assert uq.abx_error(labels, units, speakers, mode="within") == 0.0
    assert uq.abx_error(labels, units, speakers, mode="across") == 0.0
    labels, units, speakers = _abx_corpus(lambda p, s: 0)  # one unit: every triplet ties → chance
    assert uq.abx_error(labels, units, speakers, mode="within") == 0.5
    # speaker-dependent units: s2 uses unit p+1 mod 3 for phone p. Within: perfect. Across, A/B from s1 and X
    # from s2 (and vice versa) — X of phone a carries unit a+1 ≠ unit of A, so d(A,X) = 1 always; d(B,X) = 0 when
    # B's phone b has unit a+1 (one of the two b's), else 1 → per (a, b) cell error 1 or 0.5 → mean 0.75
    labels, units, speakers = _abx_corpus(lambda p, s: p if s == "s1" else (p + 1) % 3)
    assert uq.abx_error(labels, units, speakers, mode="within") == 0.0
    assert uq.abx_error(labels, units, speakers, mode="across") == pytest.approx(0.75)
    # with a single speaker there is no across-speaker triplet
    assert math.isnan(uq.abx_error(labels[:3], units[:3], speakers[:3], mode="across"))


def test_abx_dtw_normalises_by_lengths():
    d = uq._dtw_matrix([np.array([1, 1, 2]), np.array([1, 2]), np.array([3])])
    assert d[0, 1] == 0.0  # 1 1 2 aligns with 1 2 at no cost
    assert d[0, 2] == pytest.approx(3 / 4)  # every frame differs: path of 3 steps, lengths 3 + 1
    assert d[1, 0] == d[0, 1] and d[2, 2] == 0.0


def test_unit_quality_dict_has_every_key():
    labels, units, speakers = _abx_corpus(lambda p, s: p)
    out = uq.unit_quality_metrics(labels, units, frame_seconds=0.01, boundary_tolerance=2, speakers=speakers)
    for key in ("purity", "cluster_purity", "pnmi", "nmi", "boundary_f1", "mapped_error_rate",
                "bitrate_bits_per_second", "mean_segment_length", "used_units", "abx_within_speaker",
                "abx_across_speaker"):
        assert key in out
    assert out["pnmi"] == pytest.approx(1.0) and out["mapped_error_rate"] == 0.0 and out["boundary_f1"] == 1.0
