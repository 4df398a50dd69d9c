"""Test-time evaluation: multi-view clips, the test report (tables, per-gloss CSV) and its plots."""
