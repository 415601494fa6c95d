from __future__ import annotations

import pytest

from atrium.platform.settings import SettingsError, load_settings

BASE = {"DATABASE_URL": "postgresql://u@127.0.0.1:5432/atrium", "ATRIUM_SECRET_KEY": "s" * 40}


def test_defaults() -> None:
    settings = load_settings(BASE)
    assert settings.base_domain == "localhost"
    assert settings.max_upload_bytes == 10 * 1024 * 1024
    assert settings.redis_url is None
    assert (settings.tenant_cache_ttl, settings.caller_cache_ttl) == (30.0, 300.0)
    assert settings.sqlalchemy_url.drivername == "postgresql+psycopg"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"DATABASE_URL": ""}, "DATABASE_URL is not set"),
        ({"DATABASE_URL": "mysql://x@y/z"}, "postgresql"),
        ({"DATABASE_URL": "not a url"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgresql://u@127.0.0.1:abc/atrium"}, "port is not a number"),
        ({"ATRIUM_SECRET_KEY": "short"}, "ATRIUM_SECRET_KEY"),
        ({"ATRIUM_MAX_UPLOAD_BYTES": "ten"}, "ATRIUM_MAX_UPLOAD_BYTES must be an integer"),
        ({"ATRIUM_MAX_UPLOAD_BYTES": "0"}, "at least 1"),
        ({"ATRIUM_BASE_DOMAIN": "bad_domain"}, "ATRIUM_BASE_DOMAIN"),
        ({"REDIS_URL": "http://x"}, "REDIS_URL"),
        ({"ATRIUM_DB_PREPARED_STATEMENTS": "maybe"}, "true or false"),
        ({"ATRIUM_CALLER_CACHE_TTL": "0"}, "ATRIUM_CALLER_CACHE_TTL must be positive"),
    ],
)
def test_invalid_settings_are_one_clear_line(changes: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({**BASE, **changes})
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_base_domain_is_normalised() -> None:
    assert load_settings({**BASE, "ATRIUM_BASE_DOMAIN": "Example.COM."}).base_domain == "example.com"
