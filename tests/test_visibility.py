"""Visibility rules (CrudService.visibility): a row the caller may not see is absent from
lists and 404 on get, change and delete; manage sees every row (API.md §4, §5).

Today's resources show every row; a rule is proved here on media served under a
private path, as a later area would declare one.
"""

from __future__ import annotations

from typing import Any

from litestar import Router
from sqlalchemy import ColumnElement

from atrium.platform.settings import Settings
from atrium.platform.web.resources import ResourceSpec, crud_router
from atrium.tenants.media.models import Media
from atrium.tenants.media.routes import MediaService
from atrium.tenants.media.schemas import MediaRead, MediaUpdate
from tests.api import add_user, assert_problem, serve_api
from tests.conftest import MadeTenant, login

pytest_plugins = ["tests.api"]


class OwnMediaService(MediaService):
    @classmethod
    def visibility(cls, caller: ColumnElement[Any]) -> ColumnElement[bool] | None:
        return Media.owner_id == caller


PRIVATE = Router(
    path="/private",
    route_handlers=[
        crud_router(
            ResourceSpec(
                "media",
                OwnMediaService,
                MediaRead,
                MediaUpdate,
                MediaUpdate,
                operations=frozenset({"list", "get", "update", "delete"}),
            )
        )
    ],
)


async def test_rows_outside_the_rule_are_invisible_to_all_but_manage(
    settings: Settings, tenant_a: MadeTenant
) -> None:
    async with serve_api(settings.with_overrides(redis_url=None)) as (app, client):
        app.register(PRIVATE)
        owner = await login(client, tenant_a.host, tenant_a.owner_email, tenant_a.owner_password)
        member = (await add_user(client, owner, role="Member")).headers
        ids = {}
        for who, headers in (("owner", owner), ("member", member)):
            uploaded = await client.post("/media", files={"file": (f"{who}.txt", b"x")}, headers=headers)
            assert uploaded.status_code == 201, uploaded.text
            ids[who] = uploaded.json()["id"]

        # Twice each: the second read takes the remembered caller's path.
        for _ in range(2):
            listed = (await client.get("/private/media", headers=member)).json()
            assert [row["id"] for row in listed["items"]] == [ids["member"]] and listed["total"] == 1
            assert (await client.get(f"/private/media/{ids['member']}", headers=member)).status_code == 200
            assert_problem(await client.get(f"/private/media/{ids['owner']}", headers=member), 404)
            past_the_end = await client.get("/private/media", params={"offset": 5}, headers=member)
            assert past_the_end.json()["total"] == 1
        # Not seen is not there: 404 before any ownership check, and nothing changes.
        assert_problem(
            await client.patch(f"/private/media/{ids['owner']}", json={"name": "m.txt"}, headers=member), 404
        )
        assert_problem(await client.delete(f"/private/media/{ids['owner']}", headers=member), 404)
        assert (await client.get(f"/media/{ids['owner']}", headers=owner)).json()["name"] == "owner.txt"
        renamed = await client.patch(
            f"/private/media/{ids['member']}", json={"name": "mine.txt"}, headers=member
        )
        assert renamed.status_code == 200, renamed.text

        # manage (the owner's "*") sees every row.
        assert (await client.get("/private/media", headers=owner)).json()["total"] == 2
        assert (await client.get(f"/private/media/{ids['member']}", headers=owner)).status_code == 200
        # The default rule shows the member every row.
        assert (await client.get("/media", headers=member)).json()["total"] == 2
