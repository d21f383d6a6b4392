"""Exams (per lecture) and their scores: exam CRUD with answer keys, single and bulk score
entry (audited, with an outbox event per recorded score), the score list with rank and
percentile, exam statistics, and a student's grade history.

Definitions of rank, percentile, standard deviation and the distribution are the ones in
``pipelines.grading`` (competition rank "1224"; percentile = share strictly below, in %;
population standard deviation). Soft-deleted students are left out of every list, rank and
statistic here (as they will be once purged); their rows stay and come back on restore.

Roles: owner, admin, teacher and staff read; owner, admin and teacher write. Student and
parent accounts get 403 on every route here.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post, put
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException, ValidationException
from litestar.params import FromPath, FromQuery, JSONBody, Parameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT
from litestar.types import Empty
from litestar.utils.scope.state import ScopeState

from api import rules
from api.auth import Principal, require_own_lecture, require_roles, require_staff
from api.errors import field_error, handle_http, problem
from api.pagination import DEFAULT_LIMIT, check_limit, page_schema
from models.db import transaction
from models.errors import fail_fields
from models.grades import (
    Exam,
    ExamGrade,
    GradeRow,
    LockedExam,
    RankedScore,
    Standing,
    check_students,
    create_exam,
    delete_exam,
    exam_scores,
    grade_history,
    list_exams,
    load_exam,
    lock_exam,
    score_values,
    update_exam,
    write_scores,
)
from models.lectures import lecture_exists
from models.limits import TITLE_MAX, Day, Name, RequiredTitle
from models.pages import Page
from models.scope import NotFoundInTenant, TenantScope, parse_id
from models.tables import Role
from models.tables import Student as StudentRow
from pipelines.grading import (
    MAX_QUESTIONS,
    MAX_SCORE_VALUE,
    InvalidAnswerKey,
    check_score,
    normalize_answer_key,
    percentile,
    score_stats,
    to_score,
)
from pipelines.korean import clean_text

require_grader = require_roles(Role.owner, Role.admin, Role.teacher)

MAX_BULK_ITEMS = 1000

T = TypeVar("T")


# --- schemas ---------------------------------------------------------------------------


# What a numeric(7, 2) column holds (``pipelines.grading.to_score``); a max score is above 0.
MAX_BINS = 100
# Two decimal places, but no ``multipleOf``: a client's float arithmetic sends 0.57 as
# 0.5700000000000001, which ``pipelines.grading.to_score`` takes as 0.57 (noise under 1e-6),
# while a JSON Schema ``multipleOf: 0.01`` would call it invalid -- the document would then
# promise a refusal the API does not make. The rule is stated in words instead.
_TWO_PLACES = (
    "Two decimal places at most (2.615 is refused); a float's binary noise below 1e-6 "
    "(0.5700000000000001) is read as the two-place value."
)
MaxScore = Annotated[float, msgspec.Meta(gt=0, le=float(MAX_SCORE_VALUE), description=_TWO_PLACES)]
ScoreValue = Annotated[
    float, msgspec.Meta(ge=0, le=float(MAX_SCORE_VALUE), description=_TWO_PLACES)
]
QuestionCount = Annotated[int, msgspec.Meta(ge=1, le=MAX_QUESTIONS)]


class ExamCreate(msgspec.Struct, forbid_unknown_fields=True):
    """``answer_key``: question number -> accepted answers, ``{"1": ["3"], "2": ["1", "4"]}``.
    Answers are normalised (``"⑤"`` is ``"5"``); it needs ``question_count``. Per-question
    weights are not part of it: they are the exam's OMR ``marking`` (``PUT
    /exams/{id}/omr``)."""

    title: RequiredTitle
    date: Day
    max_score: MaxScore = 100.0
    question_count: QuestionCount | None = None
    answer_key: dict[Name, list[Name]] | None = None


class ExamUpdate(msgspec.Struct, forbid_unknown_fields=True):
    """Only the fields present change; ``null`` clears ``question_count`` / ``answer_key``."""

    title: RequiredTitle | msgspec.UnsetType = msgspec.UNSET
    date: Day | msgspec.UnsetType = msgspec.UNSET
    max_score: MaxScore | msgspec.UnsetType = msgspec.UNSET
    question_count: QuestionCount | msgspec.UnsetType | None = msgspec.UNSET
    answer_key: dict[Name, list[Name]] | msgspec.UnsetType | None = msgspec.UNSET


class ScoreIn(msgspec.Struct, forbid_unknown_fields=True):
    score: ScoreValue


class ScoreItem(msgspec.Struct, forbid_unknown_fields=True):
    student_id: uuid.UUID
    score: ScoreValue


class ScoreResult(msgspec.Struct):
    exam_id: uuid.UUID
    student_id: uuid.UUID
    score: float
    max_score: float
    changed: bool  # False: it already was this score (no audit row, no event)


class ScoreChange(msgspec.Struct):
    student_id: uuid.UUID
    score: float
    changed: bool


class BulkScoreResult(msgspec.Struct):
    exam_id: uuid.UUID
    max_score: float
    received: int
    changed: int
    items: list[ScoreChange]


class ExamScore(msgspec.Struct):
    student_id: uuid.UUID
    student_name: str
    score: float
    rank: int  # competition rank, 1 = highest; ties share it (1, 2, 2, 4)
    percentile: float  # % of this exam's scores strictly below this one
    updated_at: dt.datetime


class ExamScores(msgspec.Struct):
    exam_id: uuid.UUID
    max_score: float
    count: int
    items: list[ExamScore]


class ScoreBin(msgspec.Struct):
    lower: float
    upper: float  # exclusive, except for the last bin (which ends at max_score inclusive)
    count: int


class ExamStats(msgspec.Struct):
    """``stdev`` is the population standard deviation (N, not N - 1)."""

    exam_id: uuid.UUID
    max_score: float
    count: int
    mean: float | None
    median: float | None
    stdev: float | None
    min: float | None
    max: float | None
    distribution: list[ScoreBin]


class GradeEntry(ExamGrade):
    percentile: float
    count: int  # scores in that exam


# --- exam fields -----------------------------------------------------------------------


def _validate_exam(data: ExamCreate | ExamUpdate, current: LockedExam | None) -> dict[str, Any]:
    """Clean and check every field against the exam as it will be (``current`` is the
    locked row on update); one 422 lists all the problems. Returns column -> value."""
    errors: list[dict[str, Any]] = []
    values: dict[str, Any] = {}
    if data.title is not msgspec.UNSET:
        title = clean_text(data.title, TITLE_MAX)
        if not title:
            errors.append({"field": "title", "message": "must not be empty"})
        values["title"] = title
    if data.date is not msgspec.UNSET:
        values["date"] = data.date
    if data.max_score is not msgspec.UNSET:
        try:
            max_score = to_score(data.max_score)
            if max_score <= 0:
                raise ValueError("must be greater than 0")
            top = current.top_score if current else None
            if top is not None and max_score < top:
                raise ValueError(f"must be at least the highest recorded score ({top})")
            values["max_score"] = max_score
        except ValueError as exc:
            errors.append({"field": "max_score", "message": str(exc)})
    _validate_key(data, current, values, errors)
    fail_fields(errors)
    return values


def _validate_key(
    data: ExamCreate | ExamUpdate,
    current: LockedExam | None,
    values: dict[str, Any],
    errors: list[dict[str, Any]],
) -> None:
    """``question_count`` and ``answer_key`` (into ``values``, their problems into
    ``errors``). The key is checked against the exam as it will be: a new question_count
    must still fit the stored key, and a new key the (new or stored) question_count."""
    question_count: int | None = current.question_count if current else None
    key: dict[str, list[str]] | None = current.answer_key if current else None
    count_changed = not isinstance(data.question_count, msgspec.UnsetType)
    key_changed = not isinstance(data.answer_key, msgspec.UnsetType)
    if not isinstance(data.question_count, msgspec.UnsetType):
        question_count = data.question_count
        values["question_count"] = question_count
    if not isinstance(data.answer_key, msgspec.UnsetType):
        key = data.answer_key
        values["answer_key"] = None
    if not (count_changed or key_changed) or key is None:
        return
    try:
        normalized = normalize_answer_key(key, question_count)
    except InvalidAnswerKey as exc:
        for path, message in exc.issues:
            if not path:
                errors.append({"field": "question_count", "message": "required with an answer_key"})
            elif key_changed:
                errors.append({"field": f"answer_key.{path}", "message": message})
            else:  # the stored key does not fit the new question_count
                errors.append(
                    {
                        "field": "question_count",
                        "message": f"the exam's answer key does not fit: {message}",
                    }
                )
    else:
        if key_changed:
            values["answer_key"] = normalized


# --- scores ----------------------------------------------------------------------------

NOT_ENROLLED = "not actively enrolled in this exam's lecture"
NOT_A_STUDENT = "no such student in this academy"


def _item_errors(raw: list[Any]) -> list[dict[str, Any]]:
    """Type errors of every item of a bulk body (msgspec stops at the first one)."""
    errors: list[dict[str, Any]] = []
    fields = msgspec.structs.fields(ScoreItem)
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            errors.append({"field": f"[{i}]", "message": "Expected `object`", "source": "body"})
            continue
        for info in fields:
            if info.encode_name not in item:
                errors.append(
                    {
                        "field": f"[{i}].{info.encode_name}",
                        "message": "Object missing required field",
                        "source": "body",
                    }
                )
                continue
            try:
                msgspec.convert(item[info.encode_name], info.type, strict=False)
            except msgspec.ValidationError as exc:
                errors.append(
                    {"field": f"[{i}].{info.encode_name}", "message": str(exc), "source": "body"}
                )
        known = {info.encode_name for info in fields}
        errors.extend(
            {"field": f"[{i}].{key}", "message": "Object contains unknown field", "source": "body"}
            for key in item
            if key not in known
        )
    return errors


def _bulk_body_problem(
    request: Request[Any, Any, Any], exc: HTTPException
) -> Response[dict[str, Any]]:
    """A bulk body that does not decode: list the type errors of every item, not just the
    first one msgspec met. Anything else goes to the app's problem handler."""
    if isinstance(exc, ValidationException):
        raw = ScopeState.from_scope(request.scope).json
        if raw is not Empty and isinstance(raw, list):
            errors = _item_errors(raw)
            if errors:
                return problem(request, 422, f"{len(errors)} field error(s)", errors=errors)
    return handle_http(request, exc)


def _with_percentile(type_: type[T], row: RankedScore | GradeRow, scores: int) -> T:
    """``row`` as ``type_`` (its fields by name), the number of scores below it given as
    its percentile among the exam's ``scores``."""
    return msgspec.convert(
        {**msgspec.structs.asdict(row), "percentile": percentile(row.below, scores)}, type_
    )


def _bulk_scores(
    data: list[ScoreItem], standing: dict[uuid.UUID, Standing], max_score: Decimal
) -> list[tuple[uuid.UUID, Decimal]]:
    """The validated scores of a bulk body, or one 422 listing every bad item."""
    errors: list[dict[str, Any]] = []
    seen: dict[uuid.UUID, int] = {}
    scores: list[tuple[uuid.UUID, Decimal]] = []
    for i, item in enumerate(data):
        student = standing[item.student_id]
        if item.student_id in seen:
            message = f"listed twice (also at [{seen[item.student_id]}])"
            errors.append({"field": f"[{i}].student_id", "message": message})
        elif not student.found:
            errors.append({"field": f"[{i}].student_id", "message": NOT_A_STUDENT})
        elif not student.enrolled:
            errors.append({"field": f"[{i}].student_id", "message": NOT_ENROLLED})
        seen.setdefault(item.student_id, i)
        try:
            scores.append((item.student_id, check_score(item.score, max_score)))
        except ValueError as exc:
            errors.append({"field": f"[{i}].score", "message": str(exc)})
    fail_fields(errors)
    return scores


# --- routes ----------------------------------------------------------------------------

SortParam = Literal["date", "-date"]


ExamPage = Annotated[Page[Exam], page_schema(Exam)]
GradeEntryPage = Annotated[Page[GradeEntry], page_schema(GradeEntry)]


class LectureExamController(Controller):
    path = "/api/v1/lectures/{lecture_id:str}/exams"
    tags = ["grades"]
    guards = [require_staff, require_own_lecture]

    @get("/", summary="A lecture's exams, by date, cursor pages")
    async def list_exams(
        self,
        lecture_id: FromPath[str],
        tenant_scope: NamedDependency[TenantScope],
        sort: FromQuery[SortParam] = "date",
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> ExamPage:
        return await list_exams(
            tenant_scope,
            lecture_id,
            descending=sort == "-date",
            limit=check_limit(limit),
            cursor=cursor,
        )

    @post(
        "/",
        opt=rules.EXAM_WRITE,
        status_code=HTTP_201_CREATED,
        guards=[require_grader],
        summary="Create an exam",
    )
    async def create(
        self,
        lecture_id: FromPath[str],
        data: JSONBody[ExamCreate],
        tenant_scope: NamedDependency[TenantScope],
    ) -> Exam:
        lecture = await lecture_exists(tenant_scope, lecture_id)
        return await create_exam(tenant_scope, lecture, _validate_exam(data, None))


class ExamController(Controller):
    path = "/api/v1/exams"
    tags = ["grades"]
    guards = [require_staff, require_own_lecture]

    @get("/{exam_id:str}", summary="One exam")
    async def get_one(
        self, exam_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> Exam:
        return await load_exam(tenant_scope, exam_id)

    @patch(
        "/{exam_id:str}",
        opt=rules.EXAM_WRITE,
        guards=[require_grader],
        summary="Change some fields",
    )
    async def update(
        self,
        exam_id: FromPath[str],
        data: JSONBody[ExamUpdate],
        tenant_scope: NamedDependency[TenantScope],
    ) -> Exam:
        """``max_score`` cannot go below the highest recorded score; a new
        ``question_count`` must still fit the stored answer key."""
        async with transaction():
            current = await lock_exam(tenant_scope, exam_id)
            await update_exam(tenant_scope, current.id, _validate_exam(data, current))
        return await load_exam(tenant_scope, current.id)

    @delete("/{exam_id:str}", status_code=HTTP_204_NO_CONTENT, guards=[require_grader],
            summary="Delete an exam (with its scores only when force=true)")  # fmt: skip
    async def delete_exam(
        self,
        exam_id: FromPath[str],
        principal: NamedDependency[Principal],
        tenant_scope: NamedDependency[TenantScope],
        force: FromQuery[bool] = False,
    ) -> None:
        """An exam with scores is a 409 unless ``force=true``; then every score's audit
        trail ends with a ``delete`` row (one statement) before the exam and its scores go."""
        await delete_exam(tenant_scope, exam_id, actor_id=principal.user_id, force=force)

    @get("/{exam_id:str}/scores", summary="Every score with student, rank and percentile")
    async def scores(
        self, exam_id: FromPath[str], tenant_scope: NamedDependency[TenantScope]
    ) -> ExamScores:
        """Best first (ties by name). One statement: the exam and its ranked scores."""
        head, ranked = await exam_scores(tenant_scope, exam_id)
        items = [_with_percentile(ExamScore, r, r.n) for r in ranked]
        return ExamScores(
            exam_id=head.exam_id, max_score=head.max_score, count=len(items), items=items
        )

    @put("/{exam_id:str}/scores/{student_id:str}", opt=rules.SCORE_ONE, guards=[require_grader],
         summary="Record one student's score")  # fmt: skip
    async def put_score(
        self,
        exam_id: FromPath[str],
        student_id: FromPath[str],
        data: JSONBody[ScoreIn],
        principal: NamedDependency[Principal],
        tenant_scope: NamedDependency[TenantScope],
    ) -> ScoreResult:
        """``0 <= score <= max_score`` (two decimal places); the student must be actively
        enrolled in the exam's lecture. Writing the same score again changes nothing."""
        async with transaction():
            exam = await lock_exam(tenant_scope, exam_id)
            student = parse_id(StudentRow, student_id)
            standing = (await check_students(tenant_scope, exam.lecture, [student]))[student]
            if not standing.found:
                raise NotFoundInTenant(StudentRow, student_id)
            errors = []
            if not standing.enrolled:
                errors.append({"field": "student_id", "message": NOT_ENROLLED})
            try:
                score = check_score(data.score, exam.max_score)
            except ValueError as exc:
                errors.append({"field": "score", "message": str(exc)})
            fail_fields(errors)
            changed = await write_scores(
                tenant_scope,
                exam.id,
                [(student, score)],
                actor_id=principal.user_id,
                source="manual",
            )
        return ScoreResult(
            exam_id=exam.id,
            student_id=student,
            score=float(score),
            max_score=float(exam.max_score),
            changed=changed[student],
        )

    @put("/{exam_id:str}/scores", opt=rules.SCORE_MANY, guards=[require_grader],
         exception_handlers={ValidationException: _bulk_body_problem},
         summary="Record many scores: all or nothing")  # fmt: skip
    async def put_scores(
        self,
        exam_id: FromPath[str],
        data: JSONBody[list[ScoreItem]],
        principal: NamedDependency[Principal],
        tenant_scope: NamedDependency[TenantScope],
    ) -> BulkScoreResult:
        """Validated as a whole: every bad item is listed (``[i].score``,
        ``[i].student_id``) and nothing is written if any is bad. One transaction with a
        fixed number of statements, whatever the number of items."""
        async with transaction():
            exam = await lock_exam(tenant_scope, exam_id)
            if len(data) > MAX_BULK_ITEMS:
                raise field_error("body", f"at most {MAX_BULK_ITEMS} scores per request")
            standing = await check_students(
                tenant_scope, exam.lecture, [i.student_id for i in data]
            )
            scores = _bulk_scores(data, standing, exam.max_score)
            changed = await write_scores(
                tenant_scope, exam.id, scores, actor_id=principal.user_id, source="bulk"
            )
        return BulkScoreResult(
            exam_id=exam.id,
            max_score=float(exam.max_score),
            received=len(scores),
            changed=sum(changed.values()),
            items=[ScoreChange(s, float(v), changed[s]) for s, v in scores],
        )

    @get("/{exam_id:str}/stats", summary="Count, mean, median, stdev, min, max, distribution")
    async def stats(
        self,
        exam_id: FromPath[str],
        tenant_scope: NamedDependency[TenantScope],
        bins: Annotated[int, Parameter(ge=1, le=MAX_BINS)] = 10,
    ) -> ExamStats:
        """Computed by ``pipelines.grading.score_stats`` from the exam's scores (one
        statement): population standard deviation; ``bins`` equal-width bins over
        ``[0, max_score]``, each ``[lower, upper)`` except the last, which includes
        ``max_score``. With no scores the figures are ``null``."""
        values = await score_values(tenant_scope, exam_id)
        st = score_stats(values.scores, values.max_score, bins)

        def num(value: Decimal | None) -> float | None:
            return None if value is None else float(value)

        return ExamStats(
            exam_id=values.exam_id,
            max_score=float(values.max_score),
            count=st.count,
            mean=num(st.mean),
            median=num(st.median),
            stdev=num(st.stdev),
            min=num(st.min),
            max=num(st.max),
            distribution=[
                ScoreBin(float(b.lower), float(b.upper), b.count) for b in st.distribution
            ],
        )


class StudentScoreController(Controller):
    path = "/api/v1/students/{student_id:str}/scores"
    tags = ["grades"]
    guards = [require_staff]

    @get("/", summary="A student's grade history, by exam date, cursor pages")
    async def history(
        self,
        student_id: FromPath[str],
        tenant_scope: NamedDependency[TenantScope],
        limit: FromQuery[int] = DEFAULT_LIMIT,
        cursor: FromQuery[str | None] = None,
    ) -> GradeEntryPage:
        """Every exam the student has a score in, oldest first (undated exams last), with
        the rank and percentile the student has in that exam. Two statements per page,
        whatever its size."""
        limit = check_limit(limit)
        page = await grade_history(tenant_scope, student_id, limit=limit, cursor=cursor)
        items = [_with_percentile(GradeEntry, r, r.count) for r in page.items]
        return Page(items=items, limit=page.limit, next_cursor=page.next_cursor)


CONTROLLERS: list[type[Controller]] = [
    LectureExamController,
    ExamController,
    StudentScoreController,
]
