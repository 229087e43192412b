"""Sync stage: keep features folders and indexes in step with the images' source (a PACS: the
``archive`` job); erase films (``erase``).

Light on purpose: import the job modules (``sync.archive``, ``sync.erase``) where they are needed.
"""
