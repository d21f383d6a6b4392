"""OMR grading: templates (ours and OMRChecker's), alignment, bubble reading with
confidence, OCR of printed digits, scoring, annotated sheets and the built-in card."""
