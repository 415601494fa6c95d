"""The rules of /forms and /form-responses: definitions checked at save, versions, answers
checked against the current version, and the response count kept in the same transaction.

Not ``from __future__ import annotations``: Litestar reads ``CrudService``'s annotations.
"""

import uuid
from typing import Any, NamedTuple, Protocol

from sqlalchemy import ColumnElement, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from atrium.platform.db.binding import run_first
from atrium.platform.db.queued_inserts import statement_text
from atrium.platform.web.bodies import refuse_nul_characters
from atrium.platform.web.errors import problem
from atrium.platform.web.idempotency import BeforeCommit
from atrium.platform.web.services import CrudService, not_found
from atrium.tenants.forms.fields import check_answers, check_fields
from atrium.tenants.forms.models import Form, FormResponse


class FormService(CrudService[Form]):
    model = Form

    async def prepare_create(self, values: dict[str, Any]) -> dict[str, Any]:
        values["fields"] = check_fields(values["fields"])
        return values

    async def prepare_update(self, item: Form, changes: dict[str, Any]) -> dict[str, Any]:
        if "fields" in changes:
            changes["fields"] = check_fields(changes["fields"])
            # Answers keep the version they were checked against: it moves only when the
            # questions do, not when the title or status does.
            if changes["fields"] != item.fields:
                changes["version"] = item.version + 1
        return changes


async def locked_form(session: AsyncSession, form_id: uuid.UUID) -> Form | None:
    """The form, locked until the transaction ends: its fields cannot change between the
    check of an answer and its insert, and its count is kept in step."""
    return await session.scalar(
        select(Form).where(Form.id == form_id).with_for_update().execution_options(populate_existing=True)
    )


async def count_responses(session: AsyncSession, form_id: uuid.UUID, change: int) -> None:
    # ``updated_at`` (and so the ETag) stays: a new answer is no edit of the form, and a form
    # owner's If-Match would otherwise fail at every response that arrived meanwhile.
    await session.execute(
        update(Form)
        .where(Form.id == form_id)
        .values(response_count=Form.response_count + change, updated_at=Form.updated_at)
    )


_FORMS = Form.__table__
# ``updated_at`` stays, as in ``count_responses``. A table statement, not an ORM one: there
# is no loaded form to keep in step, and the ORM's update would look for one.
TAKE_RESPONSE = (
    update(_FORMS)
    .where(_FORMS.c.id == bindparam("form_id"))
    .values(response_count=_FORMS.c.response_count + 1, updated_at=_FORMS.c.updated_at)
    .returning(_FORMS.c.id, _FORMS.c.status, _FORMS.c.public, _FORMS.c.version, _FORMS.c.fields)
)


class TakenForm(NamedTuple):
    """The row ``TAKE_RESPONSE`` returns, in its column order."""

    id: uuid.UUID
    status: str
    public: bool
    version: int
    fields: list[dict[str, Any]]


async def take_response(session: AsyncSession, form_id: uuid.UUID) -> TakenForm | None:
    """The form a new response answers, counted and locked until the transaction ends (its
    fields cannot change between the check of the answers and their insert), in one
    statement where a locking read and an update of the count took two round trips. A
    response refused afterwards (the form not open, an answer bad) rolls the count back
    with the rest of its transaction.

    It is a create's first statement: sent on the driver with the transaction's ``BEGIN``
    and binding (and an ``Idempotency-Key``'s claim), not through SQLAlchemy's execute,
    which was about a fifth of a response's time in the app (bench/RESULTS.md)."""
    row = await run_first(session, *statement_text(session, TAKE_RESPONSE, {"form_id": form_id}))
    return None if row is None else TakenForm(*row)


class FormState(Protocol):
    """What a response is checked against: a ``Form``, or the row ``take_response`` returns."""

    id: uuid.UUID
    status: str
    version: int
    fields: list[dict[str, Any]]


def checked_response(form: FormState, answers: Any, owner_id: uuid.UUID | None) -> dict[str, Any]:
    """The values of a new response to ``form``: answers checked against its current fields.
    NUL characters are refused before (``CrudService`` refuses them in every body)."""
    return {
        "form_id": form.id,
        "answers": check_answers(form.fields, answers),
        "form_version": form.version,
        "owner_id": owner_id,
    }


def not_open(form: FormState) -> Exception:
    return problem(
        409,
        f"This form is {form.status}: only an open form takes responses.",
        type_="invalid-state",
        state=form.status,
    )


class FormResponseService(CrudService[FormResponse]):
    model = FormResponse

    @classmethod
    def visibility(cls, caller: ColumnElement[Any]) -> ColumnElement[bool] | None:
        # API.md §11: the respondent and the form's owner (manage sees every row).
        return or_(
            FormResponse.owner_id == caller,
            FormResponse.form_id.in_(select(Form.id).where(Form.owner_id == caller)),
        )

    async def prepare_create(self, values: dict[str, Any]) -> dict[str, Any]:
        form = await take_response(self.session, values["form_id"])
        if form is None:
            raise problem(
                422,
                "The form does not exist.",
                errors=[{"field": "form_id", "message": "no such form in this tenant"}],
            )
        if form.status != "open":
            raise not_open(form)
        return checked_response(form, values["answers"], values["owner_id"])

    async def prepare_update(self, item: FormResponse, changes: dict[str, Any]) -> dict[str, Any]:
        if "answers" in changes:
            form = await locked_form(self.session, item.form_id)
            if form is None:  # the form's delete takes its responses with it
                raise not_found(FormResponse)
            if form.status != "open":
                raise not_open(form)
            checked = checked_response(form, changes["answers"], item.owner_id)
            changes.update(answers=checked["answers"], form_version=checked["form_version"])
        return changes

    async def before_delete(self, item: FormResponse) -> None:
        await count_responses(self.session, item.form_id, -1)


async def submit_public(
    session: AsyncSession,
    form_id: uuid.UUID,
    answers: Any,
    before_commit: BeforeCommit[FormResponse] | None = None,
) -> FormResponse:
    """An anonymous response to an open public form; any other form is 404, as if absent."""
    form = await take_response(session, form_id)
    if form is None or not form.public or form.status != "open":
        raise not_found(Form)
    refuse_nul_characters({"answers": answers})
    item = FormResponse(**checked_response(form, answers, None))
    session.add(item)
    if before_commit is not None:
        await session.flush()
        await before_commit(item)
    await session.commit()
    return item
