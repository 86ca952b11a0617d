"""`radsim similar`: the k nearest exams of an exam or a new radiograph in a published version (DESIGN §4)."""
from __future__ import annotations

import argparse
import sys

from radsim.evaluation.similar import DEFAULT_KIND, DEFAULT_NEIGHBOURS, INDEX_KINDS

NAME = "similar"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        NAME,
        help="find the exams most similar to an exam (by id or key) or to a new radiograph",
        description="Return the k nearest exams, with cosine distances and findings, from a published model version "
        "(the current one unless --model-version; else the one published last). The query is a raw EXAM_ID "
        "(hashed with RADSIM_ID_KEY, or --demo-key), an --exam-key, or an --image file embedded on the fly with "
        "the version's model (--model, or in a warehouse the models/ folder beside PUBLISHED_DIR). With --id-map the "
        "neighbours' raw exam ids are printed too, marked restricted: for in-site users only. Search uses a FAISS "
        "index cached in an index/ folder beside PUBLISHED_DIR and rebuilt when the version is republished.",
    )
    p.add_argument("exam_id", nargs="?", metavar="EXAM_ID", help="raw exam id (the site's accession/exam id)")
    p.add_argument(
        "--embeddings", required=True, metavar="PUBLISHED_DIR", help="published folder (radsim publish --out)"
    )
    p.add_argument("--exam-key", metavar="K", help="pseudonymised exam key instead of a raw id")
    p.add_argument("--image", metavar="FILE", help="a new radiograph (DICOM, PNG or JPEG) to embed and search with")
    p.add_argument("--model", metavar="MODEL_DIR", help="model folder for --image (must be the table's version; "
                   "default: PUBLISHED_DIR/../models/<version>, the warehouse's model of the version searched)")
    p.add_argument("--k", type=int, default=DEFAULT_NEIGHBOURS, help="number of exams to return (default: %(default)s)")
    p.add_argument("--model-version", metavar="V", help="published version to search (default: the current one)")
    p.add_argument("--index", default=DEFAULT_KIND, choices=INDEX_KINDS,
                   help="FAISS index: flat = exact (default), ivf or hnsw = approximate, for large tables")
    p.add_argument("--index-dir", metavar="DIR",
                   help="where to cache indexes (default: the index/ folder beside PUBLISHED_DIR, e.g. "
                   "warehouse/index for warehouse/published)")
    p.add_argument("--include-query", action="store_true",
                   help="list the query exam itself among the results (left out by default: it is always the nearest)")
    p.add_argument(
        "--id-map",
        metavar="TABLE",
        help="restricted table with an exam_id column (id_map or exams): print the neighbours' raw exam ids "
        "(restricted output, for in-site users; needs RADSIM_ID_KEY) and suggest close ids for an unknown one",
    )
    p.add_argument(
        "--demo-key", action="store_true", help="hash EXAM_ID with the public demo key (synthetic data only)"
    )
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


def _model_dir(args: argparse.Namespace, version: str) -> str:
    """--model, else the warehouse's folder of the searched version's model (models/ beside PUBLISHED_DIR)."""
    from pathlib import Path

    from radsim.data_contracts import UsageError

    if args.model is not None:
        return args.model
    beside = Path(args.embeddings).resolve().parent / "models" / version
    if not beside.is_dir():
        raise UsageError(f"--image needs --model MODEL_DIR: no model folder {beside} beside PUBLISHED_DIR (in a "
                         "warehouse the searched version's model is found there)")
    return str(beside)


def raw_ids_of(id_map: str, keyer, keys: set[str]) -> dict[str, str]:
    """exam_key → raw exam_id for `keys`, from a restricted table's exam_id column hashed with the site key."""
    from radsim.data_contracts import UsageError, read_input_table

    table = read_input_table(id_map)
    if "exam_id" not in table.column_names:
        raise UsageError(f"--id-map {id_map} has no exam_id column")
    ids = (str(i) for i in dict.fromkeys(table.column("exam_id").to_pylist()) if i is not None)
    return {key: exam_id for exam_id in ids if (key := keyer.exam_key(exam_id)) in keys}


def _query(args: argparse.Namespace, index, keyer) -> tuple[list, str]:
    from radsim.data_contracts import UsageError

    if args.exam_id is not None:
        key = keyer.exam_key(args.exam_id)
        if not index.has_exam(key):
            raise UsageError(_unknown_id(args.exam_id, index, keyer, args.id_map))
        return index.query(exam_key=key, k=args.k, exclude_self=not args.include_query), \
            f"exam {args.exam_id} ({key})"
    if args.exam_key is not None:
        return index.query(exam_key=args.exam_key, k=args.k, exclude_self=not args.include_query), \
            f"exam key {args.exam_key}"
    from radsim.model.checkpoint import load_model
    from radsim.model.query import embed_image_file

    model_dir = _model_dir(args, index.model_version)
    loaded = load_model(model_dir)
    if loaded.model_version != index.model_version:
        raise UsageError(f"--model is version {loaded.model_version} but the table searched is {index.model_version}: "
                         "give --model-version or the matching model")
    return index.query(vector=embed_image_file(loaded, args.image), k=args.k), f"image {args.image} (model {model_dir})"


def run(args: argparse.Namespace) -> int:
    import json

    from radsim.data_contracts import UsageError, keyer_from_env
    from radsim.evaluation.similar import SimilarIndex, format_neighbours

    given = [x for x in (args.exam_id, args.exam_key, args.image) if x is not None]
    if len(given) != 1:
        raise UsageError("give exactly one query: EXAM_ID, --exam-key K or --image FILE")
    if args.k < 1:
        raise UsageError(f"--k must be at least 1 (got {args.k})")
    keyed = args.exam_id is not None or args.id_map is not None
    keyer = keyer_from_env(demo=args.demo_key) if keyed else None
    index = SimilarIndex.open(args.embeddings, args.model_version, kind=args.index, index_dir=args.index_dir)
    if keyer is not None and keyer.key_id != index.version.key_id:
        raise UsageError(f"the table was keyed with key_id {index.version.key_id!r} but this run's key is "
                         f"{keyer.key_id!r}: set the site's RADSIM_ID_KEY (or --demo-key for the demo)")
    neighbours, label = _query(args, index, keyer)
    raw = raw_ids_of(args.id_map, keyer, {n.exam_key for n in neighbours}) if args.id_map else None
    if args.json:
        rows = [{**n.to_dict(), **({"exam_id": raw.get(n.exam_key)} if raw is not None else {})} for n in neighbours]
        doc = {"model_version": index.model_version, "query": label, "neighbours": rows}
        if raw is not None:
            doc["restricted"] = "exam_id values are raw ids from the id map: for in-site use only"
        print(json.dumps(doc, indent=2))
    else:
        print(format_neighbours(neighbours, index.model_version, label, raw))
    sys.stdout.flush()
    return 0
