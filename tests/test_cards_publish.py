"""Model cards from results.json, and publishing through an injectable (fake, offline) Hub api."""

import json
import pathlib
import shutil

import pytest
from huggingface_hub import ModelCard

from vq_hf.cards import DEFAULT_TEMPLATE_PATH, build_model_card, publish, write_model_card

REPO = pathlib.Path(__file__).resolve().parents[1]


def _results(**over):
    res = {
        "task": "cifar10",
        "dataset": "uoft-cs/cifar10",
        "data_variant": "JPEG-CIFAR-10 sample (embedded)",
        "split": "test",
        "metrics": {
            "uniform_nelbo_bits_per_dim": 4.7123,
            "reconstruction_bits_per_dim": 3.5456,
            "codebook_perplexity": [101.5, 90.25],
            "used_codes": 120,
        },
        "metrics_polyak": {"uniform_nelbo_bits_per_dim": 4.7001},
        "polyak_decay": 0.998,
        "training": {
            "steps": 1500,
            "wall_time_s": 3725.0,
            "hardware": "2-core CPU",
            "config_path": "training/configs/cifar10/quick.yaml",
            "seed": 0,
        },
        "model": {"quantizer_type": "reestimating", "codebook_size": 128, "num_codebooks": 2, "batch_norm": True},
    }
    res.update(over)
    return res


def test_card_eval_results_round_trip_through_model_card_load(tmp_path):
    res = _results()
    card = build_model_card(res, {"learning_rate": 5e-4, "quantizer_type": "reestimating"})
    path = tmp_path / "README.md"
    card.save(str(path))
    loaded = ModelCard.load(str(path))
    assert loaded.data.library_name == "vq_hf"
    assert loaded.data.datasets == ["uoft-cs/cifar10"]
    got = {e.metric_type: e.metric_value for e in loaded.data.eval_results}
    # every finite scalar metric is in model-index, Polyak ones under <name>_polyak; lists are not
    assert got == {
        "uniform_nelbo_bits_per_dim": 4.7123,
        "reconstruction_bits_per_dim": 3.5456,
        "used_codes": 120,
        "uniform_nelbo_bits_per_dim_polyak": 4.7001,
    }
    assert {e.dataset_split for e in loaded.data.eval_results} == {"test"}
    assert {e.dataset_name for e in loaded.data.eval_results} == {"JPEG-CIFAR-10 sample (embedded)"}
    text = path.read_text()
    assert "not comparable" in text and "lossless" in text  # JPEG caveat
    assert "`codebook_perplexity`" in text and "[101.5, 90.25]" in text  # list metric kept in the table
    assert "Not in the model-index metadata" in text
    assert "learning_rate: 0.0005" in text  # the recipe
    assert "1500" in text and "2-core CPU" in text  # training budget
    assert "Intended use" in text and "discrete" in text.lower()


def test_lossless_variant_has_no_jpeg_caveat_and_speech_uses_ctc_class():
    card = build_model_card(
        _results(
            task="speech",
            dataset="wsj",
            data_variant="WSJ si284 / dev93",
            split="dev93",
            metrics={"phone_error_rate": 0.105, "codebook_perplexity": 393.0},
            metrics_polyak={},
        ),
        {},
    )
    assert "not comparable" not in card.content
    assert "VQVAEForCTC" in card.content
    assert card.data.eval_results[0].task_type == "automatic-speech-recognition"


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: r.pop("task"), "'task'"),
        (lambda r: r.update(task="mnist"), "'task' must be one of"),
        (lambda r: r["metrics"].update(ppl="high"), "metric 'ppl'"),
        (lambda r: r["training"].pop("steps"), "results.training: missing required field 'steps'"),
        (lambda r: r["training"].update(wall_time_s="1h"), "'wall_time_s' must be"),
    ],
)
def test_invalid_results_name_the_field(mutate, message):
    res = _results()
    mutate(res)
    with pytest.raises(ValueError, match=message):
        build_model_card(res, {})


class FakeApi:
    """Records create_repo and copies upload_folder's files into a local 'remote' folder."""

    def __init__(self, remote):
        self.remote = pathlib.Path(remote)
        self.calls = []

    def create_repo(self, repo_id, **kw):
        self.calls.append(("create_repo", repo_id, kw))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, *, folder_path, repo_id, ignore_patterns=(), **kw):
        import fnmatch

        self.calls.append(("upload_folder", repo_id, kw))
        src = pathlib.Path(folder_path)
        for f in src.rglob("*"):
            rel = f.relative_to(src).as_posix()
            if f.is_file() and not any(fnmatch.fnmatch(rel, p) for p in ignore_patterns):
                dst = self.remote / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(f, dst)
        return "commit-info"


def _model_folder(tmp_path):
    folder = tmp_path / "model"
    (folder / "checkpoints" / "step_10").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "vq_hf_vqvae"}))
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "checkpoints" / "step_10" / "optimizer.bin").write_bytes(b"state")
    (folder / "results.json").write_text(json.dumps(_results()))
    (folder / "training_config.json").write_text(json.dumps({"learning_rate": 0.0005}))
    (folder / "README.md").write_text("# generic card written by someone else\n")
    return folder


def test_publish_uploads_folder_with_our_readme(tmp_path):
    folder = _model_folder(tmp_path)
    api = FakeApi(tmp_path / "remote")
    assert publish(folder, "me/vqvae-cifar10", api=api, private=True, commit_message="v1") == "commit-info"
    (name, repo, kw), (name2, repo2, kw2) = api.calls
    assert (name, repo, kw["exist_ok"], kw["private"]) == ("create_repo", "me/vqvae-cifar10", True, True)
    assert (name2, repo2, kw2["commit_message"]) == ("upload_folder", "me/vqvae-cifar10", "v1")
    uploaded = sorted(p.relative_to(api.remote).as_posix() for p in api.remote.rglob("*") if p.is_file())
    assert uploaded == ["README.md", "config.json", "model.safetensors", "results.json", "training_config.json"]
    readme = (api.remote / "README.md").read_text()
    assert "generic card" not in readme and 'from_pretrained("me/vqvae-cifar10")' in readme
    card = ModelCard.load(str(api.remote / "README.md"))
    got = {e.metric_type: e.metric_value for e in card.data.eval_results}
    expected = {k: v for k, v in json.loads((folder / "results.json").read_text())["metrics"].items() if not isinstance(v, list)}
    assert {k: got[k] for k in expected} == expected
    assert "learning_rate: 0.0005" in readme  # picked up training_config.json


def test_publish_refuses_incomplete_folders(tmp_path):
    folder = _model_folder(tmp_path)
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="safetensors"):
        publish(folder, "me/x", api=FakeApi(tmp_path / "r"))
    folder = tmp_path / "bare"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"w")
    with pytest.raises(FileNotFoundError, match="results.json"):
        publish(folder, "me/x", api=FakeApi(tmp_path / "r"))


def test_write_model_card_reports_bad_json_with_line(tmp_path):
    (tmp_path / "results.json").write_text('{\n  "task": "cifar10",\n  oops\n}')
    with pytest.raises(ValueError, match=r"results.json:3"):
        write_model_card(tmp_path)


def test_documented_template_copy_matches_the_packaged_template():
    assert (REPO / "model_cards" / "vqvae.md").read_text() == pathlib.Path(DEFAULT_TEMPLATE_PATH).read_text()


def test_free_text_dataset_names_stay_out_of_the_datasets_metadata():
    card = build_model_card(_results(dataset="vq_hf embedded CIFAR-10 sample (2,000 train / 500 test, JPEG)"), {})
    assert not card.data.datasets  # only Hub ids belong there
    assert card.data.eval_results[0].dataset_type == "vq-hf-embedded-cifar-10-sample-2-000-train-500-test-jpeg"
    assert "vq_hf embedded CIFAR-10 sample (2,000 train / 500 test, JPEG)" in card.content


def test_per_codebook_metrics_are_described_per_codebook_and_stand_in_handwriting_is_flagged():
    res = _results(
        task="handwriting", dataset="synthetic-handwriting",
        data_variant="stand-in handwriting lines (200 lines, vq-hf make-handwriting-corpus)",
        main_metric="reconstruction_bits_per_dim",
        metrics={"reconstruction_bits_per_dim": 0.9, "codebook_entropy_bits": [6.25, 5.5],
                 "perplexity": [76.1, 45.3], "perplexity_sum": 121.4, "used_codes": [90, 70]},
        metrics_polyak=None, polyak_decay=None)
    res.pop("metrics_polyak")
    res.pop("polyak_decay")
    text = str(build_model_card(res, {}))
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| `")}
    # each name says what its value is: lists are per codebook, the sum is named as a sum
    assert "[6.25, 5.5]" in rows["`codebook_entropy_bits`"] and "one value per codebook" in rows["`codebook_entropy_bits`"]
    assert "summed" not in rows["`codebook_entropy_bits`"]
    assert "one value per codebook" in rows["`perplexity`"] and "summed over codebooks" in rows["`perplexity_sum`"]
    assert "a synthetic stand-in corpus" in text and "**not comparable**" in text
