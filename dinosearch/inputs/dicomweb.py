"""A DICOMweb archive (PACS) as an image source: QIDO-RS lists instances, WADO-RS fetches each one.

``--images "dicomweb+http://HOST:PORT/dicom-web?Modality=CR&Modality=DX&StudyDate=20240101-"``:
the query part is QIDO-RS search filters (a repeated key is a list match, sent as ``CR,DX``). Each
instance becomes one record: ``id`` = SOP Instance UID, ``path`` = its WADO-RS URL with the
``dicomweb+`` prefix, and metadata columns from its DICOM attributes (``dicom_metadata``).
``read_image`` fetches such a path inside the loader's workers (one request at a time per worker,
so concurrency is bounded by ``--workers``), with timeouts and retries with back-off on 5xx and
dropped connections. Credentials come only from the environment (``CREDENTIAL_HELP``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import cache
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import pandas as pd

from dinosearch.core.env import VARIABLES, env_float, env_str
from dinosearch.inputs.errors import ArchiveError, ImageReadError

SCHEME = "dicomweb+"
TOKEN_ENV = "DINOSEARCH_DICOMWEB_TOKEN"
USER_ENV, PASSWORD_ENV = "DINOSEARCH_DICOMWEB_USER", "DINOSEARCH_DICOMWEB_PASSWORD"
TIMEOUT_ENV, RETRIES_ENV = "DINOSEARCH_DICOMWEB_TIMEOUT", "DINOSEARCH_DICOMWEB_RETRIES"
CREDENTIAL_HELP = f"set {TOKEN_ENV} (bearer token) or {USER_ENV} and {PASSWORD_ENV} (basic auth)"
PAGE = 1000  # QIDO-RS results per request
ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
# (DICOM keyword, metadata column): the attributes every record carries; patient_id is the group
COLUMNS = (
    ("StudyInstanceUID", "StudyInstanceUID"),
    ("SeriesInstanceUID", "SeriesInstanceUID"),
    ("Modality", "Modality"),
    ("ViewPosition", "view"),
    ("BodyPartExamined", "BodyPartExamined"),
    ("ImageLaterality", "ImageLaterality"),
    ("PatientSex", "PatientSex"),
    ("PatientAge", "PatientAge"),
    ("StudyDate", "StudyDate"),
    ("PatientID", "patient_id"),
)


def is_dicomweb(text: str) -> bool:
    return text.startswith((SCHEME + "http://", SCHEME + "https://"))


def parse_url(url: str) -> tuple[str, dict[str, str]]:
    """``dicomweb+http://h/dicom-web?A=1&A=2&B=3`` → (``http://h/dicom-web``, {A: "1,2", B: "3"})."""
    if not is_dicomweb(url):
        raise ValueError(
            f"{url!r}: a DICOMweb source starts with dicomweb+http:// or dicomweb+https://"
        )
    parts = urlsplit(url[len(SCHEME) :])
    if parts.username or parts.password or "@" in parts.netloc:
        raise ValueError(
            f"a DICOMweb URL must not hold credentials (user:pass@); {CREDENTIAL_HELP}"
        )
    filters: dict[str, list[str]] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        filters.setdefault(key, []).append(value)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
    return base, {k: ",".join(v) for k, v in filters.items()}


def timeout() -> float:
    """Seconds to connect and between bytes of an answer (``DINOSEARCH_DICOMWEB_TIMEOUT``, 30)."""
    return env_float(TIMEOUT_ENV) or float(VARIABLES[TIMEOUT_ENV].default or 30)


@cache
def _session(pid: int) -> Any:
    """A requests session for this process (workers get their own): auth from the environment,
    retries with exponential back-off on 5xx, refused and dropped connections."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    session = requests.Session()
    token = env_str(TOKEN_ENV)
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    elif user := env_str(USER_ENV):
        session.auth = (user, env_str(PASSWORD_ENV) or "")
    retries = int(env_float(RETRIES_ENV))
    retry = Retry(
        total=retries,
        backoff_factor=0.2,
        status_forcelist=(500, 502, 503, 504),
        allowed_methods=frozenset({"GET"}),
        raise_on_status=False,
    )
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _get(url: str, params: dict[str, Any] | None = None, accept: str = "") -> Any:
    """GET ``url``: the response, or ArchiveError (401/403, 5xx, down, timed out) in one line."""
    import requests

    try:
        response = _session(os.getpid()).get(
            url, params=params, headers={"Accept": accept} if accept else {}, timeout=timeout()
        )
    except requests.RequestException as e:  # refused, dropped, timed out, retries exhausted
        if isinstance(e, requests.Timeout) or "timed out" in str(e).lower():
            raise ArchiveError(
                f"{url.split('?')[0]}: no answer within {timeout():g} s ({TIMEOUT_ENV}); "
                "is the archive overloaded?"
            ) from e
        raise ArchiveError(
            f"{url.split('?')[0]}: archive unreachable ({type(e).__name__}); start it and run "
            "again (embed: with --resume)"
        ) from e
    if response.status_code in (401, 403):
        given = TOKEN_ENV if env_str(TOKEN_ENV) else USER_ENV if env_str(USER_ENV) else ""
        why = f"the credentials in {given} were refused" if given else CREDENTIAL_HELP
        raise ArchiveError(f"{url.split('?')[0]}: {response.status_code} from the archive; {why}")
    if response.status_code >= 500:
        raise ArchiveError(
            f"{url.split('?')[0]}: the archive answered {response.status_code} after retries; "
            "run again later (embed: with --resume)"
        )
    return response


def iter_instances(url: str, page: int = PAGE) -> Iterator[dict[str, Any]]:
    """QIDO-RS ``/instances`` results (DICOM JSON) page by page (limit/offset)."""
    base, filters = parse_url(url)
    fields = [keyword for keyword, _ in COLUMNS] + ["SOPInstanceUID"]
    offset = 0
    while True:
        params = {**filters, "includefield": fields, "limit": page, "offset": offset}
        # Orthanc 1.10 matches QIDO values without percent-decoding them: keep ':' '*' ',' as is
        query = urlencode(params, doseq=True, safe=":*,^", quote_via=quote)
        response = _get(f"{base}/instances?{query}", accept="application/dicom+json")
        if response.status_code == 204:
            return
        if not response.ok:
            raise ArchiveError(
                f"{base}/instances: QIDO-RS answered {response.status_code}; "
                "check the filters in the URL"
            )
        items = response.json()
        yield from items
        if len(items) < page:
            return
        offset += len(items)


def dicom_metadata(ds: Any) -> dict[str, str]:
    """Metadata columns of one instance from a pydicom Dataset (a file's header or QIDO JSON)."""
    row = {}
    for keyword, column in COLUMNS:
        value = ds.get(keyword, "")
        row[column] = "" if value is None else str(value)
    return row


def load_archive_records(url: str, page: int = PAGE) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Records of every instance the QIDO-RS filters in ``url`` match, ordered by SOP Instance UID."""
    from pydicom import Dataset

    base, _ = parse_url(url)
    rows = []
    for item in iter_instances(url, page):
        ds = Dataset.from_json(item)
        sop = str(ds.get("SOPInstanceUID", ""))
        meta = dicom_metadata(ds)
        if not sop:
            continue
        path = (
            f"{SCHEME}{base}/studies/{quote(meta['StudyInstanceUID'])}/series/"
            f"{quote(meta['SeriesInstanceUID'])}/instances/{quote(sop)}"
        )
        rows.append({"id": sop, "path": path, **meta})
    columns = ["id", "path"] + [column for _, column in COLUMNS]
    records = pd.DataFrame(rows, columns=columns).drop_duplicates("id")
    skipped = pd.DataFrame({"path": pd.Series(dtype=str), "reason": pd.Series(dtype=str)})
    return records.sort_values("id", kind="stable").reset_index(drop=True), skipped


def fetch_bytes(path: str) -> bytes:
    """The DICOM file behind a record's ``dicomweb+…/instances/UID`` path (WADO-RS)."""
    url = path[len(SCHEME) :] if path.startswith(SCHEME) else path
    response = _get(url, accept=ACCEPT)
    if response.status_code == 404:
        raise ImageReadError(path, "the archive no longer has this instance (404)")
    if not response.ok:
        raise ImageReadError(path, f"WADO-RS answered {response.status_code}")
    parts = _multipart(response.headers.get("Content-Type", ""), response.content)
    if not parts:
        raise ImageReadError(path, "WADO-RS answer holds no DICOM part")
    return parts[0]


def _multipart(content_type: str, body: bytes) -> list[bytes]:
    """The parts of a ``multipart/related`` body (a single-part answer is returned as is).

    Split on the boundary without copying through a MIME parser: films are megabytes.
    """
    kind, *params = [p.strip() for p in content_type.split(";")]
    if not kind.lower().startswith("multipart/"):
        return [body] if body else []
    boundary = next(
        (v.strip('"') for k, _, v in (p.partition("=") for p in params) if k.lower() == "boundary"),
        None,
    )
    if not boundary:
        return []
    parts = []
    for chunk in body.split(b"--" + boundary.encode())[1:]:
        if chunk.startswith(b"--"):  # the closing delimiter
            break
        head_end = chunk.find(b"\r\n\r\n")
        if head_end >= 0:
            parts.append(chunk[head_end + 4 : -2 if chunk.endswith(b"\r\n") else None])
    return parts


def fetch_instance(url: str, uid: str) -> bytes:
    """The DICOM file of the instance with SOP Instance UID ``uid``, or the first instance of the
    study with Study Instance UID ``uid``, from the archive at ``url`` (ValueError if neither)."""
    base, _ = parse_url(url.split("?")[0])
    for key in ("SOPInstanceUID", "StudyInstanceUID"):
        found = next(iter_instances(f"{SCHEME}{base}?{key}={quote(uid)}", page=1), None)
        if found is not None:
            from pydicom import Dataset

            ds = Dataset.from_json(found)
            path = (
                f"{base}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/"
                f"instances/{ds.SOPInstanceUID}"
            )
            return fetch_bytes(path)
    raise ValueError(f"{uid!r}: no study or instance with this UID in {base}; check the UID")
