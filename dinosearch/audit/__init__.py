"""Audit stage: exact and near-duplicate films, leaks between splits, label conflicts and outliers.

Light on purpose (``--help`` imports only ``audit.config``); the job is ``audit.run.run_audit``.
"""
