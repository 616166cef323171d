"""How long the fuzz suite runs: a small, fixed budget in every test run, a long one on request.

By default each fuzz test runs its own ``examples`` (a few dozen to a few hundred; the whole
suite stays well under 90 s) with ``derandomize=True``: the same inputs every run, so that CI
is reproducible and a failure shows again on the next run. ``HM_FUZZ_EXAMPLES=N`` runs N
examples per test with fresh random inputs each run (and Hypothesis's example database, so a
failure found once is tried first next time)::

    HM_FUZZ_EXAMPLES=10000 .venv/bin/python -m pytest tests/fuzz -x

``HM_FUZZ_SAVE=1`` writes every input that fails a check to ``tests/fuzz/corpus/<parser>/``
(see ``corpus.py``), to be committed with its fix.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings

F = TypeVar("F", bound=Callable[..., Any])

EXAMPLES = os.environ.get("HM_FUZZ_EXAMPLES", "")
"""Examples per fuzz test when set (a long run, randomised); empty: each test's own budget."""


def fuzz(examples: int) -> Callable[[F], F]:
    """The settings of one fuzz test: ``examples`` inputs (or ``HM_FUZZ_EXAMPLES``), no
    per-example deadline, the health checks that only complain about slow or large inputs off."""
    long_run = EXAMPLES.isascii() and EXAMPLES.isdigit() and int(EXAMPLES) > 0
    kept: dict[str, Any] = {} if long_run else {"database": None}
    return settings(
        max_examples=int(EXAMPLES) if long_run else examples,
        deadline=None,
        derandomize=not long_run,
        print_blob=True,
        **kept,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.large_base_example,
            HealthCheck.function_scoped_fixture,
        ],
    )
