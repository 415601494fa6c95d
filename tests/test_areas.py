"""Areas are declared once (platform/areas.py); the app, permissions and roles follow."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from atrium.platform.areas import discover
from atrium.platform.security.permissions import (
    ADMIN_ROLE,
    MEMBER_ROLE,
    OWNER_ROLE,
    builtin_roles,
    effective,
    grants,
    is_valid_permission,
    manage,
    read,
    resources,
    write,
)
from atrium.tenants.areas import areas, resource_specs
from tests.api import route_resources


def test_every_routed_resource_is_declared_by_one_area_and_has_permissions() -> None:
    declared = [spec.resource for spec in resource_specs()]
    assert sorted(declared) == sorted(set(declared))
    assert set(route_resources()) == set(declared)
    assert set(resources()) == set(declared)
    assert {area.name for area in areas()} >= {"identity", "customize", "media"}
    for resource in declared:
        for permission in (read(resource), write(resource), manage(resource)):
            assert is_valid_permission(permission)
        assert not is_valid_permission(f"{resource}:delete")
    assert not is_valid_permission("no-such-resource:read")


def test_the_built_in_roles_follow_the_declarations() -> None:
    roles = builtin_roles()
    specs = resource_specs()
    assert roles[OWNER_ROLE] == ["*"]
    # API.md §4: Admin manages every resource; Member holds one action on each (or none).
    assert set(roles[ADMIN_ROLE]) == {manage(spec.resource) for spec in specs}
    assert set(roles[MEMBER_ROLE]) == {f"{spec.resource}:{spec.member}" for spec in specs if spec.member}
    assert "media:write" in roles[MEMBER_ROLE]


@pytest.mark.parametrize(
    ("held", "needed", "granted"),
    [
        ("media:manage", "media:write", True),
        ("media:manage", "media:read", True),
        ("media:write", "media:read", True),
        ("media:write", "media:manage", False),
        ("media:read", "media:write", False),
        ("users:manage", "media:read", False),
        ("user:manage", "users:read", False),
        ("*", "media:manage", True),
    ],
)
def test_manage_includes_write_which_includes_read(held: str, needed: str, granted: bool) -> None:
    assert grants(frozenset({held}), needed) is granted


def test_effective_permissions_spell_out_what_they_include() -> None:
    assert effective(frozenset({"media:manage", "users:read"})) == [
        "media:manage",
        "media:read",
        "media:write",
        "users:read",
    ]
    assert effective(frozenset({"*"})) == ["*"]


@pytest.fixture
def fake_tenants(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "fake_tenants"
    root.mkdir()
    sys.path.insert(0, str(tmp_path))
    try:
        yield root
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n.startswith("fake_tenants")]:
            del sys.modules[name]


def test_a_package_without_a_declaration_is_refused(fake_tenants: Path) -> None:
    (fake_tenants / "forgotten").mkdir()
    (fake_tenants / "forgotten" / "__init__.py").write_text("")
    with pytest.raises(TypeError, match=r"fake_tenants\.forgotten has no area\.py"):
        discover("fake_tenants")


def test_a_resource_declared_twice_is_refused(fake_tenants: Path) -> None:
    declaration = (
        "from atrium.platform.areas import Area\n"
        "from atrium.tenants.media.routes import MEDIA\n"
        "AREA = Area('{name}', resources=[MEDIA])\n"
    )
    for name in ("one", "two"):
        (fake_tenants / name).mkdir()
        (fake_tenants / name / "__init__.py").write_text("")
        (fake_tenants / name / "area.py").write_text(declaration.format(name=name))
    with pytest.raises(TypeError, match=r"declared by two areas: \['media'\]"):
        discover("fake_tenants")


def test_the_readme_lists_what_member_may_write() -> None:
    """The README's Member role, read from the area registry: a new area's member access
    must reach the user docs too."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    described = " ".join(readme.split("`Member` (`read` on", 1)[1].split(":", 1)[0].split())
    writes = {resource for resource, access in resources().items() if access == "write"}
    assert set(re.findall(r"`([a-z-]+)`", described.split("`write` on", 1)[1])) == writes
