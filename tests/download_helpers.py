"""A local HTTP file server with faults on demand, and archives in the real upstream layouts."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
import tarfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

DATA_PETS = Path(__file__).parent / "data" / "pets-sample"


@dataclass
class Request:
    path: str
    range: str | None
    status: int


@dataclass
class FileServer:
    """Serves `files` (URL path -> bytes). Faults are set per path by the test."""

    files: dict[str, bytes] = field(default_factory=dict)
    range_support: bool = True
    cut_after: dict[str, int] = field(default_factory=dict)  # send N bytes once, then drop the connection
    fail_first: dict[str, int] = field(default_factory=dict)  # answer 500 this many times first
    trickle: float = 0.0  # seconds between 16 KiB chunks (to interrupt a transfer)
    # Hostile bodies, each bounded so the server stops by itself whatever the client does:
    endless: dict[str, int | None] = field(default_factory=dict)  # path -> Content-Length to announce (None: none);
    endless_cap: int = 8 << 20  # then zeros until the client hangs up or this many bytes went
    drip: dict[str, float] = field(default_factory=dict)  # path -> seconds between single bytes of the real body,
    drip_for: float = 3.0  # for at most this long per request, then the connection is cut
    requests: list[Request] = field(default_factory=list)
    url: str = ""

    def hits(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]


def _handler(server: FileServer):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep the test output clean
            pass

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            wanted = self.headers.get("Range")
            if path in server.endless:
                return self._endless(path, wanted, server.endless[path])
            if path not in server.files:
                return self._status(path, wanted, 404)
            if server.fail_first.get(path, 0) > 0:
                server.fail_first[path] -= 1
                return self._status(path, wanted, 500)
            body = server.files[path]
            start = 0
            if wanted and server.range_support:
                start = int(wanted.split("=")[1].split("-")[0])
                if start >= len(body):
                    return self._status(path, wanted, 416)
            server.requests.append(Request(path, wanted, 206 if start else 200))
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            if server.range_support:
                self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            payload = body[start:]
            cut = server.cut_after.pop(path, None)
            if cut is not None:
                payload = payload[:cut]
            if path in server.drip:
                return self._drip(payload, server.drip[path])
            try:
                for offset in range(0, len(payload), 16384):
                    self.wfile.write(payload[offset:offset + 16384])
                    if server.trickle:
                        self.wfile.flush()
                        time.sleep(server.trickle)
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.close_connection = True

        def _endless(self, path, wanted, announce):
            server.requests.append(Request(path, wanted, 200))
            self.send_response(200)
            if announce is not None:
                self.send_header("Content-Length", str(announce))
            self.end_headers()  # no length: the body ends when the connection closes (HTTP/1.0)
            block = bytes(65536)
            try:
                for _ in range(server.endless_cap // len(block)):
                    self.wfile.write(block)
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.close_connection = True

        def _drip(self, payload: bytes, interval: float):
            stop = time.monotonic() + server.drip_for
            try:
                for offset in range(len(payload)):
                    if time.monotonic() > stop:
                        break
                    self.wfile.write(payload[offset:offset + 1])
                    self.wfile.flush()
                    time.sleep(interval)
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.close_connection = True

        def _status(self, path, wanted, code):
            server.requests.append(Request(path, wanted, code))
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


class ServerThread:
    def __init__(self, state: FileServer):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
        self.httpd.daemon_threads = True
        state.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


# Files in the upstream layouts --------------------------------------------------------------


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def idx_gz(array: np.ndarray) -> bytes:
    from cnnkit.data.idx import encode_idx

    return gzip.compress(encode_idx(array), mtime=0)


def fake_mnist_train(count: int = 40, seed: int = 0) -> dict[str, bytes]:
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3-ubyte.gz": idx_gz(rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)),
        "train-labels-idx1-ubyte.gz": idx_gz(rng.integers(0, 10, count, dtype=np.uint8)),
    }


def cifar_tarball(per_batch: int = 8, seed: int = 0) -> tuple[bytes, dict[str, str]]:
    """cifar-10-python.tar.gz with cifar-10-batches-py/ pickles of synthetic pixels; and each member's MD5."""
    rng = np.random.default_rng(seed)
    members = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            "batch_label": name, "labels": rng.integers(0, 10, per_batch).tolist(),
            "data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            "filenames": [f"img_{i}.png" for i in range(per_batch)],
        }
        members[name] = pickle.dumps(batch)
    members["batches.meta"] = pickle.dumps({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog",
                                                            "frog", "horse", "ship", "truck"], "num_vis": 3072})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue(), {name: md5(data) for name, data in members.items()}


def pets_zip(pets_dir: Path, extra: dict[str, bytes] | None = None) -> bytes:
    """A PetImages zip like Microsoft's: PetImages/{Cat,Dog}/N.jpg plus a readme and Thumbs.db."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("readme[1].txt", "Cats and dogs sample for tests\n")
        for image in sorted(pets_dir.rglob("*.jpg")):
            zf.write(image, f"PetImages/{image.relative_to(pets_dir).as_posix()}")
        zf.writestr("PetImages/Cat/Thumbs.db", b"\0" * 64)
        for name, data in (extra or {}).items():
            zf.writestr(f"PetImages/{name}", data)
    return buffer.getvalue()


def many_empty_members_zip(path: Path, count: int, prefix: str = "top/") -> Path:
    """A real zip (zip64 end records past 65,535) of `count` empty stored members, written in a fraction of a second."""
    local, central, offset = [], [], 0
    for i in range(count):
        name = f"{prefix}{i}.jpg".encode()
        local.append(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0x21, 0, 0, 0, len(name), 0) + name)
        central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0x21, 0, 0, 0, len(name),
                                   0, 0, 0, 0, 0, offset) + name)
        offset += len(local[-1])
    directory = b"".join(central)
    zip64_end = struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count, len(directory), offset)
    locator = struct.pack("<IIQI", 0x07064B50, 0, offset + len(directory), 1)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, len(directory), offset, 0)
    path.write_bytes(b"".join(local) + directory + zip64_end + locator + end)
    return path

