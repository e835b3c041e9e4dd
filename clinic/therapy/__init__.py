"""Therapy sessions, group attendance and signed progress notes (issue 11).

This increment holds the data model and the services; the pages (and their blueprint,
registered from ``create_app``) come next.
"""
