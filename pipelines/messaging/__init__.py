"""Messaging domain logic (SMS/LMS and KakaoTalk Alimtalk to guardians), importable without
a broker, a web server or a database: byte counting and channel choice (``text``),
templates (``templates``), the advertising rules (``policy``), prices (``cost``),
credentials at rest (``secrets``), webhook signatures (``signing``) and the providers behind
one interface (``providers``)."""
