"""The rules each write enforces that no JSON Schema can state (``api.openapi.unstated``):
the OpenAPI document lists them on the operation's 422 answer, so a client author sees every
reason a schema-valid request may still be refused, and the suite's Schemathesis run fails
on any refusal that is neither in the schema nor here.

A key is a field as the refusal's ``errors[].field`` names it, or, for a refusal that names
no field, the problem's ``type``.

One place, so the phrasing of a rule shared by many operations is written once.
"""

from __future__ import annotations

from api.openapi import unstated

EXISTS = "must name a row of this academy that exists"
ENROLLED = "must be a student actively enrolled in the lecture"
PHONE = "must be a Korean phone number: a mobile (010) or an area code and number"
MOBILE = "must be a Korean mobile number (010 and 8 digits)"
MONEY = (
    "at most two decimal places (a client's floating-point noise below 1e-6 is read as the "
    "two-place value)"
)
SCORE = f"{MONEY}, and at most the exam's `max_score`"
LAYOUT = "an answer-card layout the template parser accepts (README, OMR)"
PAST = "must not be in the future"
SMS_TEXT = (
    "only characters SMS/LMS can carry (EUC-KR), unless `strip_unencodable` is set; "
    "placeholders the template defines"
)

STUDENT_WRITE = unstated(
    {
        "phone": MOBILE,
        "guardians[].phone": MOBILE,
        "guardians": "at most one primary guardian",
        "birth_date": PAST,
    }
)
GUARDIAN_WRITE = unstated({"phone": MOBILE})
LECTURE_WRITE = unstated(
    {
        "teacher_id": "must name an active teacher of this academy",
        "schedule[]": "a slot's `end` after its `start`, and no two slots overlapping",
        "end_date": "must not be before `start_date`",
        "start_date": "must not be after `end_date`",
    }
)
SESSION_WRITE = unstated({"video_id": EXISTS})
ENROL = unstated({"student_id": EXISTS})
CHECK_MANY = unstated({"items[].student_id": ENROLLED, "items[].checked_at": PAST})
CHECK_ONE = unstated({"student_id": ENROLLED, "checked_at": PAST})
REPORT = unstated({"to": "must not be before `from`"})
EXAM_WRITE = unstated(
    {
        "max_score": MONEY,
        "question_count": "required with an `answer_key`, and at least its length",
        "answer_key": "as many answers as `question_count`",
    }
)
SCORE_ONE = unstated({"student_id": ENROLLED, "score": SCORE})
SCORE_MANY = unstated({"[].student_id": ENROLLED, "[].score": SCORE})
ACCOUNT_CREATE = unstated(
    {
        "student_id": f"only for a student account, and {EXISTS}",
        "guardian_id": f"only for a parent account, and {EXISTS}",
    }
)
SENDER = unstated({"phone": PHONE})
TEMPLATE_WRITE = unstated(
    {
        "kakao_template_id": "required for an Alimtalk template",
        "advertising": "not for an Alimtalk template",
        "body": SMS_TEXT,
        "subject": SMS_TEXT,
    }
)
MESSAGING_SETTINGS = unstated(
    {
        "opt_out_number": "a Korean 080 opt-out number",
        "credentials": "the keys the chosen `provider` needs (SOLAPI: `api_key` and `api_secret`)",
    }
)
SEND = unstated(
    {
        "template_id": f"give a `template_id` or a `text`, not both; {EXISTS}",
        "sender_id": EXISTS,
        "target": f"ids that exist in this academy ({EXISTS}); recipients' phones {MOBILE}",
        "template": f"renders for every recipient within the channel's length; {SMS_TEXT}",
        "/problems/messaging-no-sender": "the academy has registered a sender number",
    }
)
ROSTER_UPLOAD = unstated(
    {"file": "an Excel workbook (.xlsx, .xls) or a CSV/text file", "lecture_ids": EXISTS}
)
ATTENDANCE_EXPORT = unstated(
    {"lecture_id": EXISTS, "date_to": "must not be before `date_from`, at most a year after it"}
)
OMR_TEMPLATE_WRITE = unstated({"spec": LAYOUT})
OMRCHECKER_IMPORT = unstated(
    {"template": "an OMRChecker template.json it can read", "evaluation": "an OMRChecker "
     "evaluation.json it can read", "student_field": "a field or custom label of the template",
     "config": "an OMRChecker config.json it can read",
     "marker_images": "each a marker image the template names"}
)  # fmt: skip
EXAM_OMR = unstated(
    {"template_id": EXISTS, "marking": "a marking scheme for the exam's questions",
     "answer_key": "as many answers as the exam's questions"}
)  # fmt: skip
EVALUATION_IMPORT = unstated(
    {"evaluation": "an OMRChecker evaluation.json with its answers (answers_in_order, a CSV "
     "or a key sheet)"}
)  # fmt: skip
VIDEO_CREATE = unstated(
    {
        "lecture_id": f"give a `lecture_id` or a `session_id`; {EXISTS}",
        "session_id": EXISTS,
    }
)
HEARTBEAT = unstated(
    {"position": "a finite number", "played[]": "finite, and `start` not after `end`"}
)
PAGE_REVIEW = unstated({"student_id": ENROLLED})
UPLOAD_COMPLETE = unstated(
    {"parts": "required for a multipart upload: every part's number and ETag"}
)
