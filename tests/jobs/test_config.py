"""Settings: precedence, parsing, and errors that name the flag, variable or file."""

from __future__ import annotations

import pytest

from jobs.config import SETTINGS, JobConfig, build_config, redact_url
from jobs.errors import ConfigError


def test_every_setting_is_a_config_field_and_back():
    fields = set(JobConfig.__dataclass_fields__)
    assert {s.name for s in SETTINGS} == fields


def test_flags_beat_environment_beat_file(tmp_path):
    file = tmp_path / "nightrec.toml"
    file.write_text('top_n = 7\nsimilar_n = 3\nkeep_versions = 4\n[columns]\nuser_id = "uid"\n')
    env = {"NIGHTREC_TOP_N": "8", "NIGHTREC_SIMILAR_N": "5"}

    config = build_config({"top_n": "9"}, env, str(file))

    assert (config.top_n, config.similar_n, config.keep_versions) == (9, 5, 4)
    assert config.col_user_id == "uid"


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        ({}, {"NIGHTREC_TOP_N": "ten"}, "NIGHTREC_TOP_N: invalid literal"),
        ({"top_n": "0"}, {}, "--top-n: 0 is out of range"),
        ({}, {"NIGHTREC_MAX_REJECT_FRACTION": "1.5"}, "NIGHTREC_MAX_REJECT_FRACTION: 1.5"),
        ({}, {"NIGHTREC_ID_TYPE": "uuid"}, "expected one of auto, int, string"),
        ({"stages": "ingest,score"}, {}, "unknown stage 'score'"),
        ({"data": "d", "items": "i"}, {}, "either --data or --interactions/--items"),
        ({"items": "i"}, {}, "--interactions and --items go together"),
        ({"run_id": "../../etc"}, {}, "--run-id: expected letters, digits"),
    ],
)
def test_bad_settings_name_their_source(flags, env, message):
    with pytest.raises(ConfigError, match=message):
        build_config(flags, env)


def test_bad_config_files_are_named(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("top_n = = 3")
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("topn = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        build_config({}, {}, str(bad))
    with pytest.raises(ConfigError, match="unknown setting 'topn'"):
        build_config({}, {}, str(unknown))
    with pytest.raises(ConfigError, match="cannot read config file"):
        build_config({}, {}, str(tmp_path / "missing.toml"))


def test_passwords_never_reach_the_manifest():
    config = build_config(
        {"redis_url": "rediss://app:s3cret@cache:6380/0"},
        {"NIGHTREC_PUSHGATEWAY_URL": "https://ops:pushpw@gateway:9091"},
    )
    public = str(config.public())
    assert "s3cret" not in public and "pushpw" not in public
    assert config.public()["pushgateway_url"] == "https://ops:***@gateway:9091"
    assert redact_url("redis://:pw@h:1/0") == "redis://:***@h:1/0"
    assert redact_url("redis://h:1/0") == "redis://h:1/0"
