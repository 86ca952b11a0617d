"""`radsim similar`: the k nearest exams of an exam or a new radiograph in a published version (DESIGN §4)."""
from __future__ import annotations

import argparse
import sys

NAME = "similar"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        NAME,
        help="find the exams most similar to an exam (by id or key) or to a new radiograph",
        description="Return the k nearest exams, with cosine distances and findings, from a published model version "
        "(the newest unless --model-version). The query is a raw EXAM_ID (hashed with RADSIM_ID_KEY, or --demo-key), "
        "an --exam-key, or an --image file embedded on the fly with --model. Search uses a FAISS index cached in "
        "an index/ folder beside PUBLISHED_DIR and rebuilt when the version is republished.",
    )
    p.add_argument("exam_id", nargs="?", metavar="EXAM_ID", help="raw exam id (the site's accession/exam id)")
    p.add_argument("--embeddings", required=True, metavar="PUBLISHED_DIR", help="published folder (radsim publish --out)")
    p.add_argument("--exam-key", metavar="K", help="pseudonymised exam key instead of a raw id")
    p.add_argument("--image", metavar="FILE", help="a new radiograph (DICOM, PNG or JPEG) to embed and search with")
    p.add_argument("--model", metavar="MODEL_DIR", help="model folder, needed with --image (must be the table's version)")
    p.add_argument("--k", type=int, default=10, help="number of exams to return (default: %(default)s)")
    p.add_argument("--model-version", metavar="V", help="published version to search (default: the newest)")
    p.add_argument("--index", default="flat", choices=("flat", "ivf", "hnsw"),
                   help="FAISS index: flat = exact (default), ivf or hnsw = approximate, for large tables")
    p.add_argument("--index-dir", metavar="DIR",
                   help="where to cache indexes (default: the index/ folder beside PUBLISHED_DIR, e.g. "
                   "warehouse/index for warehouse/published)")
    p.add_argument("--include-query", action="store_true",
                   help="list the query exam itself among the results (left out by default: it is always the nearest)")
    p.add_argument("--id-map", metavar="TABLE",
                   help="restricted table with an exam_id column (id_map or exams), to suggest close ids for an unknown one")
    p.add_argument("--demo-key", action="store_true", help="hash EXAM_ID with the public demo key (synthetic data only)")
    p.add_argument("--json", action="store_true", help="print the neighbours as JSON")
    p.set_defaults(func=run)


def _unknown_id(exam_id: str, index, keyer, id_map: str | None) -> str:
    from radsim.evaluation.similar import suggest_ids

    msg = f"exam id {exam_id!r} is not in model version {index.model_version} under key {keyer.key_id}"
    if id_map is None:
        return msg + " (check the id and the key; give --id-map TABLE to see close matches)"
    from radsim.data_contracts import read_input_table

    table = read_input_table(id_map)
    if "exam_id" not in table.column_names:
        return msg + f" (--id-map {id_map} has no exam_id column)"
    ids = [str(i) for i in dict.fromkeys(table.column("exam_id").to_pylist()) if i is not None]
    close = [i for i in suggest_ids(exam_id, ids, n=10) if index.has_exam(keyer.exam_key(i))][:5]
    return msg + (f"; did you mean: {', '.join(close)}?" if close else "; no close match in the id map")


def run(args: argparse.Namespace) -> int:
    import json

    from radsim.data_contracts import UsageError, keyer_from_env
    from radsim.evaluation.similar import SimilarIndex, format_neighbours

    given = [x for x in (args.exam_id, args.exam_key, args.image) if x is not None]
    if len(given) != 1:
        raise UsageError("give exactly one query: EXAM_ID, --exam-key K or --image FILE")
    if args.k < 1:
        raise UsageError(f"--k must be at least 1 (got {args.k})")
    if args.image is not None and args.model is None:
        raise UsageError("--image needs --model MODEL_DIR to embed the radiograph")
    keyer = keyer_from_env(demo=args.demo_key) if args.exam_id is not None else None
    index = SimilarIndex.open(args.embeddings, args.model_version, kind=args.index, index_dir=args.index_dir)
    if args.exam_id is not None:
        if keyer.key_id != index.version.key_id:
            raise UsageError(f"the table was keyed with key_id {index.version.key_id!r} but this run's key is "
                             f"{keyer.key_id!r}: set the site's RADSIM_ID_KEY (or --demo-key for the demo)")
        key = keyer.exam_key(args.exam_id)
        if not index.has_exam(key):
            raise UsageError(_unknown_id(args.exam_id, index, keyer, args.id_map))
        neighbours = index.query(exam_key=key, k=args.k, exclude_self=not args.include_query)
        label = f"exam {args.exam_id} ({key})"
    elif args.exam_key is not None:
        neighbours = index.query(exam_key=args.exam_key, k=args.k, exclude_self=not args.include_query)
        label = f"exam key {args.exam_key}"
    else:
        from radsim.model.checkpoint import load_model
        from radsim.model.query import embed_image_file

        loaded = load_model(args.model)
        if loaded.model_version != index.model_version:
            raise UsageError(f"--model is version {loaded.model_version} but the table searched is {index.model_version}: "
                             "give --model-version or the matching model")
        neighbours, label = index.query(vector=embed_image_file(loaded, args.image), k=args.k), f"image {args.image}"
    if args.json:
        print(json.dumps({"model_version": index.model_version, "query": label,
                          "neighbours": [n.to_dict() for n in neighbours]}, indent=2))
    else:
        print(format_neighbours(neighbours, index.model_version, label))
    sys.stdout.flush()
    return 0
