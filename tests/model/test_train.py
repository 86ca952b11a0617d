"""The shard-fed training loop: learning, model folder, resume, bad input, non-finite loss, CLI, flow."""
from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest
import torch

from radsim.data_contracts import UsageError, default_vocabulary
from radsim.model import train as train_mod
from radsim.model.checkpoint import load_model, read_checkpoint
from radsim.model.train import train_embedding_model
from radsim.model.train_core import NonFiniteLossError

FAST = {"batch_size": 32, "device": "cpu", "num_threads": 1, "progress": False}


@pytest.fixture(scope="module")
def trained(train_shards, tmp_path_factory):
    """One <= 30 s run shared by the tests that only read its outputs."""
    out = tmp_path_factory.mktemp("model") / "m"
    result = train_embedding_model(train_shards["shards"], out, epochs=30, max_minutes=0.5, patience=None,
                                   lr=3e-3, **FAST)
    return result


def test_training_beats_chance_on_validation(trained):
    m = trained.card.metrics
    assert m["split"] == "val" and m["n_queries"] >= 20
    assert m["precision_at_10"] >= m["precision_at_10_chance"] + 0.10, m
    base = trained.card.baseline_metrics["untrained_encoder"]
    assert m["precision_at_10"] > base["precision_at_10"]
    assert trained.stopped in ("completed", "time_limit")


def test_model_folder_and_card(trained, train_shards):
    out = trained.model_dir
    assert {"model.pt", "last.pt", "model_card.json"} <= {p.name for p in out.iterdir()}
    card = json.loads((out / "model_card.json").read_text())
    import hashlib

    digest = hashlib.sha256((train_shards["shards"] / "manifest.parquet").read_bytes()).hexdigest()
    assert card["data_manifest_sha256"] == digest
    assert card["model_version"].startswith("small-ml2-") and card["model_version"].endswith(digest[:8])
    assert "." not in card["model_version"]
    assert card["key_id"].startswith("demo-") and card["findings"][0] == "no_finding"
    assert card["image_size"] == 64 and card["embedding_dim"] == 128
    assert set(card["baseline_metrics"]) == {"untrained_encoder", "random_embedding"}
    assert card["training"]["images_per_s"] > 0 and card["training"]["seed"] == 0
    assert "not a medical device" in card["disclaimer"].lower()
    loaded = load_model(out)  # the best weights rebuild and embed
    assert loaded.model_version == card["model_version"]
    z = loaded.model(torch.rand(3, 1, 64, 64))
    assert z.shape == (3, 128) and torch.allclose(z.norm(dim=1), torch.ones(3), atol=1e-5)
    best = max(h["precision_at_10"] for h in trained.history if h["precision_at_10"] is not None)
    assert card["metrics"]["precision_at_10"] == pytest.approx(best)


def _state(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["state_dict"]


def test_resume_reproduces_the_uninterrupted_run(train_shards, tmp_path):
    kw = {**FAST, "epochs": 2, "patience": None, "seed": 5}
    full = train_embedding_model(train_shards["shards"], tmp_path / "full", **kw)
    cut = train_embedding_model(train_shards["shards"], tmp_path / "cut", max_steps=3, **kw)
    assert cut.stopped == "max_steps" and cut.steps == 3 < full.steps
    again = train_embedding_model(train_shards["shards"], tmp_path / "cut", resume=True, **kw)
    assert again.steps == full.steps and again.model_version == cut.model_version
    a, b = _state(tmp_path / "full" / "last.pt"), _state(tmp_path / "cut" / "last.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    done = train_embedding_model(train_shards["shards"], tmp_path / "cut", resume=True, **kw)
    assert done.stopped == "already_done"


def test_existing_model_folder_needs_resume(trained, train_shards):
    with pytest.raises(UsageError, match="--resume"):
        train_embedding_model(train_shards["shards"], trained.model_dir, epochs=1, **FAST)


def test_empty_or_missing_shard_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="not a shard folder"):
        train_embedding_model(tmp_path / "empty", tmp_path / "m", **FAST)
    with pytest.raises(UsageError, match="no such folder"):
        train_embedding_model(tmp_path / "nope", tmp_path / "m", **FAST)


def test_shards_of_another_image_size_than_the_resumed_model(trained, train_shards, tmp_path):
    from radsim.data_contracts import demo_keyer
    from radsim.imaging.shards import write_shards

    other = tmp_path / "s48"
    write_shards(train_shards["exams"], train_shards["labels"], other, keyer=demo_keyer(), image_size=48,
                 progress=False)
    model = tmp_path / "m"
    shutil.copytree(trained.model_dir, model)
    with pytest.raises(UsageError, match="48 px.*64 px.*--image-size 64"):
        train_embedding_model(other, model, resume=True, **FAST)
    with pytest.raises(UsageError, match="48 px.*64 px"):
        train_embedding_model(other, tmp_path / "fresh", init_weights=model, **FAST)


def test_model_of_another_vocabulary_or_backbone(trained, train_shards, tmp_path):
    model = tmp_path / "m"
    shutil.copytree(trained.model_dir, model)
    with pytest.raises(UsageError, match="'small' checkpoint, not 'resnet18'"):
        train_embedding_model(train_shards["shards"], model, resume=True, backbone="resnet18", **FAST)
    with pytest.raises(UsageError, match="'small' checkpoint, not 'resnet18'"):
        train_embedding_model(train_shards["shards"], tmp_path / "fresh", init_weights=model / "model.pt",
                              backbone="resnet18", **FAST)
    payload = torch.load(model / "last.pt", weights_only=True)
    payload["card"]["findings"] = payload["card"]["findings"][:-1]
    payload["card"]["vocabulary_name"] = "site-vocab"
    torch.save(payload, model / "last.pt")
    n = len(default_vocabulary())
    with pytest.raises(UsageError, match=f"vocabulary 'site-vocab' \\({n - 1} findings\\).*{n} findings"):
        train_embedding_model(train_shards["shards"], model, resume=True, **FAST)


def test_label_vector_of_the_wrong_length(train_shards, tmp_path):
    shards = tmp_path / "shards"
    shutil.copytree(train_shards["shards"], shards)
    tar_path = shards / "shard-000000.tar"
    members = []
    with tarfile.open(tar_path) as tar:
        for info in tar:
            members.append((info, tar.extractfile(info).read()))
    import io

    with tarfile.open(tar_path, "w") as tar:
        for info, data in members:
            if info.name.endswith(".json"):
                meta = json.loads(data)
                meta["labels"] = meta["labels"][:-2]
                data = json.dumps(meta).encode()
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    n = len(default_vocabulary())
    with pytest.raises(UsageError, match=f"label vector has {n - 2} values but the shards' vocabulary has {n}"):
        train_embedding_model(shards, tmp_path / "m", **FAST)


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(train_shards, tmp_path, monkeypatch):
    real = train_mod.build_loss
    calls = {"n": 0}

    def poisoned(name, **kw):
        inner = real(name, **kw)

        def loss(emb, labels):
            calls["n"] += 1
            value = inner(emb, labels)
            return value * float("nan") if calls["n"] == 12 else value

        return loss

    monkeypatch.setattr(train_mod, "build_loss", poisoned)
    out = tmp_path / "m"
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \(nan\) at step 12 .*last good checkpoint"):
        train_embedding_model(train_shards["shards"], out, epochs=3, patience=None, **{**FAST, "batch_size": 64})
    last = read_checkpoint(out / "last.pt")
    steps_per_epoch = last["card"]["training"]["steps_per_epoch"]
    assert steps_per_epoch < 12 and last["progress"]["step"] == 11 // steps_per_epoch * steps_per_epoch
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())
    assert (out / "model.pt").exists()  # the best model of the completed epoch(s)


def test_cli_train_and_its_errors(train_shards, tmp_path, capsys):
    from radsim.flows.cli import main

    assert main(["train", "--shards", str(tmp_path / "none"), "--out", str(tmp_path / "m")]) == 2
    assert "no such folder" in capsys.readouterr().err
    rc = main(["train", "--shards", str(train_shards["shards"]), "--out", str(tmp_path / "m"), "--epochs", "1",
               "--batch-size", "32", "--threads", "1", "--device", "cpu", "--no-progress"])
    assert rc == 0
    assert "trained small-ml2-" in capsys.readouterr().out
    assert (tmp_path / "m" / "model.pt").exists()


def test_train_embedding_flow_through_prefect_writes_a_markdown_artifact(prefect_harness, train_shards, tmp_path):
    from prefect.artifacts import Artifact

    from radsim.flows.train_embedding import train_embedding

    result = train_embedding(str(train_shards["shards"]), str(tmp_path / "m"), options={**FAST, "epochs": 1})
    assert result["model_version"].startswith("small-ml2-") and result["steps"] > 0
    assert (tmp_path / "m" / "model.pt").exists()
    artifact = Artifact.get("model-card")
    assert artifact is not None and result["model_version"] in artifact.data
    assert "| P@10 |" in artifact.data and "untrained encoder" in artifact.data
    n = result["metrics"]["n_patients"]
    assert f"labelled frontal films of {n} patients" in artifact.data  # the validation n
    p10 = result["metrics"]
    shown = (f"[{p10['precision_at_10_ci'][0]:.3f}, {p10['precision_at_10_ci'][1]:.3f}]" if "precision_at_10_ci" in p10
             else "too few to judge")
    assert shown in artifact.data and "Gate decision: not made yet" in artifact.data


@pytest.mark.parametrize("loss", ["ml2plus", "triplet", "ms"])
def test_every_loss_runs_through_the_loop(train_shards, tmp_path, loss):
    result = train_embedding_model(train_shards["shards"], tmp_path / loss, loss=loss, epochs=1, max_steps=2, **FAST)
    assert result.steps == 2 and result.model_version.startswith(f"small-{loss}-")
    assert read_checkpoint(tmp_path / loss / "model.pt")["card"]["loss"] == loss


def test_summary_says_too_few_for_what_a_small_validation_split_cannot_judge(tmp_path):
    """A validation split without a normal film has no AUC verdict: the summary says why, with no number."""
    from radsim.model.train_result import TrainResult
    from radsim.warehouse.card import ModelCard

    card = ModelCard(
        "v1",
        "small",
        8,
        64,
        "ml2",
        "radsim",
        "1",
        ["no_finding"],
        "k",
        "sha",
        "now",
        metrics={
            "precision_at_10": 0.5,
            "precision_at_10_chance": 0.31,
            "precision_at_10_ci": [0.41, 0.6],
            "precision_at_10_verdict": "above chance",
            "normal_auc": 0.0,
            "normal_auc_verdict": "too few to judge",
            "normal_auc_note": "0 normal and 9 abnormal exams",
            "n_items": 9,
            "n_patients": 7,
        },
    )
    line = TrainResult(tmp_path, "v1", card, 1, 1, 3, "max_steps", 10.0, 1.0).summary()
    assert "validation (9 images, 7 patients, epoch 1): P@10 0.500 [0.410, 0.600] above chance (chance 0.310)" in line
    assert "normal AUC too few to judge (0 normal and 9 abnormal exams), untrained n/a" in line


def test_same_command_and_seed_give_the_same_weights_on_a_busy_and_a_quiet_machine(train_shards, tmp_path):
    """Threads come from the CPU affinity, never the load: a loaded machine trains the same model."""
    import subprocess
    import sys

    def train(out, busy: bool):
        burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(3 if busy else 0)]
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "radsim.flows.cli", "train", "--shards", str(train_shards["shards"]),
                 "--out", str(out), "--device", "cpu", "--batch-size", "16", "--epochs", "1", "--max-steps", "4",
                 "--seed", "5", "--no-progress"], capture_output=True, text=True, timeout=300)
        finally:
            for b in burners:
                b.kill()
                b.wait()
        assert proc.returncode == 0, proc.stderr
        return torch.load(out / "model.pt", weights_only=True)

    quiet, busy = train(tmp_path / "quiet", busy=False), train(tmp_path / "busy", busy=True)
    assert quiet["card"]["training"]["num_threads"] == busy["card"]["training"]["num_threads"]
    assert quiet["card"]["training"]["threads_chosen_from"] == "cpu affinity"
    for name, tensor in quiet["state_dict"].items():
        assert torch.equal(tensor, busy["state_dict"][name]), name


def test_thread_choice_ignores_the_machine_load(monkeypatch):
    import os

    from radsim.model.distributed import default_num_threads

    cores = len(os.sched_getaffinity(0))
    monkeypatch.setattr(os, "getloadavg", lambda: (1000.0, 1000.0, 1000.0))
    assert default_num_threads(1) == cores and default_num_threads(2) == max(1, cores // 2)
    assert default_num_threads(1, requested=3) == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert default_num_threads(1) == 1
