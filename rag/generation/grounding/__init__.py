"""Grounded answering: candidate spans from the passages, copy-constrained decoding, verification of
every claim against the passage it cites, and calibrated abstention (issue 14)."""
