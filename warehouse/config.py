"""`radsim.toml`: one file for a deployment's paths, vocabulary, image size, model, runner, schedule.

Precedence (DESIGN §4): CLI flag > environment (RADSIM_<SECTION>_<KEY>, e.g. RADSIM_MODEL_BACKBONE,
or the short names in ENV_ALIASES) > radsim.toml > defaults. The resolved configuration is saved
as `config.json` in the warehouse, so every run says what it ran with. An unknown key or a wrong
type is a one-line usage error naming the key (exit 2).

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
    [schedule]   cron
    [quarantine] max_fraction (a stage that refuses more of a run's input fails the run), min_count
                 (fewer refusals than this never fail it)
"""
from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from radsim.data_contracts import UsageError, settings
from radsim.data_contracts.atomic import atomic_output
from radsim.imaging.config import ShardOptions

CONFIG_FILE = "config.json"
TASK_RUNNERS = ("threads", "processes", "dask")

# dotted key → (type, default). `None` defaults mean "not set".
SCHEMA: dict[str, tuple[type, Any]] = {
    "paths.inbox": (str, None),
    "paths.warehouse": (str, None),
    "paths.truth": (str, None),
    "paths.vocabulary": (str, None),
    "imaging.image_size": (int, ShardOptions.model_fields["image_size"].default),
    "imaging.compact_after": (int, ShardOptions.model_fields["compact_after"].default),
    "model.backbone": (str, "small"),
    "model.loss": (str, "ml2"),
    "model.image_size": (int, 128),
    "model.max_minutes": (float, 5.0),
    "model.max_steps": (int, None),
    "model.batch_size": (int, None),
    "model.seed": (int, 0),
    "model.nproc_per_node": (int, 1),
    "model.min_val_patients": (int, 30),
    "model.force_promote": (bool, False),
    "runner.task_runner": (str, "threads"),
    "runner.workers": (int, 2),
    "runner.dask_address": (str, None),
    "runner.label_batch_size": (int, 512),
    "runner.decode_batch_size": (int, 32),
    "runner.shards_per_task": (int, 1),
    "publish.keep_versions": (int, 0),
    "schedule.cron": (str, "0 2 * * *"),
    "quarantine.max_fraction": (float, 0.2),
    "quarantine.min_count": (int, 10),
}
ENV_ALIASES = {"paths.inbox": "RADSIM_INBOX", "paths.warehouse": "RADSIM_WAREHOUSE", "paths.truth": "RADSIM_TRUTH",
               "paths.vocabulary": "RADSIM_VOCABULARY", "imaging.image_size": "RADSIM_IMAGE_SIZE",
               "runner.task_runner": "RADSIM_TASK_RUNNER", "runner.workers": "RADSIM_WORKERS",
               "runner.dask_address": "RADSIM_DASK_ADDRESS",
               "schedule.cron": "RADSIM_CRON"}


def env_name(key: str) -> str:
    return "RADSIM_" + key.replace(".", "_").upper()


def _coerce(key: str, value: Any, origin: str) -> Any:
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


def check_cron(expr: str) -> str:
    """A cron string that does not parse is a usage error now, not a schedule that never fires."""
    from cronsim import CronSim, CronSimError

    try:
        CronSim(expr, datetime(2026, 1, 1))
    except (CronSimError, ValueError, IndexError) as exc:
        raise UsageError(f"schedule.cron {expr!r} is not a valid cron string (minute hour day month weekday): {exc}") \
            from None
    return expr


def resolve_config(cli: Mapping[str, Any] | None = None, toml_path: str | Path | None = None,
                   environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Defaults < radsim.toml < environment < CLI flags (None flags mean "not given")."""
    resolved = {key: default for key, (_, default) in SCHEMA.items()}
    sources = {key: "default" for key in SCHEMA}
    layers = [(read_toml(toml_path) if toml_path else {}, "radsim.toml"), (read_env(environ), "environment"),
              ({k: _coerce(k, v, "command line") for k, v in (cli or {}).items() if v is not None}, "command line")]
    for layer, origin in layers:
        for key, value in layer.items():
            if key not in SCHEMA:
                raise UsageError(f"unknown configuration key {key!r}")
            resolved[key], sources[key] = value, origin
    if resolved["runner.task_runner"] not in TASK_RUNNERS:
        raise UsageError(f"runner.task_runner must be one of {TASK_RUNNERS}, got {resolved['runner.task_runner']!r}")
    _check_stage_settings(resolved)
    for key in ("model.nproc_per_node", "runner.workers", "runner.label_batch_size", "runner.decode_batch_size",
                "runner.shards_per_task"):
        if resolved[key] < 1:
            raise UsageError(f"{key} must be positive, got {resolved[key]}")
    if not 0 < resolved["quarantine.max_fraction"] <= 1:
        raise UsageError(f"quarantine.max_fraction must be in (0, 1], got {resolved['quarantine.max_fraction']}")
    for key in ("quarantine.min_count", "publish.keep_versions"):
        if resolved[key] < 0:
            raise UsageError(f"{key} must be at least 0, got {resolved[key]}")
    check_cron(resolved["schedule.cron"])
    resolved["_sources"] = sources
    return resolved


def _check_stage_settings(resolved: Mapping[str, Any]) -> None:
    """[imaging] and [model] values checked by the stage configs that declare their bounds."""
    from radsim.model.config import TrainConfig

    settings.build(ShardOptions, shard_settings(resolved), "configuration [imaging]")
    settings.build(TrainConfig, training_options(resolved), "configuration [model]")


def shard_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The imaging section as ShardOptions fields."""
    return {key: config[f"imaging.{key}"] for key in ("image_size", "compact_after")}


def quarantine_ceiling(config: Mapping[str, Any]) -> Any:
    from radsim.data_contracts import QuarantineCeiling

    return QuarantineCeiling(float(config.get("quarantine.max_fraction", 0.2)), int(config.get("quarantine.min_count", 10)))


def training_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """The model section as `train_embedding_model` keyword arguments (unset ones left out)."""
    out = {}
    for key in ("backbone", "loss", "image_size", "max_minutes", "max_steps", "batch_size", "seed"):
        value = config.get(f"model.{key}")
        if value is not None:
            out[key] = value
    return out


def launch_options(config: Mapping[str, Any]) -> dict[str, Any] | None:
    """model.nproc_per_node > 1 → the torchrun layout for train_embedding (radsim.model.launch), else None."""
    n = int(config.get("model.nproc_per_node") or 1)
    return {"nproc_per_node": n} if n > 1 else None


def save_config(config: Mapping[str, Any], folder: str | Path) -> Path:
    """Write the resolved configuration (with where each value came from) as folder/config.json."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"settings": {k: v for k, v in config.items() if not k.startswith("_")},
           "sources": dict(config.get("_sources", {}))}
    with atomic_output(folder / CONFIG_FILE) as tmp:
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return folder / CONFIG_FILE
