"""Sync stage: keep features folders and indexes in step with the images' source; erase films.

Light on purpose: import the job modules (``sync.erase``) where they are needed.
"""
