"""CIFAR-10 loader and collator: embedded sample, shared hub-layout parquet, validation carve-out, bad input."""

import io
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from vq_hf.data import CIFAR10_CLASSES, Cifar10Collator, load_cifar10
from vq_hf.data.cifar10 import decode_cifar10_image, embedded_sample_dir


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    return load_cifar10(cache_dir=tmp_path_factory.mktemp("cifar_cache"))


def _png_bytes(size=(32, 32), color=(10, 20, 30)):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def _write_parquet(path: Path, images, labels, label_type="int"):
    import datasets

    features = datasets.Features(
        {
            "img": datasets.Image(),
            "label": (
                datasets.ClassLabel(names=list(CIFAR10_CLASSES)) if label_type == "class" else datasets.Value("int64")
            ),
        }
    )
    ds = datasets.Dataset.from_dict(
        {"img": [{"bytes": b, "path": None} for b in images], "label": labels}, features=features
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_parquet(str(path))


def test_embedded_sample_layout_and_types(embedded):
    assert {k: len(v) for k, v in embedded.items()} == {"train": 2000, "test": 500}
    for split, per_class in (("train", 200), ("test", 50)):
        ds = embedded[split]
        assert ds.features["label"].names == list(CIFAR10_CLASSES)
        assert Counter(int(x) for x in ds["label"]) == {c: per_class for c in range(10)}
        row = ds[0]
        assert row["pixels"].dtype == torch.uint8 and tuple(row["pixels"].shape) == (3, 32, 32)
    # The JPEG bytes stay exactly those of the file (datasets would re-encode decoded images written back
    # by a map), and the decoded column equals decoding them.
    import pyarrow.parquet as pq

    source = pq.read_table(embedded_sample_dir() / "test-00000-of-00001.parquet").column("img").to_pylist()
    kept = embedded["test"].data.column("img").to_pylist()
    assert kept == source
    for i in range(0, 500, 25):
        np.testing.assert_array_equal(
            decode_cifar10_image(source[i]), embedded["test"][i]["pixels"].numpy(), err_msg=f"row {i}"
        )


def test_embedded_sample_ships_readme_with_provenance_and_jpeg_caveat():
    folder = embedded_sample_dir()
    files = sorted(p.name for p in folder.iterdir())
    assert "train-00000-of-00001.parquet" in files and "test-00000-of-00001.parquet" in files
    assert (folder / "__init__.py").is_file(), "the folder must be a package so wheels carry its data files"
    total = sum(p.stat().st_size for p in folder.glob("*.parquet"))
    assert total < 5_000_000
    readme = (folder / "README.md").read_text()
    assert "JPEG" in readme and "not comparable" in readme.lower() or "NOT comparable" in readme
    assert "shared/data/cifar10" in readme


def test_collator_makes_exact_model_inputs(embedded):
    examples = [embedded["train"][i] for i in range(6)]
    batch = Cifar10Collator(return_class_labels=True)(examples)
    assert batch["pixel_values"].dtype == torch.float32 and batch["pixel_values"].shape == (6, 3, 32, 32)
    assert batch["labels"].dtype == torch.int64 and batch["labels"].shape == (6, 3, 32, 32)
    stacked = torch.stack([e["pixels"] for e in examples]).to(torch.int64)
    assert torch.equal(batch["labels"], stacked)
    assert torch.equal(batch["pixel_values"], stacked.float() / 255.0 - 0.5)
    # Recovering the uint8 targets from pixel_values by rounding is exact (no truncation off-by-one).
    assert torch.equal(torch.round((batch["pixel_values"] + 0.5) * 255).long(), batch["labels"])
    assert batch["class_labels"].tolist() == [int(e["label"]) for e in examples]
    assert set(Cifar10Collator()(examples)) == {"pixel_values", "labels"}


def test_collator_decodes_raw_images_the_same_way(embedded):
    raw = embedded["train"].with_format(None)
    examples = [{"img": raw[i]["img"], "label": raw[i]["label"]} for i in range(4)]
    decoded = Cifar10Collator()([embedded["train"][i] for i in range(4)])
    assert torch.equal(Cifar10Collator()(examples)["labels"], decoded["labels"])


def test_collator_rejects_bad_examples():
    with pytest.raises(ValueError, match="empty batch"):
        Cifar10Collator()([])
    with pytest.raises(KeyError, match="neither 'pixels' nor 'img'"):
        Cifar10Collator()([{"label": 1}])
    with pytest.raises(ValueError, match=r"shape \(3, 16, 16\)"):
        Cifar10Collator()([{"pixels": torch.zeros(3, 16, 16, dtype=torch.uint8)}])
    with pytest.raises(ValueError, match="outside 0..255"):
        Cifar10Collator()([{"pixels": torch.full((3, 32, 32), 300)}])


def test_validation_split_is_seeded_stratified_and_disjoint(tmp_path):
    a = load_cifar10(validation_size=100, seed=3, decode=False, cache_dir=tmp_path)
    b = load_cifar10(validation_size=100, seed=3, decode=False, cache_dir=tmp_path)
    c = load_cifar10(validation_size=0.05, seed=4, decode=False, cache_dir=tmp_path)
    assert {k: len(v) for k, v in a.items()} == {"train": 1900, "validation": 100, "test": 500}
    assert len(c["validation"]) == 100
    paths = lambda ds: [x["path"] for x in ds.data.column("img").to_pylist()]  # noqa: E731
    assert paths(a["validation"]) == paths(b["validation"])
    assert paths(a["validation"]) != paths(c["validation"])
    assert not set(paths(a["validation"])) & set(paths(a["train"]))
    assert Counter(a["validation"]["label"]) == {k: 10 for k in range(10)}
    with pytest.raises(ValueError, match="validation_size=2000"):
        load_cifar10(validation_size=2000, decode=False, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="fraction"):
        load_cifar10(validation_size=1.5, decode=False, cache_dir=tmp_path)


def test_shared_hub_layout_parquet(shared_dir, tmp_path):
    root = shared_dir / "data" / "cifar10"
    # Only the small test file, undecoded: fast; the collator decodes the few rows touched.
    dsd = load_cifar10(root, splits=["test"], decode=False, cache_dir=tmp_path)
    ds = dsd["test"]
    assert len(ds) == 10_000 and ds.features["label"].names == list(CIFAR10_CLASSES)
    batch = Cifar10Collator(return_class_labels=True)([ds[i] for i in range(8)])
    assert batch["labels"].shape == (8, 3, 32, 32)
    assert 0 <= int(batch["labels"].min()) and int(batch["labels"].max()) <= 255
    assert batch["labels"].float().std() > 10  # real images, not blanks
    with pytest.raises(ValueError, match=r"split\(s\) \['validation'\] not found"):
        load_cifar10(root, splits=["validation"], decode=False, cache_dir=tmp_path)


def test_local_files_and_dict_sources(tmp_path):
    good = [_png_bytes(color=(i, 2 * i, 3 * i)) for i in range(4)]
    _write_parquet(tmp_path / "d" / "train-00000-of-00001.parquet", good, [0, 1, 2, 3])
    _write_parquet(tmp_path / "d" / "test-00000-of-00001.parquet", good[:2], [4, 5])
    dsd = load_cifar10(tmp_path / "d", cache_dir=tmp_path / "c")
    assert {k: len(v) for k, v in dsd.items()} == {"train": 4, "test": 2}
    assert dsd["train"].features["label"].names == list(CIFAR10_CLASSES)  # int labels cast to ClassLabel
    assert dsd["train"][2]["pixels"][:, 0, 0].tolist() == [2, 4, 6]  # PNG: lossless, exact values
    single = load_cifar10({"eval": str(tmp_path / "d" / "test-00000-of-00001.parquet")}, cache_dir=tmp_path / "c")
    assert list(single) == ["eval"] and len(single["eval"]) == 2


def test_bad_sources_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither an existing folder"):
        load_cifar10(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no \\*.parquet files"):
        load_cifar10(tmp_path / "empty")
    _write_parquet(tmp_path / "odd" / "stuff.parquet", [_png_bytes()], [0])
    with pytest.raises(ValueError, match="cannot tell the split"):
        load_cifar10(tmp_path / "odd")
    with pytest.raises(ConnectionError, match="could not load hub dataset 'someone/not-a-dataset'"):
        load_cifar10("someone/not-a-dataset", cache_dir=tmp_path / "c")


def test_bad_rows_are_named(tmp_path):
    _write_parquet(tmp_path / "lab" / "train-0.parquet", [_png_bytes()] * 3, [0, 12, 1])
    with pytest.raises(ValueError, match=r"split 'train' row 1: label 12 outside 0..9"):
        load_cifar10(tmp_path / "lab", cache_dir=tmp_path / "c")
    _write_parquet(tmp_path / "size" / "test-0.parquet", [_png_bytes(), _png_bytes(size=(16, 16))], [0, 1])
    with pytest.raises(ValueError, match=r"split 'test' row 1: unreadable image \(expected a 32x32 image, got 16x16\)"):
        load_cifar10(tmp_path / "size", cache_dir=tmp_path / "c")
    _write_parquet(tmp_path / "junk" / "test-0.parquet", [_png_bytes(), b"not an image at all"], [0, 1])
    with pytest.raises(ValueError, match=r"split 'test' row 1: unreadable image"):
        load_cifar10(tmp_path / "junk", cache_dir=tmp_path / "c")
    import datasets

    empty = datasets.Dataset.from_dict(
        {"img": [], "label": []},
        features=datasets.Features({"img": datasets.Image(), "label": datasets.Value("int64")}),
    )
    os.makedirs(tmp_path / "empty2")
    empty.to_parquet(str(tmp_path / "empty2" / "train-0.parquet"))
    with pytest.raises(ValueError, match="split 'train' is empty"):
        load_cifar10(tmp_path / "empty2", cache_dir=tmp_path / "c")
