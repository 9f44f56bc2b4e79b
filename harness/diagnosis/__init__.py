"""What a failing implementation got wrong: known bug patterns (signatures) tried against its
outputs on the smallest case that still fails, and experiments over several calls
(harness.diagnosis.diagnose)."""
