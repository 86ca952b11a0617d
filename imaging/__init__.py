"""Radiograph ingestion and WebDataset sharding (DESIGN §7).

Modules (import what you need; nothing heavy is imported here):
- decode:    read_image → DecodedImage, or ImageRejected(reason_code, message)
- normalise: square 8-bit PNG, deterministic bytes
- shards:    write_shards (plan_shard_run → decode_batch → commit_shard_run)
- reader:    make_dataset (webdataset pipeline for training), iter_manifest_samples
"""
