"""Settings for the whole suite."""

from __future__ import annotations

from hypothesis import settings

# Shared 2-core machines stall now and then; a per-example deadline turns that
# into a failure that says nothing about the code. Slow examples still show up
# in the run time.
settings.register_profile("semantica", deadline=None)
settings.load_profile("semantica")
