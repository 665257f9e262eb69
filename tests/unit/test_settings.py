"""Settings read the way users expect: the SDK's Region, any-case levels, every problem at once."""

from pathlib import Path

import pytest

from worker.settings import Settings, SettingsError

BASE = {
    "JOBS_QUEUE_URL": "http://127.0.0.1:1/123456789012/jobs",
    "RESULTS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:results",
    "COGNITO_USER_POOL_ID": "us-east-1_abc",
    "COGNITO_CLIENT_ID": "abc123",
    "COGNITO_CLIENT_SECRET": "very-secret-client-secret",
}


@pytest.fixture
def profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shared config file with a profile `ops` in eu-west-1, and no Region variables."""
    config = tmp_path / "config"
    config.write_text("[default]\nregion = ap-south-1\n\n[profile ops]\nregion = eu-west-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    for variable in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(variable, raising=False)


@pytest.mark.usefixtures("profile")
def test_the_region_comes_from_the_profile_like_the_sdk() -> None:
    assert Settings.from_env({**BASE, "AWS_PROFILE": "ops"}).aws_region == "eu-west-1"


@pytest.mark.usefixtures("profile")
def test_the_default_profile_region_when_no_profile_is_named() -> None:
    assert Settings.from_env(BASE).aws_region == "ap-south-1"


@pytest.mark.usefixtures("profile")
def test_region_variables_come_before_the_profile() -> None:
    env = {**BASE, "AWS_PROFILE": "ops", "AWS_DEFAULT_REGION": "us-west-2"}
    assert Settings.from_env(env).aws_region == "us-west-2"
    assert Settings.from_env({**env, "AWS_REGION": "ca-central-1"}).aws_region == "ca-central-1"


@pytest.mark.usefixtures("profile")
def test_a_missing_profile_names_aws_profile() -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({**BASE, "AWS_PROFILE": "nope"})
    assert ("AWS_PROFILE", "no such profile in the AWS config files") in raised.value.problems


def test_no_region_anywhere_is_required(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(BASE)
    assert raised.value.problems == [("AWS_REGION", "required")]


@pytest.mark.parametrize(
    ("given", "level"), [("debug", "DEBUG"), ("Info", "INFO"), ("warn", "WARNING")]
)
def test_log_level_in_any_case(given: str, level: str) -> None:
    settings = Settings.from_env({**BASE, "AWS_REGION": "us-east-1", "LOG_LEVEL": given})
    assert settings.log_level.value == level


def test_every_bad_setting_is_reported_at_once_without_values() -> None:
    env = {
        **BASE,
        "AWS_REGION": "us-east-1",
        "COGNITO_CLIENT_ID": "",
        "MAX_JOBS_IN_FLIGHT": "many",
        "HEALTH_PORT": "70000",
        "LOG_LEVEL": "loud",
        "DEAD_LETTER_QUEUE_URL": "not-a-url-secretish",
    }
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(env)
    variables = [variable for variable, _ in raised.value.problems]
    assert sorted(variables) == sorted(
        [
            "COGNITO_CLIENT_ID",
            "MAX_JOBS_IN_FLIGHT",
            "HEALTH_PORT",
            "LOG_LEVEL",
            "DEAD_LETTER_QUEUE_URL",
        ]
    )
    text = str(raised.value)
    for value in ("many", "70000", "loud", "not-a-url-secretish", "very-secret-client-secret"):
        assert value not in text


def test_cross_field_problems_are_all_reported() -> None:
    env = {
        **BASE,
        "AWS_REGION": "us-east-1",
        "JOB_TIMEOUT_S": "55",
        "IDEMPOTENCY_STORE": "DynamoDB",
    }
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(env)
    assert [variable for variable, _ in raised.value.problems] == [
        "JOB_TIMEOUT_S",
        "IDEMPOTENCY_TABLE",
    ]


def test_health_host_is_loopback_by_default_and_must_be_an_address() -> None:
    env = {**BASE, "AWS_REGION": "us-east-1"}
    assert Settings.from_env(env).health_host == "127.0.0.1"
    assert Settings.from_env({**env, "HEALTH_HOST": "0.0.0.0"}).health_host == "0.0.0.0"  # noqa: S104
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({**env, "HEALTH_HOST": "my host"})
    assert raised.value.variable == "HEALTH_HOST"
