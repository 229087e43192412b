"""A real Orthanc with the DICOMweb plugin for the tests: own config, 127.0.0.1, free port, temp storage.

``Orthanc.start`` writes a JSON config, starts ``Orthanc CONFIG.json`` as a subprocess and waits
(bounded) for ``/system``; ``stop`` ends it by PID. The storage survives a stop, so a restarted
server on the same folder holds the same films.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import requests

BINARY = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
USER, PASSWORD = "radiologist", "s3cret-test"


def available() -> str | None:
    """None when Orthanc and its DICOMweb plugin are installed, else why not (one line)."""
    if not Path(BINARY).is_file():
        return "Orthanc is not installed (scripts/setup.sh installs it as root)"
    if not PLUGIN.is_file():
        return f"the Orthanc DICOMweb plugin {PLUGIN} is missing (apt-get install orthanc-dicomweb)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Orthanc:
    """One Orthanc server on 127.0.0.1; ``auth=True`` requires HTTP basic auth (USER/PASSWORD)."""

    def __init__(self, folder: Path, *, auth: bool = False, port: int | None = None) -> None:
        self.folder, self.auth = folder, auth
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb(self) -> str:
        """The ``--images`` URL of every instance in this archive."""
        return f"dicomweb+{self.url}/dicom-web"

    def session(self) -> requests.Session:
        s = requests.Session()
        if self.auth:
            s.auth = (USER, PASSWORD)
        return s

    def start(self, timeout: float = 30.0) -> Orthanc:
        config = {
            "Name": "dinosearch-test",
            "StorageDirectory": str(self.folder / "storage"),
            "IndexDirectory": str(self.folder / "index"),
            "HttpPort": self.port,
            "DicomServerEnabled": False,
            "DicomPort": free_port(),
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": self.auth,
            "RegisteredUsers": {USER: PASSWORD} if self.auth else {},
            "Plugins": [str(PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "SaveJobs": False,
            "StableAge": 1,
            "HttpThreadsCount": 8,
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "orthanc.json").write_text(json.dumps(config))
        log = open(self.folder / "orthanc.log", "ab")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            [BINARY, str(self.folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited at start; see {self.folder / 'orthanc.log'}")
            try:
                if self.session().get(f"{self.url}/system", timeout=1).ok:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer /system within {timeout} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def store(self, paths: list[Path]) -> list[str]:
        """Upload DICOM files with ``POST /instances``; returns Orthanc's instance ids."""
        s = self.session()
        ids = []
        for path in paths:
            r = self._post_instance(s, path.read_bytes())
            r.raise_for_status()
            ids.append(r.json()["ID"])
        return ids

    def _post_instance(self, s: requests.Session, data: bytes, tries: int = 3) -> requests.Response:
        """POST /instances, again (at most ``tries`` times) when the connection drops without an
        answer, as Orthanc's HTTP server did once just after a start on a loaded CI machine; a
        repeated store of one instance is harmless ("AlreadyStored")."""
        for attempt in range(1, tries):
            try:
                return s.post(f"{self.url}/instances", data=data, timeout=30)
            except requests.ConnectionError:
                s = self.session()  # a new connection
                time.sleep(0.2 * attempt)
        return s.post(f"{self.url}/instances", data=data, timeout=30)

    def delete_patient(self, patient_id: str) -> None:
        """Delete every study of the patient whose PatientID is ``patient_id``."""
        s = self.session()
        found = s.post(
            f"{self.url}/tools/find",
            json={"Level": "Patient", "Query": {"PatientID": patient_id}},
            timeout=30,
        ).json()
        for orthanc_id in found:
            s.delete(f"{self.url}/patients/{orthanc_id}", timeout=30).raise_for_status()
