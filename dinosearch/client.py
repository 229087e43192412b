"""``dinosearch.client``: the Python client of ``dinosearch serve`` (see ``dinosearch.serve.client``)."""

from dinosearch.serve.client import API_KEY_ENV, Client, ServerError, ServerUnreachable

__all__ = ["API_KEY_ENV", "Client", "ServerError", "ServerUnreachable"]
