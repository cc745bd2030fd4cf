import pytest

from reelflow.config import Config, load_config


def test_defaults_match_the_documented_weights():
    config = load_config({})
    assert config.ranker.weight_watch_time == 0.4
    assert config.ranker.weight_completion == 0.2
    assert config.ranker.weight_rewatch == 0.15
    assert config.ranker.weight_continuation == 0.15
    assert config.ranker.weight_skip_penalty == 0.05
    assert isinstance(config.to_dict()["features"], dict)


def test_environment_overrides_are_typed():
    config = load_config(
        {"REELFLOW_RANKER__EPOCHS": "9", "REELFLOW_QUALITY__WATCH_RATIO_MAX": "7.5"}
    )
    assert config.ranker.epochs == 9
    assert config.quality.watch_ratio_max == 7.5
    assert config.features == Config().features


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("REELFLOW_RANKER__EPOCHS", "many", "REELFLOW_RANKER__EPOCHS='many' is not a valid int"),
        ("REELFLOW_RANKR__EPOCHS", "3", "unknown config section 'rankr'"),
        ("REELFLOW_RANKER__EPOCH", "3", "unknown field 'epoch'"),
    ],
)
def test_bad_overrides_fail_with_the_variable_named(key, value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        load_config({key: value})
