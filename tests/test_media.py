"""/media: multipart upload, metadata through the CRUD conventions, the exact bytes back."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
import resource
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from atrium.platform.settings import Settings
from tests.conftest import MadeTenant, driver_statements, login, login_owner, serve

BOUNDARY = "atrium-test-boundary-7d1f3c"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
METADATA_FIELDS = {"id", "owner_id", "name", "type", "size", "created_at", "updated_at"}
MiB = 1024 * 1024


def part_head(filename: str | None, content_type: str | None, field: str = "file") -> bytes:
    """The boundary and headers of one part, written by hand so odd names and types reach the server."""
    disposition = f'form-data; name="{field}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    lines = [f"--{BOUNDARY}", f"Content-Disposition: {disposition}"]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


CLOSING = f"\r\n--{BOUNDARY}--\r\n".encode()


def multipart_body(
    payload: bytes, filename: str | None = "file.bin", content_type: str | None = None, field: str = "file"
) -> bytes:
    return part_head(filename, content_type, field) + payload + CLOSING


async def upload_raw(
    client: httpx.AsyncClient, headers: dict[str, str], body: bytes, content_type: str = MULTIPART
) -> httpx.Response:
    return await client.post("/media", content=body, headers={**headers, "Content-Type": content_type})


def assert_problem(response: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert response.status_code in statuses, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["status"] == response.status_code
    assert "Traceback" not in response.text
    return body


async def test_upload_download_list_rename_delete(
    settings: Settings, make_tenant: Callable[..., MadeTenant]
) -> None:
    made = make_tenant()
    payload = os.urandom(200 * 1024)
    async with serve(settings) as (_app, client):
        headers = await login_owner(client, made)
        me = (await client.get("/auth/me", headers=headers)).json()
        with driver_statements() as statements:
            created = await client.post(
                "/media", files={"file": ("report.pdf", payload, "application/pdf")}, headers=headers
            )
            assert created.status_code == 201, created.text
            meta = created.json()
            assert set(meta) == METADATA_FIELDS  # never the bytes
            assert created.headers["location"] == f"/media/{meta['id']}"
            assert meta["owner_id"] == me["user"]["id"]
            assert meta["name"] == "report.pdf"
            assert meta["type"] == "application/pdf"
            assert meta["size"] == len(payload)
            assert len(created.content) < 1024

            fetched = await client.get(created.headers["location"], headers=headers)
            assert fetched.status_code == 200 and fetched.json() == meta
            assert (await client.get("/media", headers=headers)).status_code == 200
            # Metadata and lists never load the bytes; only the download does.
            assert any(q.startswith("INSERT INTO media") for q in statements), statements
            assert not any("media.data" in q for q in statements), statements

            content = await client.get(f"/media/{meta['id']}/content", headers=headers)
            assert any("media.data" in q for q in statements), statements
            assert content.status_code == 200
            assert hashlib.sha256(content.content).hexdigest() == hashlib.sha256(payload).hexdigest()
            assert content.headers["content-type"] == "application/pdf"
            assert content.headers["content-length"] == str(len(payload))
            assert content.headers["content-disposition"] == (
                "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"
            )
            assert content.headers["x-content-type-options"] == "nosniff"
            assert "sandbox" in content.headers["content-security-policy"]

            second = await client.post("/media", files={"file": ("b.txt", b"second")}, headers=headers)
            assert second.status_code == 201, second.text
            listed = await client.get("/media", headers=headers)
            assert listed.status_code == 200
            page = listed.json()
            assert page["total"] == 2 and page["limit"] == 50 and page["offset"] == 0
            assert [i["id"] for i in page["items"]] == [second.json()["id"], meta["id"]]  # newest first
            assert page["items"][1] == meta
            assert all(set(i) == METADATA_FIELDS for i in page["items"])

            renamed = await client.patch(f"/media/{meta['id']}", json={"name": "final.pdf"}, headers=headers)
            assert renamed.status_code == 200, renamed.text
            assert renamed.json()["name"] == "final.pdf" and renamed.json()["size"] == len(payload)
            assert renamed.json()["updated_at"] > meta["updated_at"]
            assert (await client.get(f"/media/{meta['id']}", headers=headers)).json() == renamed.json()
            renamed_content = await client.get(f"/media/{meta['id']}/content", headers=headers)
            assert renamed_content.content == payload
            assert "filename*=UTF-8''final.pdf" in renamed_content.headers["content-disposition"]
            # The download is a single-row answer too (API.md §5): the row's ETag, which a new
            # name (a new Content-Disposition) changes.
            assert content.headers["etag"] and content.headers["etag"] != renamed_content.headers["etag"]
            assert renamed_content.headers["etag"] == renamed.headers["etag"]
            for bad in ({"name": "../x"}, {"name": ""}, {"size": 1}, {"type": "text/html"}):
                assert_problem(await client.patch(f"/media/{meta['id']}", json=bad, headers=headers), 422)

            deleted = await client.delete(f"/media/{meta['id']}", headers=headers)
            assert deleted.status_code == 204 and deleted.content == b""
            for path in (f"/media/{meta['id']}", f"/media/{meta['id']}/content"):
                assert_problem(await client.get(path, headers=headers), 404)
            assert_problem(await client.delete(f"/media/{meta['id']}", headers=headers), 404)
            remaining = (await client.get("/media", headers=headers)).json()
            assert remaining["total"] == 1 and remaining["items"][0]["id"] == second.json()["id"]


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("image/png", "image/png"),
        ("IMAGE/PNG", "image/png"),
        ("text/plain; charset=utf-8", "text/plain; charset=utf-8"),
        ('image/png; name="a b"', "image/png"),
        ("not a type", "application/octet-stream"),
        ("image/", "application/octet-stream"),
        ("image/png/x", "application/octet-stream"),
        ("text/html<script>", "application/octet-stream"),
        (None, "application/octet-stream"),
    ],
)
async def test_content_type_kept_only_when_valid(
    settings: Settings, make_tenant: Callable[..., MadeTenant], sent: str | None, stored: str
) -> None:
    made = make_tenant()
    payload = b"\x89PNG\r\n\x1a\n" + os.urandom(64)
    async with serve(settings) as (_, client):
        headers = await login_owner(client, made)
        created = await upload_raw(client, headers, multipart_body(payload, "picture.png", sent))
        assert created.status_code == 201, created.text
        assert created.json()["type"] == stored
        content = await client.get(f"/media/{created.json()['id']}/content", headers=headers)
        assert content.content == payload
        assert content.headers["content-type"] == stored  # exactly: no charset added to text/*


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("../../etc/passwd", "passwd"),
        ("/var/www/index.html", "index.html"),
        ("C:\\Users\\me\\evil.txt", "evil.txt"),
        ("..", "upload"),
        ("dir/", "upload"),
        ("   ", "upload"),
        ("a\u202egnp.exe", "agnp.exe"),
        ("x" * 300 + ".jpeg", "x" * 250 + ".jpeg"),
        ("y" * 400, "y" * 255),
    ],
)
async def test_file_name_is_sanitised(
    settings: Settings, make_tenant: Callable[..., MadeTenant], sent: str, stored: str
) -> None:
    made = make_tenant()
    async with serve(settings) as (_, client):
        headers = await login_owner(client, made)
        created = await upload_raw(client, headers, multipart_body(b"data", sent, "text/plain"))
        assert created.status_code == 201, created.text
        assert created.json()["name"] == stored
        content = await client.get(f"/media/{created.json()['id']}/content", headers=headers)
        assert content.headers["content-disposition"].startswith("attachment; ")


async def test_non_ascii_name_is_percent_encoded_with_an_ascii_fallback(
    settings: Settings, make_tenant: Callable[..., MadeTenant]
) -> None:
    made = make_tenant()
    async with serve(settings) as (_, client):
        headers = await login_owner(client, made)
        name = 'résumé "final" 100%.pdf'
        created = await client.post("/media", files={"file": (name, b"%PDF-1.7")}, headers=headers)
        assert created.status_code == 201, created.text
        assert created.json()["name"] == name
        content = await client.get(f"/media/{created.json()['id']}/content", headers=headers)
        assert content.headers["content-disposition"] == (
            'attachment; filename="resume _final_ 100_.pdf"; '
            "filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22%20100%25.pdf"
        )


async def test_malformed_uploads_are_client_errors(
    settings: Settings, make_tenant: Callable[..., MadeTenant]
) -> None:
    made = make_tenant()
    async with serve(settings) as (_, client):
        headers = await login_owner(client, made)
        cases = [
            # the file under another field name
            (multipart_body(b"data", "a.txt", field="upload"), MULTIPART),
            # a plain form field instead of a file
            (multipart_body(b"data", None), MULTIPART),
            # no parts at all
            (CLOSING.lstrip(b"\r\n"), MULTIPART),
            # multipart without a boundary, and a broken multipart body
            (multipart_body(b"data"), "multipart/form-data"),
            (b"--nonsense\r\n\r\nbroken", MULTIPART),
            # two files in the one field
            (part_head("a.txt", None) + b"a\r\n" + multipart_body(b"b", "b.txt"), MULTIPART),
            (b"", MULTIPART),
        ]
        for body, content_type in cases:
            response = await upload_raw(client, headers, body, content_type)
            assert_problem(response, 400, 422)
            assert "class" not in response.text, response.text  # no Python type named
        twice = await upload_raw(
            client, headers, part_head("a.txt", None) + b"a\r\n" + multipart_body(b"b", "b.txt"), MULTIPART
        )
        assert assert_problem(twice, 422)["errors"][0]["message"] == "given more than once; send it once"
        text = await upload_raw(client, headers, multipart_body(b"data", None), MULTIPART)
        assert "file part" in assert_problem(text, 422)["errors"][0]["message"]
        # not multipart/form-data: the type itself is refused
        for body, content_type in [
            (b'{"file": "data"}', "application/json"),
            (b"file=data", "application/x-www-form-urlencoded"),
            (multipart_body(b"data", "a.txt"), "text/plain"),
        ]:
            assert_problem(await upload_raw(client, headers, body, content_type), 415)
        assert (await client.get("/media", headers=headers)).json()["total"] == 0


class Feed:
    """A multipart body of ``size`` bytes, produced lazily; counts what the server pulled."""

    def __init__(self, size: int, chunk: int = 64 * 1024) -> None:
        self.size = size
        self.block = b"\0" * chunk
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        head = part_head("big.bin", "application/octet-stream")
        self.sent += len(head)
        yield head
        remaining = self.size
        while remaining > 0:
            block = self.block if remaining >= len(self.block) else self.block[:remaining]
            remaining -= len(block)
            self.sent += len(block)
            yield block
        self.sent += len(CLOSING)
        yield CLOSING


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


async def test_upload_limit_is_exact_and_taken_from_settings(
    settings: Settings, make_tenant: Callable[..., MadeTenant]
) -> None:
    made = make_tenant()
    async with serve(settings.with_overrides(max_upload_bytes=1024)) as (_, client):
        headers = await login_owner(client, made)
        exact = await client.post("/media", files={"file": ("a.bin", os.urandom(1024))}, headers=headers)
        assert exact.status_code == 201, exact.text
        empty = await upload_raw(client, headers, multipart_body(b"", "empty.txt"))
        assert empty.status_code == 201, empty.text
        assert empty.json()["size"] == 0
        assert (await client.get(f"/media/{empty.json()['id']}/content", headers=headers)).content == b""
        over = await client.post("/media", files={"file": ("b.bin", os.urandom(1025))}, headers=headers)
        body = assert_problem(over, 413)
        assert body["type"] == "payload-too-large"
        # Well past the multipart allowance: refused by the body limit itself, and still
        # stating the file's limit (the request's includes the multipart framing).
        far_over = await client.post(
            "/media", files={"file": ("c.bin", os.urandom(200 * 1024))}, headers=headers
        )
        stated = "The file is larger than the limit of 1024 bytes (0.000976562 MiB)."
        assert assert_problem(far_over, 413)["detail"] == body["detail"] == stated
        listed = (await client.get("/media", headers=headers)).json()
        assert [i["id"] for i in listed["items"]] == [empty.json()["id"], exact.json()["id"]]


async def test_oversized_upload_is_refused_without_being_read(
    settings: Settings, make_tenant: Callable[..., MadeTenant]
) -> None:
    made = make_tenant()
    size = 64 * MiB
    async with serve(settings.with_overrides(max_upload_bytes=MiB)) as (_, client):
        headers = await login_owner(client, made)
        # Warm up this code path so that start-up allocations do not count below.
        warm = await upload_raw(client, headers, multipart_body(b"warm-up"))
        assert warm.status_code == 201, warm.text

        # Chunked, no length given: refused once the limit is passed, not at the end.
        gc.collect()
        rss_before = peak_rss_bytes()
        tracemalloc.start()
        try:
            streamed = Feed(size)
            response = await client.post(
                "/media", content=streamed, headers={**headers, "Content-Type": MULTIPART}
            )
            _, traced_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        rss_growth = peak_rss_bytes() - rss_before
        assert_problem(response, 413)
        assert streamed.sent < 4 * MiB, streamed.sent
        assert traced_peak < 16 * MiB, traced_peak
        assert rss_growth < 16 * MiB, rss_growth

        # Announced by Content-Length: refused before any of the body is read.
        announced = Feed(size)
        response = await client.post(
            "/media",
            content=announced,
            headers={**headers, "Content-Type": MULTIPART, "Content-Length": str(size + 1024)},
        )
        assert_problem(response, 413)
        assert announced.sent < MiB, announced.sent
        assert (await client.get("/media", headers=headers)).json()["total"] == 1


async def test_other_tenants_cannot_see_or_touch_media(
    settings: Settings, make_tenant: Callable[..., MadeTenant]
) -> None:
    first, second = make_tenant(), make_tenant()
    async with serve(settings) as (_, client):
        first_headers = await login_owner(client, first)
        second_headers = await login_owner(client, second)
        created = await client.post(
            "/media", files={"file": ("secret.txt", b"secret")}, headers=first_headers
        )
        assert created.status_code == 201, created.text
        media_id = created.json()["id"]

        for path in (f"/media/{media_id}", f"/media/{media_id}/content"):
            assert_problem(await client.get(path, headers=second_headers), 404)
        assert_problem(await client.delete(f"/media/{media_id}", headers=second_headers), 404)
        assert_problem(
            await client.patch(f"/media/{media_id}", json={"name": "mine.txt"}, headers=second_headers), 404
        )
        listed = (await client.get("/media", headers=second_headers)).json()
        assert listed["total"] == 0 and listed["items"] == []

        # The first tenant's token does not work on the second tenant's host either.
        crossed = {**first_headers, "Host": second.host}
        assert_problem(await client.get(f"/media/{media_id}", headers=crossed), 401)

        still = await client.get(f"/media/{media_id}/content", headers=first_headers)
        assert still.status_code == 200 and still.content == b"secret"
        assert (await client.get(f"/media/{uuid.uuid4()}", headers=first_headers)).status_code == 404


async def test_authentication_and_permissions(
    settings: Settings, make_tenant: Callable[..., MadeTenant]
) -> None:
    made = make_tenant()
    async with serve(settings) as (_, client):
        owner = await login_owner(client, made)
        created = await client.post("/media", files={"file": ("o.txt", b"owner's")}, headers=owner)
        assert created.status_code == 201, created.text
        media_id = created.json()["id"]

        anonymous = {"Host": made.host}
        assert_problem(await client.post("/media", files={"file": ("a.txt", b"x")}, headers=anonymous), 401)
        for path in ("/media", f"/media/{media_id}", f"/media/{media_id}/content"):
            assert_problem(await client.get(path, headers=anonymous), 401)
        assert_problem(await client.delete(f"/media/{media_id}", headers=anonymous), 401)

        email, password = f"member-{uuid.uuid4().hex[:8]}@example.com", "member-password-1"
        user = await client.post(
            "/users",
            json={"name": "Member", "email": email, "phone": "+1 555 0101", "password": password},
            headers=owner,
        )
        assert user.status_code == 201, user.text
        roles = (await client.get("/user-roles?limit=200", headers=owner)).json()["items"]
        member_role = next(r["id"] for r in roles if r["name"] == "Member")
        groups = (await client.get("/user-groups?limit=200", headers=owner)).json()["items"]
        everyone = next(g["id"] for g in groups if g["name"] == "Everyone")
        link = await client.post(
            "/user-meta",
            json={"owner_id": user.json()["id"], "user_groups": everyone, "user_roles": member_role},
            headers=owner,
        )
        assert link.status_code == 201, link.text
        member = await login(client, made.host, email, password)

        # Members write media (API.md §4): their own files, not the owner's.
        theirs = await client.post("/media", files={"file": ("m.txt", b"x")}, headers=member)
        assert theirs.status_code == 201, theirs.text
        assert theirs.json()["owner_id"] == user.json()["id"]
        assert_problem(await client.patch(f"/media/{media_id}", json={"name": "m.txt"}, headers=member), 403)
        assert_problem(await client.delete(f"/media/{media_id}", headers=member), 403)
        assert (await client.get(f"/media/{media_id}", headers=owner)).json()["name"] == "o.txt"
        # Members read everyone's.
        assert (await client.get("/media", headers=member)).json()["total"] == 2
        assert (await client.get(f"/media/{media_id}/content", headers=member)).content == b"owner's"
        renamed = await client.patch(f"/media/{theirs.json()['id']}", json={"name": "n.txt"}, headers=member)
        assert renamed.status_code == 200 and renamed.json()["name"] == "n.txt", renamed.text
        assert (await client.delete(f"/media/{theirs.json()['id']}", headers=member)).status_code == 204


async def test_openapi_documents_media(settings: Settings) -> None:
    async with serve(settings) as (_, client):
        response = await client.get("/schema/openapi.json")
        assert response.status_code == 200, response.text
        paths = response.json()["paths"]
        components = response.json()["components"]["schemas"]
    assert set(paths["/media"]) == {"get", "post"}
    assert set(paths["/media/{item_id}"]) == {"get", "patch", "delete"}
    assert set(paths["/media/{item_id}/content"]) == {"get"}
    upload = paths["/media"]["post"]
    assert upload["operationId"] == "create_media"
    assert "multipart/form-data" in upload["requestBody"]["content"]
    assert {"201", "413"} <= set(upload["responses"])
    upload_schema = upload["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"].split("/")[-1]
    assert components[upload_schema]["properties"]["file"]["format"] == "binary"
    assert components[upload_schema]["required"] == ["file"]
    assert upload["responses"]["413"]["content"].keys() == {"application/problem+json"}
    download = paths["/media/{item_id}/content"]["get"]
    assert download["operationId"] == "get_media_content"
    assert "Content-Disposition" in download["responses"]["200"]["headers"]


async def test_a_slow_upload_does_not_hold_a_database_connection(
    settings: Settings, make_tenant: Callable[..., MadeTenant]
) -> None:
    made = make_tenant()
    one_connection = settings.with_overrides(db_pool_size=1, db_max_overflow=0, db_pool_timeout=2)
    async with serve(one_connection) as (_, client):
        headers = await login_owner(client, made)
        receiving = asyncio.Event()

        async def slow_body() -> AsyncIterator[bytes]:
            yield part_head("slow.bin", "application/octet-stream")
            receiving.set()
            for _ in range(6):  # about three seconds of body, longer than the pool timeout
                await asyncio.sleep(0.5)
                yield b"x" * 1024
            yield CLOSING

        upload = asyncio.create_task(
            client.post("/media", content=slow_body(), headers={**headers, "Content-Type": MULTIPART})
        )
        await receiving.wait()
        await asyncio.sleep(0.2)
        # The only pooled connection must be free while the body trickles in.
        listing = await client.get("/users", headers=headers)
        assert listing.status_code == 200, listing.text
        assert not upload.done()
        assert (await upload).status_code == 201


async def test_form_fields_beside_the_file_are_refused(
    settings: Settings, make_tenant: Callable[..., MadeTenant]
) -> None:
    """API.md §5: unknown fields in a body are 422. ``owner_id`` or ``name`` sent beside the
    file were dropped without a word, and the client believed it had set them."""
    made = make_tenant()
    async with serve(settings) as (_, client):
        headers = await login_owner(client, made)
        body = (
            part_head(None, None, field="owner_id")
            + str(uuid.uuid4()).encode()
            + b"\r\n"
            + part_head(None, None, field="name")
            + b"other.txt\r\n"
            + multipart_body(b"data", "a.txt")
        )
        refused = assert_problem(await upload_raw(client, headers, body), 422)
        assert {e["field"] for e in refused["errors"]} == {"owner_id", "name"}, refused
        assert (await client.get("/media", headers=headers)).json()["total"] == 0
        assert (await upload_raw(client, headers, multipart_body(b"data", "a.txt"))).status_code == 201
