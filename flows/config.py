"""`radsim.toml`: one file for a deployment's paths, vocabulary, image size, model, runner, schedule.

Precedence (DESIGN §4): CLI flag > environment (RADSIM_<SECTION>_<KEY>, e.g. RADSIM_MODEL_BACKBONE,
or the short names in ENV_ALIASES) > radsim.toml > defaults. The resolved configuration is saved
as `config.json` in the warehouse, so every run says what it ran with. An unknown key, a wrong
type or a value out of its bounds is a one-line usage error naming the key (exit 2). The keys,
their types, defaults and bounds are those of `RunConfig` (radsim.flows.run_config).

    [paths]      inbox, warehouse, truth, vocabulary          (paths or fsspec URIs)
    [imaging]    image_size, compact_after (merge the small shards at the end of the manifest once there are
                 this many; 0 never)
    [model]      backbone, loss, image_size, max_minutes, max_steps, batch_size, seed,
                 nproc_per_node (> 1: train with DDP under torchrun, one process per GPU),
                 min_val_patients (the promotion gates decide only with this many validation patients),
                 force_promote (publish or promote a model the gates refuse; recorded as forced)
    [runner]     task_runner ("threads" | "processes" | "dask"), workers, dask_address (tcp://HOST:PORT),
                 label_batch_size (reports per labelling task), decode_batch_size (images per decode
                 task), shards_per_task (shards embedded by one task when the runner is not "threads")
    [publish]    keep_versions (after each publication, keep the N versions first published last and the
                 current one; 0 keeps every version)
    [schedule]   cron (the pipeline deployment), train_cron (the train deployment), timezone; `radsim deploy`
                 gives them to Prefect
    [quarantine] max_fraction (a stage that refuses more of a run's input fails the run), min_count
                 (fewer refusals than this never fail it)
"""
from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from radsim.data_contracts import UsageError
from radsim.data_contracts.atomic import write_json_atomic
from radsim.warehouse.layout import CONFIG_FILE as _CONFIG_FILE

from .run_config import ENV_ALIASES, TASK_RUNNERS, RunConfig, check_cron, schema

__all__ = ["CONFIG_FILE", "ENV_ALIASES", "SCHEMA", "TASK_RUNNERS", "RunConfig", "check_cron", "env_name",
           "read_env", "read_toml", "resolve_config", "save_config"]

CONFIG_FILE = _CONFIG_FILE
SCHEMA: dict[str, tuple[type, Any]] = schema()  # dotted key → (type, default), derived from RunConfig


def env_name(key: str) -> str:
    return "RADSIM_" + key.replace(".", "_").upper()


def _coerce(key: str, value: Any, origin: str) -> Any:
    """A TOML, environment or command-line value as the key's type (bounds are RunConfig's to check)."""
    kind = SCHEMA[key][0]
    if kind is bool:
        if isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.strip().lower() in ("1", "true", "yes", "on")
        if isinstance(value, bool):
            return value
        raise UsageError(f"{origin}: {key} must be true or false, got {value!r}")
    if isinstance(value, str) and kind is not str:
        try:
            value = kind(value.strip())
        except ValueError:
            raise UsageError(f"{origin}: {key} must be {kind.__name__}, got {value!r}") from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise UsageError(f"{origin}: {key} must be {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def read_toml(path: str | Path) -> dict[str, Any]:
    """radsim.toml → {dotted key: value}; unknown sections or keys are errors that name them."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"configuration file {path} not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    out: dict[str, Any] = {}
    for section, table in doc.items():
        if not isinstance(table, dict):
            raise UsageError(f"{path}: unknown key {section!r} (settings live in sections: "
                             f"{', '.join(sorted({k.split('.')[0] for k in SCHEMA}))})")
        for name, value in table.items():
            key = f"{section}.{name}"
            if key not in SCHEMA:
                raise UsageError(f"{path}: unknown key {key!r}; known keys: {', '.join(SCHEMA)}")
            out[key] = _coerce(key, value, str(path))
    return out


def read_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    environ = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for key in SCHEMA:
        for name in (env_name(key), ENV_ALIASES.get(key)):
            if name and environ.get(name, "") != "":
                out[key] = _coerce(key, environ[name], f"environment {name}")
    return out


def resolve_config(cli: Mapping[str, Any] | None = None, toml_path: str | Path | None = None,
                   environ: Mapping[str, str] | None = None) -> RunConfig:
    """Defaults < radsim.toml < environment < CLI flags (None flags mean "not given")."""
    resolved: dict[str, Any] = {}
    sources = {key: "default" for key in SCHEMA}
    layers = [(read_toml(toml_path) if toml_path else {}, "radsim.toml"), (read_env(environ), "environment"),
              ({k: _coerce(k, v, "command line") for k, v in (cli or {}).items()
                if v is not None and k in SCHEMA}, "command line")]
    unknown = sorted(set(cli or {}) - set(SCHEMA))
    if unknown:
        raise UsageError(f"unknown configuration key {unknown[0]!r}")
    for layer, origin in layers:
        for key, value in layer.items():
            resolved[key], sources[key] = value, origin
    return RunConfig.from_flat(resolved, sources)


def save_config(config: RunConfig, folder: str | Path) -> Path:
    """Write the resolved configuration (with where each value came from) as folder/config.json."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"settings": config.flat(), "sources": {**{k: "default" for k in SCHEMA}, **config.sources}}
    return write_json_atomic(folder / CONFIG_FILE, doc)
