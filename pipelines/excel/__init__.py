"""Excel (and CSV) enrollment import and export, as pure functions over bytes and frames.

* ``detect``: what a file is, by its content (never by its name).
* ``read``: fastexcel/CSV (UTF-8, CP949, UTF-16 text) into a frame of text cells, the
  header row (or two rows under a merged parent) found by header families below any
  title rows; ``common`` names the fields, the families and the failure codes.
* ``phones``, ``grade`` and ``validate``: vectorised cleaning, the 010 rule, grades,
  per-cell errors and warnings, duplicates.
* ``plan``: verdicts (create / update / unchanged / error) against existing students.
* ``apply``: a chunk of the plan as rows for COPY, guardian relations, and the row errors
  of applying.
* ``workbook``: the error workbook and the export sheets (xlsxwriter).
* ``exports``: the export sheets' columns, Korean headers and labels, and job parameters.

Nothing here touches a database, a queue or storage.
"""

from pipelines.excel.common import ImportFailure

__all__ = ["ImportFailure"]
