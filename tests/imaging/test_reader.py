"""The training reader and the manifest-order iterator read back exactly what was written."""
from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from radsim.data_contracts import default_vocabulary, demo_keyer, load_contract, rows_to_table
from radsim.imaging.decode import read_image
from radsim.imaging.normalise import square_image
from radsim.imaging.reader import SampleFilter, StreamOrder, iter_manifest_samples, make_dataset, shard_paths
from radsim.imaging.shards import write_shards

VOCAB = default_vocabulary()
SIZE = 32
N = 12


@pytest.fixture(scope="module")
def shards(tmp_path_factory, make_dicom):
    d = tmp_path_factory.mktemp("reader")
    rows = []
    for i in range(N):
        path = make_dicom(d / f"{i}.dcm", seed=i, view="LL" if i == 3 else "PA")
        rows.append({"exam_id": f"E{i}", "patient_id": f"P{i}", "image_uri": str(path), "image_index": 0})
    contract = load_contract("labels", VOCAB)
    lab = []
    for i in range(0, N, 2):  # even exams labelled
        row = {"exam_id": f"E{i}", **{n: None for n in VOCAB.names}, "no_finding": 0, "edema": 1, "fracture": -1}
        row["positive_findings"] = ["edema"]
        lab.append(row)
    out = d / "shards"
    write_shards(pa.Table.from_pylist(rows), contract.validate(rows_to_table(contract, lab)), out,
                 keyer=demo_keyer(), image_size=SIZE, maxcount=5, progress=False, split_fractions=(0.5, 0.5, 0.0))
    return {"out": out, "rows": rows}


def test_manifest_order_iterator_round_trips(shards):
    keyer = demo_keyer()
    samples = list(iter_manifest_samples(shards["out"], as_tensor=False))
    assert [s["sample_key"] for s in samples] == [f"{keyer.exam_key(r['exam_id'])}_0" for r in shards["rows"]]
    for s, r in zip(samples, shards["rows"]):
        expected = square_image(read_image(r["image_uri"]).pixels, SIZE).astype(np.float32) / 255
        np.testing.assert_array_equal(s["image"], expected)
        if s["labelled"]:
            assert s["labels"][VOCAB.index("edema")] == 1 and s["labels"][VOCAB.index("fracture")] == -1
            assert math.isnan(s["labels"][VOCAB.index("cardiomegaly")])
        else:
            assert np.isnan(s["labels"]).all()


def test_webdataset_pipeline_split_filter_and_tensors(shards):
    import torch

    by_key = {s["sample_key"]: s for s in iter_manifest_samples(shards["out"])}
    for split in ("train", "val"):
        got = list(make_dataset(shards["out"], select=SampleFilter(split), order=StreamOrder(shuffle=4, seed=1)))
        expected = {k for k, s in by_key.items() if s["split"] == split}
        assert {g["__key__"] for g in got} == expected and expected
        for g in got:
            assert g["image"].shape == (1, SIZE, SIZE) and g["image"].dtype == torch.float32
            assert torch.equal(g["image"], by_key[g["__key__"]]["image"])
            assert torch.equal(
                torch.nan_to_num(g["labels"], nan=7.0), torch.nan_to_num(by_key[g["__key__"]]["labels"], nan=7.0)
            )


def test_labelled_only_views_null_label_and_augment(shards):
    got = list(make_dataset(shards["out"], select=SampleFilter(None, labelled_only=True, views=("PA", "AP")),
                            order=StreamOrder(shuffle=0), null_label=0.0, augment=lambda t: 1.0 - t))
    labelled = [s for s in iter_manifest_samples(shards["out"]) if s["labelled"] and s["view_position"] in ("PA", "AP")]
    assert [g["__key__"] for g in got] == [s["sample_key"] for s in labelled]  # no shuffle: stored order
    assert all(g["labelled"] for g in got) and len(got) == N // 2
    assert not any(bool(g["labels"].isnan().any()) for g in got)
    import torch
    assert torch.allclose(got[0]["image"], 1.0 - labelled[0]["image"])


def test_resampled_epoch_and_dataloader(shards):
    import torch

    ds = make_dataset(shards["out"], select=SampleFilter(None),
                      order=StreamOrder(resampled=True, epoch_size=7, shuffle=8, seed=0))
    assert len(list(ds)) == 7
    unshuffled = make_dataset(shards["out"], select=SampleFilter(None), order=StreamOrder(shuffle=0))
    loader = torch.utils.data.DataLoader(unshuffled, batch_size=4, num_workers=0)
    batches = list(loader)
    assert sum(b["image"].shape[0] for b in batches) == N
    assert batches[0]["image"].shape == (4, 1, SIZE, SIZE)
    assert len(shard_paths(shards["out"])) == 3
