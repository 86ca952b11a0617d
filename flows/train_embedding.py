"""The `train_embedding` flow: one task around `radsim.model.train.train_embedding_model` (DESIGN §1, §8).

Thin on purpose: the training loop owns checkpoints and resume, so a retry is a `resume`.
With `launch` (radsim train --nproc-per-node N) the task owns a torchrun process group
instead and streams every rank's lines to the run log (radsim.model.launch).
The model card's validation metrics (and the untrained-encoder baseline) become a
markdown artifact. Run on its own: `python -m radsim.flows.train_embedding --shards S --out M`.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from radsim.flows.prefect_env import configure_prefect

configure_prefect()  # before prefect is imported

from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from radsim.model.config import TrainConfig, train_config  # noqa: E402

RANK_ENTRY = "radsim.flows.torchrun"  # each torchrun rank runs `python -m RANK_ENTRY` (radsim train's arguments)


@task(name="train-encoder", cache_policy=NO_CACHE)
def train_task(shards: str, out: str, config: TrainConfig, resume: bool, progress: bool) -> dict[str, Any]:
    from radsim.model.train import train_embedding_model

    return _result_dict(train_embedding_model(shards, out, config, resume=resume, progress=progress))


@task(name="torchrun-train", cache_policy=NO_CACHE)
def torchrun_task(shards: str, out: str, config: TrainConfig, resume: bool, progress: bool,
                  launch: dict[str, Any]) -> dict[str, Any]:
    """Own torchrun's process group for the whole job: stream its lines, stop it all if this run stops."""
    from radsim.model.config import changed_fields, rank_argv
    from radsim.model.data import read_shard_info
    from radsim.model.launch import LaunchSpec, for_console, launch_training
    from radsim.model.train_result import result_from_folder

    read_shard_info(shards)  # a bad shard folder is one line here, not one per rank
    spec = LaunchSpec(**launch)
    run_log = _run_log()
    run_log.info("torchrun: %d process(es) per node x %d node(s), this node %d", spec.nproc_per_node, spec.nnodes,
                 spec.node_rank)
    def on_line(line: str) -> None:  # every line to the run log; rank and torchrun lines to the console too
        run_log.info(line)
        if for_console(line):
            print(line, flush=True)

    kw = {**changed_fields(config), "resume": resume, "progress": progress}
    launch_training(spec, rank_argv(shards, out, kw), out, on_line=on_line, entry=RANK_ENTRY)
    return _result_dict(result_from_folder(out))


def _run_log() -> logging.LoggerAdapter:
    """This task run's log at INFO, sent to the Prefect API only (the console gets the lines by print).

    Its own level is INFO whatever PREFECT_LOGGING_LEVEL says (as radsim.flows.run_log's), and it
    does not propagate to Prefect's console handler, so nothing is shown twice.
    """
    from prefect.logging.handlers import APILogHandler

    base = get_run_logger()
    stream = logging.getLogger("prefect.task_runs.torchrun")
    stream.setLevel(logging.INFO)
    stream.propagate = False
    if not any(isinstance(h, APILogHandler) for h in stream.handlers):
        stream.addHandler(APILogHandler())
    return logging.LoggerAdapter(stream, dict(base.extra or {}))


def _result_dict(result: Any) -> dict[str, Any]:
    return {"model_version": result.model_version, "model_dir": str(result.model_dir), "stopped": result.stopped,
            "steps": result.steps, "best_epoch": result.best_epoch, "images_per_s": result.images_per_s,
            "metrics": result.card.metrics, "baseline_metrics": result.card.baseline_metrics,
            "summary": result.summary()}


def card_artifact(model_version: str, card: dict[str, Any], note: str = "") -> None:
    """The model card as a markdown artifact: validation metrics with intervals and n, baselines, collapse, decision.

    One key for every model, so the UI shows the cards' history; the pipeline writes it again once
    the gates have decided.
    """
    from radsim.evaluation.display import model_card_markdown
    from radsim.flows.artifacts import markdown_artifact

    markdown_artifact(
        "model-card",
        model_card_markdown(
            model_version, card.get("metrics") or {}, card.get("baseline_metrics") or {}, card.get("promotion"), note
        ),
        f"model card of {model_version}",
    )


def _artifact(result: dict[str, Any]) -> None:
    note = (f"Stopped: {result['stopped']} after {result['steps']} steps; best epoch {result['best_epoch']}; "
            f"{result['images_per_s']:.0f} images/s.")
    card_artifact(result["model_version"], {"metrics": result.get("metrics"),
                                            "baseline_metrics": result.get("baseline_metrics")}, note)


@flow(name="train_embedding")
def train_embedding(shards: str | Path, out: str | Path, config: TrainConfig | None = None,
                    launch: dict[str, Any] | None = None, resume: bool = False, progress: bool = True,
                    options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train an encoder on SHARDS into OUT with `config` (a TrainConfig, shown as the run's parameters).

    `options` (train_embedding_model's keyword arguments: TrainConfig fields, `resume`,
    `progress`) override it. `launch` (LaunchSpec fields: nproc_per_node, nnodes, ...) trains
    under torchrun with DDP.
    """
    values = dict(options or {})
    resume, progress = bool(values.pop("resume", resume)), bool(values.pop("progress", progress))
    config = train_config(**{**(config.model_dump() if config is not None else {}), **values})
    if launch:
        result = torchrun_task(str(shards), str(out), config, resume, progress, dict(launch))
    else:
        result = train_task(str(shards), str(out), config, resume, progress)
    _artifact(result)
    return result


def main(argv: list[str] | None = None) -> int:
    from radsim.flows.cli import main as cli_main

    return cli_main(["train", *(sys.argv[1:] if argv is None else argv), "--flow"])


if __name__ == "__main__":
    sys.exit(main())
