"""Suite-wide set-up: reproducible Hypothesis runs.

The property tests run derandomized by default (the profile ``reproducible``): every run tries
the same examples, so a failure in CI fails again on any machine, and a failing example is
printed with the ``@reproduce_failure`` blob that replays it. ``HYPOTHESIS_PROFILE=explore``
(or pytest's ``--hypothesis-profile explore``) gives a random search, a new one on each run.
Settings given with ``@settings`` on a test (``max_examples``, ``deadline``) apply on top.
"""

from __future__ import annotations

import os

from hypothesis import settings

PROFILE_ENV = "HYPOTHESIS_PROFILE"
DEFAULT_PROFILE = "reproducible"

settings.register_profile(DEFAULT_PROFILE, derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get(PROFILE_ENV, DEFAULT_PROFILE))
