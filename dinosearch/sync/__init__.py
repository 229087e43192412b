"""Sync stage: keep a features folder and its indexes in step with an image archive (PACS)."""
