"""Real servers the suite starts itself on loopback, once per run, stopped by their own PID.

Each module is a pytest plugin (listed in tests/conftest.py) providing session fixtures.
"""
