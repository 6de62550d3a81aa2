"""Hypothesis settings for the fuzz tests: short and repeatable in `make test`, long and random in `make fuzz`."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

FUZZ_ENV = "SWITCHYARD_FUZZ"  # set by `make fuzz`


def fuzz_settings(short: int, long: int) -> settings:
    """`short` examples per test, derandomized (the same ones every run), or `long` random ones under `make fuzz`."""
    fuzzing = bool(os.environ.get(FUZZ_ENV))
    return settings(
        max_examples=long if fuzzing else short,
        derandomize=not fuzzing,
        database=None,
        deadline=None,  # a shared two-core machine: timing says nothing here
        suppress_health_check=list(HealthCheck),
        print_blob=fuzzing,
    )
