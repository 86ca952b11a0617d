"""Radiograph ingestion and WebDataset sharding (DESIGN §7).

Modules (import what you need; nothing heavy is imported here):
- decode:    read_image → DecodedImage, or ImageRejected(reason_code, message)
- reduced_decode: JPEG 2000 levels / JPEG DCT scaling, decoding only the resolution the output needs
- fidelity:  rank correlation of a reduced decode's stored image with a full decode's
- normalise: square 8-bit PNG, deterministic bytes
- shards:    write_shards (plan_shard_run → decode_batch → commit_shard_run)
- reader:    make_dataset (webdataset pipeline for training), iter_manifest_samples
"""
