"""EvalConfig: `radsim evaluate`'s options come from its declaration."""
from __future__ import annotations

from radsim.data_contracts import settings
from radsim.evaluation.config import EvalConfig
from radsim.flows.cli import build_parser, main


def test_evaluate_options_parse_into_an_eval_config():
    args = build_parser().parse_args(["evaluate", "--embeddings", "P", "--out", "R", "--no-plots", "--split", "val"])
    config = settings.from_arguments(EvalConfig, args)
    assert config == EvalConfig(split="val", plots=False)
    assert settings.from_arguments(EvalConfig, build_parser().parse_args(
        ["evaluate", "--embeddings", "P", "--out", "R"])) == EvalConfig()


def test_evaluate_max_queries_below_one_exits_2(tmp_path, capsys):
    assert main(["evaluate", "--embeddings", str(tmp_path), "--out", str(tmp_path / "r"), "--max-queries", "0"]) == 2
    assert "--max-queries" in capsys.readouterr().err
