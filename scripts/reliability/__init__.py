"""Shared helpers of the reliability suites: hostile input (`make fuzz`), path attacks, security.

Imported as `scripts.reliability` by the tests and as `reliability` by `scripts/fuzz.py`; the
modules import each other relatively so both work. `agent_runner.py` runs as its own process.
"""
