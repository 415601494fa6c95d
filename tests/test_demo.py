"""The demo organisation (platform/tenancy/demo.py): sample rows of every area that has some."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, text

from atrium.platform.settings import Settings
from atrium.platform.tenancy.admin import TenantNotFound, get_tenant
from atrium.platform.tenancy.demo import DemoTenant, add_demo
from atrium.platform.tenancy.errors import InvalidInput
from atrium.platform.tenancy.naming import schema_for_slug
from atrium.platform.tenancy.provisioning import OwnerSpec
from atrium.tenants.areas import areas
from tests.conftest import TEST_SECRET, login, serve, unique_slug

OWNER = ["--owner-name", "Olive", "--owner-email", "olive@demo.test", "--owner-phone", "1"]


async def test_tenants_create_demo_seeds_an_organisation_to_explore(
    settings: Settings, operator_engine: Engine, tmp_path: Path
) -> None:
    slug = unique_slug("demo")
    env = {
        "DATABASE_URL": settings.database_url,
        "ATRIUM_SECRET_KEY": TEST_SECRET,
        "ATRIUM_BCRYPT_ROUNDS": "4",
        "PATH": str(Path(sys.executable).parent),
    }
    command = [sys.executable, "-m", "atrium.scripts", "tenants", "create", slug, "--name", "Demo", *OWNER]
    created = await asyncio.to_thread(
        subprocess.run,
        [*command, "--demo", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert created.returncode == 0, created.stderr
    password = json.loads(created.stdout)["owner_password"]
    assert {a.name for a in areas() if a.demo is not None} >= {"identity", "customize", "media", "forms"}

    async with serve(settings) as (_, client):
        owner = await login(client, f"{slug}.localhost", "olive@demo.test", password)
        users = (await client.get("/users", headers=owner)).json()
        groups = (await client.get("/user-groups", headers=owner)).json()
        links = (await client.get("/user-meta", headers=owner)).json()
        customize = (await client.get("/customize", headers=owner)).json()
        media = (await client.get("/media", headers=owner)).json()
        projects = (await client.get("/projects", headers=owner)).json()
        discussions = (await client.get("/project-discussions", headers=owner)).json()
        topics = (await client.get("/forum-discussions", params={"parent_id": "null"}, headers=owner)).json()
        tickets = (await client.get("/help-desk", headers=owner)).json()
        invoices = (await client.get("/invoices", headers=owner)).json()
        pdfs = [await client.get(f"/invoices/{i['id']}/pdf", headers=owner) for i in invoices["items"]]
        internal = []
        for t in tickets["items"]:
            replies = (await client.get(f"/help-desk/{t['id']}/replies", headers=owner)).json()
            internal += [r for r in replies["items"] if r["visibility"] == "internal"]
        forms = (await client.get("/forms", headers=owner)).json()
        (form,) = forms["items"]
        public = await client.get(f"/public/forms/{form['id']}", headers={"Host": f"{slug}.localhost"})
        export = await client.get(f"/forms/{form['id']}/responses.csv", headers=owner)
    assert users["total"] >= 5  # the owner and the sample people
    assert {g["name"] for g in groups["items"]} >= {"Engineering", "Support", "Everyone"}
    assert customize["total"] == 1
    assert [m["name"] for m in media["items"]] == ["welcome.txt"]
    # A project with a discussion and its replies; a forum whose pinned topic has replies.
    assert projects["total"] == 1 and len(projects["items"][0]["member_ids"]) >= 5
    assert any(d["parent_id"] is None and d["reply_count"] > 0 for d in discussions["items"])
    assert topics["items"][0]["pinned"] and topics["items"][0]["reply_count"] > 0
    assert len({t["status"] for t in tickets["items"]}) >= 4 and len(internal) == 1
    assert {i["status"] for i in invoices["items"]} >= {"draft", "open", "paid"}
    assert all(p.status_code == 200 and p.content.startswith(b"%PDF") for p in pdfs)
    # An open public form with responses, one of them guarded against formulas in the export.
    assert (form["status"], form["public"], form["response_count"]) == ("open", True, 3)
    assert public.status_code == 200 and public.json()["title"] == "Event feedback"
    assert export.status_code == 200 and len(export.text.splitlines()) == 4 and "'=HYPERLINK" in export.text
    # Every sample person is in a group with a role, as in a real organisation.
    assert {u["id"] for u in users["items"]} <= {link["owner_id"] for link in links["items"]}


def test_a_demo_that_fails_leaves_no_tenant_behind(
    operator_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sample rows are written in the provisioning's own transaction: an interruption
    (Ctrl-C, a failure) used to leave a live tenant without them, which a retry of the same
    slug then refused as existing."""
    from atrium.platform.tenancy import provisioning

    def interrupted(conn: Connection, demo: DemoTenant) -> None:
        add_demo(conn, demo)
        raise KeyboardInterrupt

    monkeypatch.setattr(provisioning, "add_demo", interrupted)
    slug = unique_slug("demo")
    owner = OwnerSpec("Olive", "olive@demo.test", "1", "a long passphrase")
    with pytest.raises(KeyboardInterrupt):
        provisioning.provision_tenant(operator_engine, slug, "Demo", owner, bcrypt_rounds=4, demo=True)
    with pytest.raises(TenantNotFound):
        get_tenant(operator_engine, slug)
    with operator_engine.connect() as conn:
        assert (
            conn.scalar(
                text("SELECT count(*) FROM pg_namespace WHERE nspname = :s"), {"s": schema_for_slug(slug)}
            )
            == 0
        )
    monkeypatch.undo()
    made = provisioning.provision_tenant(operator_engine, slug, "Demo", owner, bcrypt_rounds=4, demo=True)
    with operator_engine.connect() as conn:
        users = conn.scalar(text(f'SELECT count(*) FROM "{made.schema}".users'))
    assert users > 1


def test_a_tenant_name_is_one_line_of_printable_characters(operator_engine: Engine) -> None:
    from atrium.platform.tenancy.provisioning import provision_tenant

    owner = OwnerSpec("Olive", "olive@demo.test", "1", "a long passphrase")
    for name in ("Evil\nName", "Red \x1b[31mtext", "tab\there"):
        with pytest.raises(InvalidInput):
            provision_tenant(operator_engine, unique_slug("nm"), name, owner, bcrypt_rounds=4)
