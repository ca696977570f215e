"""Migrator: the Django project (settings, urls) and the engine (storage, engine, acl),
which imports no Django."""
