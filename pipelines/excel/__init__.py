"""Excel (and CSV) enrollment import and export, as pure functions over bytes and frames.

* ``detect``: what a file is, by its content (never by its name).
* ``read``: fastexcel/CSV into a frame of text cells, the header row found by its Korean
  aliases below any title rows.
* ``phones`` and ``validate``: vectorised cleaning, phone normalisation and per-cell errors.
* ``plan``: verdicts (create / update / unchanged / error) against existing students.
* ``apply``: a chunk of the plan cut into the arrays the apply statements take, guardian
  relations, and the row errors of applying.
* ``workbook``: the error workbook and the export sheets (xlsxwriter).
* ``exports``: the export sheets' columns, Korean headers and labels, and job parameters.

Nothing here touches a database, a queue or storage.
"""

from pipelines.excel.common import ImportFailure

__all__ = ["ImportFailure"]
