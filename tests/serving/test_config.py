"""ServeConfig: flags over NIGHTREC_* variables over defaults, errors that name the source."""

from __future__ import annotations

import pytest

from serving.balance import BalancedThreadWorker
from serving.cli import gunicorn_settings
from serving.config import SETTINGS, ConfigError, ServeConfig, build_serve_config


def test_defaults():
    config = build_serve_config({}, {})
    assert config == ServeConfig()
    assert (config.max_n, config.max_query_chars, config.redis_url) == (100, 500, None)


def test_flags_override_variables_which_override_defaults():
    env = {"NIGHTREC_PORT": "9000", "NIGHTREC_WORKERS": "3", "NIGHTREC_SEARCH_CF_WEIGHT": "0.5"}
    config = build_serve_config({"port": "9100", "threads": None}, env)
    assert (config.port, config.workers, config.threads) == (9100, 3, 4)
    assert config.search_cf_weight == 0.5


def test_every_setting_is_a_field_with_a_variable():
    names = {f for f in ServeConfig.__dataclass_fields__}
    assert [s.name for s in SETTINGS if s.name not in names] == []
    assert sorted(s.name for s in SETTINGS) == sorted(names)
    assert {s.env for s in SETTINGS} >= {"NIGHTREC_REDIS_URL", "NIGHTREC_MAX_N", "NIGHTREC_OUT"}


@pytest.mark.parametrize(
    ("flags", "env", "named"),
    [
        ({}, {"NIGHTREC_PORT": "http"}, "NIGHTREC_PORT"),
        ({}, {"NIGHTREC_MAX_N": "0"}, "NIGHTREC_MAX_N"),
        ({}, {"NIGHTREC_SEARCH_CF_WEIGHT": "1.5"}, "NIGHTREC_SEARCH_CF_WEIGHT"),
        ({}, {"NIGHTREC_REDIS_URL": "localhost:6379"}, "NIGHTREC_REDIS_URL"),
        ({}, {"NIGHTREC_ACCESS_LOG": "maybe"}, "NIGHTREC_ACCESS_LOG"),
        ({"workers": "-2"}, {}, "--workers"),
        ({"port": "70000"}, {}, "--port"),
        ({"threads": True}, {}, "--threads"),
        ({"colour": "red"}, {}, "colour"),
    ],
)
def test_bad_values_name_their_flag_or_variable(flags, env, named):
    with pytest.raises(ConfigError, match=named):
        build_serve_config(flags, env)


def test_empty_optional_values_mean_unset():
    config = build_serve_config({}, {"NIGHTREC_REDIS_URL": "", "NIGHTREC_ENCODER": ""})
    assert config.redis_url is None and config.encoder is None


def test_public_hides_the_redis_password():
    config = build_serve_config({"redis_url": "rediss://app:s3cret@cache:6380/0"}, {})
    assert config.public()["redis_url"] == "rediss://app:***@cache:6380/0"


def test_gunicorn_settings_follow_the_config():
    config = build_serve_config({"host": "::1", "port": "8123", "workers": 3, "threads": 5}, {})
    settings = gunicorn_settings(config)
    assert settings["bind"] == ["[::1]:8123"]
    assert (settings["workers"], settings["threads"]) == (3, 5)
    assert settings["worker_class"] is BalancedThreadWorker  # several workers share out
    assert "pre_fork" in settings  # the slots of their connection board
    alone = gunicorn_settings(build_serve_config({"workers": 1}, {}))
    assert alone["worker_class"] == "gthread" and "pre_fork" not in alone
