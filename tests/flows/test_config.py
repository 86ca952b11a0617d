"""radsim.toml: precedence, saved resolution, and one-line errors that name the key."""
from __future__ import annotations

import json

import pytest

from radsim.data_contracts import UsageError
from radsim.flows.config import (
    check_cron,
    resolve_config,
    save_config,
)


def _toml(tmp_path, text):
    p = tmp_path / "radsim.toml"
    p.write_text(text)
    return p


def test_precedence_cli_over_env_over_toml_over_defaults(tmp_path):
    toml = _toml(tmp_path, '[imaging]\nimage_size = 128\n[model]\nbackbone = "resnet18"\nmax_steps = 7\n'
                           '[runner]\nworkers = 3\n[schedule]\ncron = "30 1 * * *"\n')
    cfg = resolve_config({"imaging.image_size": 96}, toml, environ={"RADSIM_MODEL_BACKBONE": "densenet121",
                                                                   "RADSIM_WORKERS": "4"})
    flat = cfg.flat()
    assert flat["imaging.image_size"] == 96 and cfg.sources["imaging.image_size"] == "command line"
    assert flat["model.backbone"] == "densenet121" and cfg.sources["model.backbone"] == "environment"
    assert flat["runner.workers"] == 4
    assert flat["model.max_steps"] == 7 and flat["schedule.cron"] == "30 1 * * *"
    assert flat["model.loss"] == "ml2" and cfg.sources["model.loss"] == "default"
    assert cfg.training_options()["max_steps"] == 7 and "batch_size" not in cfg.training_options()
    saved = json.loads(save_config(cfg, tmp_path / "wh").read_text())
    assert saved["settings"]["imaging.image_size"] == 96 and saved["sources"]["model.backbone"] == "environment"


@pytest.mark.parametrize("text, key", [
    ('[model]\nbackbon = "small"\n', "model.backbon"),
    ('[imaging]\nimage_size = "big"\n', "imaging.image_size"),
    ('[runner]\nworkers = 2.5\n', "runner.workers"),
    ('image_size = 64\n', "image_size"),
])
def test_unknown_key_or_wrong_type_names_the_key(tmp_path, text, key):
    with pytest.raises(UsageError, match=key.replace(".", r"\.")):
        resolve_config(None, _toml(tmp_path, text), environ={})


def test_env_with_wrong_type_names_the_variable():
    with pytest.raises(UsageError, match="RADSIM_IMAGE_SIZE"):
        resolve_config(None, None, environ={"RADSIM_IMAGE_SIZE": "huge"})


@pytest.mark.parametrize("cron", ["61 2 * * *", "every night", "0 2 * *", "0 25 * * *"])
def test_bad_cron_is_a_usage_error(cron):
    with pytest.raises(UsageError, match="cron"):
        check_cron(cron)
    with pytest.raises(UsageError, match="schedule.cron"):
        resolve_config({"schedule.cron": cron}, None, environ={})


def test_good_cron_passes():
    assert check_cron("15 1 * * *") == "15 1 * * *"
    assert check_cron("45 4 * * 6") == "45 4 * * 6"


def test_malformed_toml_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="not valid TOML"):
        resolve_config(None, _toml(tmp_path, "[model\n"), environ={})


def test_batch_sizes_and_ddp_processes_are_settings():
    cfg = resolve_config({"model.nproc_per_node": 4, "runner.label_batch_size": 64}, environ={})
    flat = cfg.flat()
    assert cfg.launch_options() == {"nproc_per_node": 4}
    assert flat["runner.label_batch_size"] == 64 and flat["runner.decode_batch_size"] == 32
    assert resolve_config({}, environ={}).launch_options() is None  # one plain process by default
    for key in ("model.nproc_per_node", "runner.decode_batch_size"):
        with pytest.raises(UsageError, match=key):
            resolve_config({key: 0}, environ={})
