"""SynthConfig: the cohort's settings declared once; `radsim synth` and generate_cohort read them."""
from __future__ import annotations

import pytest

from radsim.data_contracts import UsageError
from radsim.flows.cli import build_parser
from radsim.synthetic import SynthConfig, generate_cohort, render_exam
from radsim.synthetic.config import DEFAULT_IMAGE_SIZE, MAX_IMAGE_SIZE, MIN_IMAGE_SIZE, synth_config


def test_keywords_and_a_config_are_the_same_settings():
    config = SynthConfig(exams=5, seed=3, image_size=64)
    assert synth_config(exams=5, seed=3, image_size=64) == config
    assert synth_config(config, bad=True) == SynthConfig(exams=5, seed=3, image_size=64, bad=True)
    assert config.image_size == 64 and SynthConfig(exams=1).image_size == DEFAULT_IMAGE_SIZE


@pytest.mark.parametrize(("values", "name"), [
    ({"exams": 0}, "exams"), ({"exams": 2, "omission_rate": 1.5}, "omission_rate"),
    ({"exams": 2, "image_size": MIN_IMAGE_SIZE - 1}, "image_size"),
    ({"exams": 2, "image_size": MAX_IMAGE_SIZE + 1}, "image_size"), ({}, "exams"),
])
def test_a_setting_out_of_bounds_is_one_line_naming_it_and_writes_nothing(tmp_path, values, name):
    with pytest.raises(UsageError, match=name) as info:
        generate_cohort(tmp_path / "c", progress=False, **values)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "c").exists()


def test_the_cli_options_show_the_declared_defaults(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["synth", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"(default: {DEFAULT_IMAGE_SIZE})" in text and f"{MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE}" in text
    assert "--bad, --no-bad" in text


def test_render_exam_defaults_to_the_declared_size():
    from radsim.synthetic import plan_cohort

    spec = plan_cohort(exams=1, seed=0)[0]
    assert render_exam(spec).shape == (DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE)
