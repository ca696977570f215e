"""Scan, plan, copy, verify: plain functions and iterators over Entries. No Django."""
