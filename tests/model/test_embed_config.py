"""EmbedConfig: `radsim publish`'s options come from its declaration."""
from __future__ import annotations

import pytest

from radsim.data_contracts import settings
from radsim.flows.cli import build_parser, main
from radsim.model.embed_config import EmbedConfig


def test_publish_options_parse_into_an_embed_config():
    args = build_parser().parse_args(["publish", "--model", "M", "--shards", "S", "--out", "P", "--no-current",
                                      "--shards-per-task", "4"])
    config = settings.from_arguments(EmbedConfig, args)
    assert config == EmbedConfig(current=False, shards_per_task=4)
    assert config.device_for(mapped=True) == "cpu" and config.device_for(mapped=False) == "auto"
    assert EmbedConfig(device="cuda:1").device_for(mapped=True) == "cuda:1"


@pytest.mark.parametrize("option", ["--batch-size", "--workers", "--shards-per-task"])
def test_publish_counts_below_one_exit_2(tmp_path, option, capsys):
    assert main(["publish", "--model", str(tmp_path), "--shards", str(tmp_path), "--out", str(tmp_path / "p"),
                 option, "0"]) == 2
    assert option in capsys.readouterr().err  # the option is named, not the missing model
