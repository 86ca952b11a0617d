"""ShardOptions: defaults, bounds and parsing declared once, checked at construction."""
from __future__ import annotations

import pytest

from radsim.data_contracts import UsageError
from radsim.imaging.config import ShardOptions, shard_options


def test_defaults_are_the_documented_ones():
    options = ShardOptions()
    assert (options.image_size, options.split_fractions, options.maxcount, options.compact_after) == (
        256, (0.8, 0.1, 0.1), 1000, 16)


@pytest.mark.parametrize("values, where", [
    ({"image_size": 4}, "image_size"),
    ({"maxcount": 0}, "maxcount"),
    ({"batch_size": 0}, "batch_size"),
    ({"compact_after": 1}, "compact_after"),
    ({"compact_after": -1}, "compact_after"),
])
def test_a_value_out_of_bounds_is_one_usage_error_naming_the_setting(values, where):
    with pytest.raises(UsageError, match=where):
        shard_options(**values)


def test_fractions_come_from_the_command_line_text_and_must_sum_to_one():
    assert shard_options(split_fractions="0,0,1").split_fractions == (0.0, 0.0, 1.0)
    with pytest.raises(UsageError, match="summing to 1"):
        shard_options(split_fractions="0.5,0.5,0.5")
    with pytest.raises(UsageError, match="TRAIN,VAL,TEST"):
        shard_options(split_fractions="half,half")


def test_keywords_override_options_and_none_keeps_them():
    base = ShardOptions(image_size=64, maxcount=5)
    merged = shard_options(base, maxcount=7, batch_size=None)
    assert (merged.image_size, merged.maxcount, merged.batch_size) == (64, 7, 32)
    assert shard_options(base) is base
