from __future__ import annotations

import pytest

from atrium.platform.tenancy.naming import (
    InvalidName,
    is_ip_literal,
    normalize_host,
    quote_ident,
    schema_for_slug,
    validate_domain,
    validate_slug,
)


@pytest.mark.parametrize("slug", ["acme", "a1b", "my-org", "x" * 32, "abc-123"])
def test_valid_slugs(slug: str) -> None:
    assert validate_slug(slug) == slug


@pytest.mark.parametrize(
    "slug",
    [
        "ab",  # too short
        "x" * 33,  # too long
        "Acme",  # upper case
        "1abc",  # starts with a digit
        "abc-",  # ends with a hyphen
        "a--b",  # double hyphen
        "a_b",  # underscore
        "acme; drop schema platform",
        "acme'--",
        "www",
        "admin",
        "platform",
        "public",
        "schema",
        "pg-x",
        "pgadmin",
        "",
        "acme\n",  # Python's $ matches before a final newline: the schema was "tenant_acme\n"
    ],
)
def test_invalid_slugs(slug: str) -> None:
    with pytest.raises(InvalidName):
        validate_slug(slug)


def test_schema_names_are_derived_and_distinct() -> None:
    assert schema_for_slug("my-org") == "tenant_my_org"
    assert schema_for_slug("myorg") != schema_for_slug("my-org")
    assert quote_ident("tenant_my_org") == '"tenant_my_org"'


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("acme.localhost", ("acme.localhost", None)),
        ("ACME.LocalHost", ("acme.localhost", None)),
        ("acme.localhost:8000", ("acme.localhost", "8000")),
        ("acme.localhost.:8000", ("acme.localhost", "8000")),
        ("acme.localhost.", ("acme.localhost", None)),
        ("localhost", ("localhost", None)),
        ("", None),
        (None, None),
        ("bad_host", None),
        ("a..b", None),
        ("acme.localhost:abc", None),
        ("acme.localhost:99999", None),  # no such port
        ("acme.localhost:0", None),
        ("-acme.localhost", None),
        ("acme.localhost/evil", None),
        ("x" * 300, None),
        ("127.0.0.1", None),
        ("127.0.0.1:80", None),
        ("10.1", None),
        ("[::1]", None),
        ("[::1]:8000", None),
        ("::1", None),
    ],
)
def test_normalize_host(raw: str | None, expected: tuple[str, str | None] | None) -> None:
    assert normalize_host(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("127.0.0.1", True),
        ("127.0.0.1:8000", True),
        ("[::1]", True),
        ("[::1]:8000", True),
        ("::1", True),
        ("acme.localhost", False),
        ("acme.localhost:8000", False),
        ("[acme]", False),
        ("", False),
        (None, False),
    ],
)
def test_is_ip_literal(raw: str | None, expected: bool) -> None:
    assert is_ip_literal(raw) is expected


def test_validate_domain() -> None:
    assert validate_domain("App.Acme.com.") == "app.acme.com"
    for bad in ("localhost", "acme.com:80", "10.0.0.1", "bad_domain.com"):
        with pytest.raises(InvalidName):
            validate_domain(bad)
