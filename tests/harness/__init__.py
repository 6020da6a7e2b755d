"""Test harness shared by the integration and fault tests (importable as ``harness``)."""
