"""Serve stage: the HTTP search service (``dinosearch serve``) and its small Python client.

Light on purpose: ``create_app`` (``serve.app``) imports FastAPI, torch and faiss; the client only httpx.
"""
