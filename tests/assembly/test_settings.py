"""Each setting: a flag, else its environment variable, else the file, else the default."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.assembly import DEFAULT_ADDRESS, ROLES, resolve_settings
from modelyard.config import ConfigError
from modelyard_client.errors import InvalidRequest

FILE = """
model_system:
  server: {listen: "127.0.0.1:7000", data_dir: /from/file, models_dir: /models/file,
           grace_period: 12s, log_level: WARNING}
  rate_limits: {per_key: {requests_per_minute: 10}, on_redis_failure: fail_closed}
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "modelyard.yaml"
    path.write_text(FILE)
    return path


def test_with_nothing_given_the_built_in_defaults_run() -> None:
    settings = resolve_settings({}, env={})
    assert settings.listen == DEFAULT_ADDRESS
    assert settings.roles == ROLES
    assert settings.models_dir is None
    assert settings.data_dir == Path.home() / ".local" / "share" / "modelyard"
    assert (settings.grace_s, settings.log_level, settings.balancing) == (
        30.0,
        "INFO",
        "least_loaded",
    )
    assert set(settings.config.active_backends()) == {"local", "ollama"}  # no keys: no providers


def test_the_file_beats_the_defaults(config_file: Path) -> None:
    settings = resolve_settings({"config": config_file}, env={})
    assert settings.listen == "127.0.0.1:7000"
    assert settings.data_dir == Path("/from/file")
    assert settings.models_dir_for(None) == Path("/models/file")
    assert (settings.grace_s, settings.log_level) == (12.0, "WARNING")
    assert settings.limiter.quotas.per_key.requests_per_minute == 10
    assert settings.limiter.failure_policy == "fail_closed"


def test_the_environment_beats_the_file(config_file: Path) -> None:
    env = {
        "MODELYARD_CONFIG": str(config_file),
        "MODELYARD_ADDRESS": "127.0.0.1:7001",
        "MODELYARD_DATA_DIR": "/from/env",
        "MODELYARD_MODELS_DIR": "/models/env",
        "MODELYARD_LOG_LEVEL": "debug",
        "MODELYARD_RATE_LIMIT_FAILURE_POLICY": "fail_open",
        "MODELYARD_QUOTA_PER_KEY": "rpm=99",
    }
    settings = resolve_settings({}, env=env)
    assert settings.listen == "127.0.0.1:7001"
    assert settings.data_dir == Path("/from/env")
    assert settings.models_dir_for(None) == Path("/models/env")
    assert settings.log_level == "DEBUG"
    assert settings.limiter.failure_policy == "fail_open"
    assert settings.limiter.quotas.per_key.requests_per_minute == 99


def test_a_flag_beats_the_environment(config_file: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.yaml"
    other.write_text("model_system:\n  server: {listen: '127.0.0.1:7100'}\n")
    env = {
        "MODELYARD_CONFIG": str(config_file),
        "MODELYARD_ADDRESS": "127.0.0.1:7001",
        "MODELYARD_DATA_DIR": "/from/env",
        "MODELYARD_MODELS_DIR": "/models/env",
        "MODELYARD_REGISTRY": "registry:1",
    }
    flags = {
        "config": other,
        "listen": "127.0.0.1:7002",
        "data_dir": Path("/from/flag"),
        "models_dir": Path("/models/flag"),
        "grace": 3.0,
        "registry": "registry:2",
        "roles": ("gateway",),
    }
    settings = resolve_settings(flags, env=env)
    assert settings.listen == "127.0.0.1:7002"
    assert settings.data_dir == Path("/from/flag")
    assert settings.models_dir_for(None) == Path("/models/flag")
    assert settings.grace_s == 3.0
    assert settings.registry_address == "registry:2"
    assert settings.roles == ("gateway",)


def test_the_hot_swap_address_is_a_flag_else_its_variable_else_none() -> None:
    assert resolve_settings({}, env={}).hotswap_address is None
    env = {"MODELYARD_HOTSWAP": "control:1"}
    assert resolve_settings({}, env=env).hotswap_address == "control:1"
    assert resolve_settings({"hotswap": "control:2"}, env=env).hotswap_address == "control:2"


def test_the_drain_notice_is_a_flag_else_its_variable_else_the_file_else_2s(
    tmp_path: Path,
) -> None:
    config = tmp_path / "notice.yaml"
    config.write_text("model_system:\n  server: {drain_notice: 500ms}\n")
    env = {"MODELYARD_CONFIG": str(config)}
    assert resolve_settings({}, env={}).drain_notice_s == 2.0
    assert resolve_settings({}, env=env).drain_notice_s == 0.5
    env["MODELYARD_DRAIN_NOTICE_S"] = "7.5"
    assert resolve_settings({}, env=env).drain_notice_s == 7.5
    assert resolve_settings({"drain_notice": 0.0}, env=env).drain_notice_s == 0.0


def test_no_drain_notice_is_0s_in_the_file(tmp_path: Path) -> None:
    config = tmp_path / "none.yaml"
    config.write_text("model_system:\n  server: {drain_notice: 0s}\n")
    assert resolve_settings({"config": config}, env={}).drain_notice_s == 0.0


def test_a_drain_notice_that_is_no_number_names_the_variable() -> None:
    with pytest.raises(InvalidRequest) as bad:
        resolve_settings({}, env={"MODELYARD_DRAIN_NOTICE_S": "2s"})
    assert bad.value.message == (
        "MODELYARD_DRAIN_NOTICE_S: '2s' is not a number of seconds (e.g. 2 or 0.5)"
    )


@pytest.mark.parametrize("given", [{"drain_notice": -1.0}, {"drain_notice": float("inf")}])
def test_a_negative_or_endless_drain_notice_is_refused_naming_its_sources(
    given: dict[str, float],
) -> None:
    with pytest.raises(InvalidRequest) as bad:
        resolve_settings(given, env={})
    assert bad.value.message.endswith(
        "s is not a number of seconds >= 0 "
        "(--drain-notice, MODELYARD_DRAIN_NOTICE_S, server.drain_notice)"
    )


def test_a_flag_given_as_none_counts_as_not_given() -> None:
    env = {"MODELYARD_ADDRESS": "127.0.0.1:7001"}
    assert resolve_settings({"listen": None}, env=env).listen == "127.0.0.1:7001"


def test_a_mistyped_balancing_strategy_names_the_variable_and_the_choices() -> None:
    with pytest.raises(InvalidRequest, match=r"MODELYARD_BALANCING: 'least-loaded' is not one of"):
        resolve_settings({}, env={"MODELYARD_BALANCING": "least-loaded"})


def test_a_bad_log_level_is_refused_before_anything_starts() -> None:
    with pytest.raises(InvalidRequest, match=r"log level 'LOUD' is not one of DEBUG"):
        resolve_settings({}, env={"MODELYARD_LOG_LEVEL": "loud"})


def test_a_bad_quota_variable_names_the_variable() -> None:
    with pytest.raises(InvalidRequest, match="MODELYARD_QUOTA_PER_KEY"):
        resolve_settings({}, env={"MODELYARD_QUOTA_PER_KEY": "rpm=lots"})


def test_an_invalid_file_is_a_config_error_with_its_key_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_system:\n  server: {grace_period: soon}\n")
    with pytest.raises(ConfigError, match=r"model_system\.server\.grace_period"):
        resolve_settings({"config": bad}, env={})


def test_the_default_deadline_is_a_flag_else_its_variable_else_the_file_else_60s(
    tmp_path: Path,
) -> None:
    config = tmp_path / "deadline.yaml"
    config.write_text("model_system:\n  server: {default_deadline: 2m}\n")
    env = {"MODELYARD_CONFIG": str(config)}
    assert resolve_settings({}, env={}).default_deadline_s == 60.0
    assert resolve_settings({}, env=env).default_deadline_s == 120.0
    env["MODELYARD_DEFAULT_DEADLINE_S"] = "90"
    assert resolve_settings({}, env=env).default_deadline_s == 90.0
    assert resolve_settings({"default_deadline": 5.0}, env=env).default_deadline_s == 5.0


@pytest.mark.parametrize(
    "given", [{"default_deadline": 0.0}, {"default_deadline": float("inf")}], ids=["0", "inf"]
)
def test_a_zero_or_endless_default_deadline_is_refused_naming_its_sources(
    given: dict[str, float],
) -> None:
    with pytest.raises(InvalidRequest) as bad:
        resolve_settings(given, env={})
    assert bad.value.message == (
        f"default deadline {given['default_deadline']:g}s is not a number of seconds > 0 "
        "(--default-deadline, MODELYARD_DEFAULT_DEADLINE_S, server.default_deadline)"
    )


def test_a_default_deadline_of_0s_in_the_file_names_its_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_system:\n  server: {default_deadline: 0s}\n")
    with pytest.raises(ConfigError, match=r"model_system\.server\.default_deadline"):
        resolve_settings({"config": bad}, env={})


def test_the_shared_limits_file_is_the_variable_else_the_file_key(tmp_path: Path) -> None:
    path = tmp_path / "modelyard.yaml"
    path.write_text("model_system:\n  rate_limits: {shared_memory: /dev/shm/from-file}\n")
    from_file = resolve_settings({"config": str(path)}, env={})
    assert from_file.limiter.shared_memory == Path("/dev/shm/from-file")
    env = {"MODELYARD_RATE_LIMIT_SHARED_MEMORY": "/dev/shm/from-env"}
    assert resolve_settings({"config": str(path)}, env=env).limiter.shared_memory == Path(
        "/dev/shm/from-env"
    )
    assert resolve_settings({}, env={}).limiter.shared_memory is None
    both = "model_system:\n  rate_limits: {shared_memory: /x, redis_url: 'redis://h:1/0'}\n"
    path.write_text(both)
    with pytest.raises(InvalidRequest, match=r"^rate_limits: redis_url and shared_memory both"):
        resolve_settings({"config": str(path)}, env={})
