"""Messaging domain logic (SMS/LMS and KakaoTalk Alimtalk to guardians), importable without
a broker, a web server or a database: byte counting and channel choice (``text``),
templates (``templates``), composing a message per recipient (``compose``), message rows
and their idempotency keys (``rows``), an academy's settings (``config``), automatic
notices (``notices``), the advertising rules (``policy``), prices (``cost``), credentials
at rest (``credentials``), webhook signatures (``signing``) and the providers behind one
interface (``providers``)."""
