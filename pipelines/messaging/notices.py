"""Automatic notices from domain events (absence, lateness, a new score, an unwatched video):
which switch turns each on, the text used when the academy has no template of that code,
and the template values of an event, from the facts read afresh when it is dispatched.

An event is only sent while its fact still holds: an absence corrected to present, a score
overwritten or a video watched since gives no values (None), and nothing is sent.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Protocol

from pipelines.messaging.compose import Spec

EVENT_KINDS = ("attendance.absent", "attendance.late", "score.recorded", "video.unwatched")
# Which switch of ``messaging_config`` turns each kind of automatic notice on.
EVENT_SWITCH = {
    "attendance.absent": "auto_absence",
    "attendance.late": "auto_late",
    "score.recorded": "auto_score",
    "video.unwatched": "auto_video_reminder",
}
# Used when the academy has no template of that code.
DEFAULT_NOTICES = {
    "attendance.absent": "[#{학원}] #{학생} 학생이 #{날짜} #{강의} 수업에 결석했습니다.",
    "attendance.late": "[#{학원}] #{학생} 학생이 #{날짜} #{강의} 수업에 지각했습니다.",
    "score.recorded": "[#{학원}] #{학생} 학생의 #{시험} 점수는 #{점수}점(만점 #{만점}점)입니다.",
    "video.unwatched": "[#{학원}] #{학생} 학생이 '#{영상}' 영상을 아직 시청하지 않았습니다. "
    "시청 기한: #{기한}",
}


def default_spec(code: str) -> Spec:
    return Spec(kind="sms", body=DEFAULT_NOTICES[code], code=code)


def korean_date(d: dt.date) -> str:
    return f"{d.month}월 {d.day}일"


def number(value: Any) -> str:
    """A score as people write it: ``87.50`` -> ``87.5``, ``100.00`` -> ``100``."""
    text = f"{value}"
    return text.rstrip("0").rstrip(".") if "." in text else text


class AttendanceFact(Protocol):
    @property
    def status(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def date(self) -> dt.date: ...


class ScoreFact(Protocol):
    @property
    def score(self) -> Decimal: ...
    @property
    def title(self) -> str: ...
    @property
    def max_score(self) -> Decimal: ...


class VideoFact(Protocol):
    @property
    def title(self) -> str: ...
    @property
    def due_date(self) -> dt.date | None: ...
    @property
    def completed(self) -> bool: ...


def attendance_values(
    payload: dict[str, Any], fact: AttendanceFact | None
) -> dict[str, str] | None:
    if fact is None or fact.status != payload["status"]:
        return None
    return {"날짜": korean_date(fact.date), "강의": fact.title}


def score_values(payload: dict[str, Any], fact: ScoreFact | None) -> dict[str, str] | None:
    if fact is None or float(fact.score) != float(payload["score"]):
        return None
    return {"시험": fact.title, "점수": number(fact.score), "만점": number(fact.max_score)}


def video_values(fact: VideoFact | None) -> dict[str, str] | None:
    """Skipped once the student has completed the video, or the video is gone (or has no
    due date any more)."""
    if fact is None or fact.completed or fact.due_date is None:
        return None
    return {"영상": fact.title, "기한": korean_date(fact.due_date)}
