"""RunConfig: sections derived from the stage configs, validated at construction, one flat view."""
from __future__ import annotations

import pytest

from radsim.data_contracts import UsageError
from radsim.flows.config import SCHEMA, resolve_config
from radsim.flows.run_config import RunConfig
from radsim.imaging.config import ShardOptions
from radsim.model.config import TrainConfig
from radsim.model.embed_config import EmbedConfig
from radsim.nlp.config import LabelConfig


def test_stage_settings_keep_the_stage_configs_defaults_and_help():
    fields = RunConfig().flat()
    assert fields["imaging.image_size"] == ShardOptions().image_size
    assert fields["runner.decode_batch_size"] == ShardOptions().batch_size
    assert fields["runner.label_batch_size"] == LabelConfig().batch_size
    assert fields["runner.shards_per_task"] == EmbedConfig().shards_per_task
    assert fields["model.loss"] == TrainConfig().loss and fields["model.backbone"] == TrainConfig().backbone
    section = RunConfig.model_fields["imaging"].annotation
    assert section.model_fields["compact_after"].description == ShardOptions.model_fields["compact_after"].description
    assert set(SCHEMA) == set(fields)


@pytest.mark.parametrize("key, value, rule", [
    ("imaging.compact_after", 1, "compact_after"),  # ShardOptions' own validator
    ("imaging.image_size", 4, "imaging.image_size"),  # ShardOptions' bound
    ("model.loss", "hinge", "model.loss"),  # TrainConfig's choices
    ("runner.task_runner", "slurm", "runner.task_runner"),
    ("quarantine.max_fraction", 1.5, "quarantine.max_fraction"),
    ("publish.keep_versions", -1, "publish.keep_versions"),
])
def test_a_value_out_of_its_stage_bounds_is_a_usage_error_naming_it(key, value, rule):
    with pytest.raises(UsageError, match=rule.replace(".", r"\.")):
        resolve_config({key: value}, environ={})


def test_updated_validates_and_records_its_origin():
    cfg = resolve_config({}, environ={})
    seeded = cfg.updated({"model.seed": 3})
    assert seeded.model.seed == 3 and cfg.model.seed == 0  # frozen: the original is untouched
    assert seeded.sources["model.seed"] == "caller" and seeded.sources["model.loss"] == "default"
    with pytest.raises(UsageError, match="model.batch_size"):
        cfg.updated({"model.batch_size": 1})
    with pytest.raises(UsageError, match="unknown"):
        cfg.updated({"model.colour": "red"})


def test_stage_configs_come_from_the_sections():
    cfg = resolve_config({"model.batch_size": 16, "runner.shards_per_task": 3, "runner.workers": 5}, environ={})
    assert cfg.train_config().batch_size == 16 and cfg.train_config().image_size == 128
    assert cfg.embed_config().shards_per_task == 3 and cfg.embed_config().workers == 5
    assert cfg.embed_config().batch_size == EmbedConfig().batch_size
    assert resolve_config({}, environ={}).train_config().batch_size == TrainConfig().batch_size
    assert not cfg.mapped and resolve_config({"runner.task_runner": "processes"}, environ={}).mapped


def test_the_certainty_threshold_of_the_labels_is_a_site_setting():
    cfg = resolve_config({"labels.certainty_threshold": "probable"}, environ={})
    assert cfg.label_config(None, 1).certainty_threshold == "probable"
    assert resolve_config({}, environ={}).label_config(None, 1).certainty_threshold == LabelConfig().certainty_threshold
    with pytest.raises(UsageError, match=r"labels\.certainty_threshold"):
        resolve_config({"labels.certainty_threshold": "sure"}, environ={})


def test_a_force_names_where_it_came_from(tmp_path):
    toml = tmp_path / "radsim.toml"
    toml.write_text("[model]\nforce_promote = true\n")
    assert resolve_config(None, toml, environ={}).force_source() == "model.force_promote in radsim.toml"
    assert resolve_config(None, None, environ={"RADSIM_MODEL_FORCE_PROMOTE": "true"}).force_source() == \
        "model.force_promote in the environment"
    assert resolve_config({"model.force_promote": True}, toml, environ={}).force_source() == "--force-promote"
    assert resolve_config(None, None, environ={}).force_source() is None


def test_the_schedule_section_checks_both_cron_strings_and_the_time_zone():
    schedule = resolve_config({"schedule.train_cron": "15 4 * * 1"}, None,
                              environ={"RADSIM_CRON": "5 1 * * *", "RADSIM_SCHEDULE_TIMEZONE": "Europe/Paris"}).schedule
    assert schedule.schedule_env() == {"RADSIM_CRON": "5 1 * * *", "RADSIM_TRAIN_CRON": "15 4 * * 1",
                                       "RADSIM_SCHEDULE_TIMEZONE": "Europe/Paris"}
    with pytest.raises(UsageError, match="schedule.train_cron"):
        resolve_config({"schedule.train_cron": "every sunday"}, None, environ={})
    with pytest.raises(UsageError, match="IANA"):
        resolve_config(None, None, environ={"RADSIM_SCHEDULE_TIMEZONE": "Nowhere/Land"})
