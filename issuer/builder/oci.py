"""The built image, read from the OCI layout the sandbox exported, as untrusted input.

The layout lies in a directory the build's own code could write to, so it is read the way a
hostile archive would be: every path component opened with ``O_NOFOLLOW`` relative to its
parent (a symlink planted in place of ``blobs`` reaches nothing of the host), only the blobs
the manifest names (digests checked against ``sha256:`` and 64 hex digits before they become
file names), each one's SHA-256 verified as it is copied, JSON documents capped in size.
The archive handed out is written from those verified bytes, with an ``index.json`` of our
own; the manifest's bytes are kept as they are, so its digest is the same in the archive and
in the registry it is pushed to.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

MAX_DOCUMENT = 4 * 1024 * 1024
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_CHUNK = 1024 * 1024


class LayoutError(ValueError):
    """The exported image cannot be used; the message says why."""


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int
    media_type: str


@dataclass(frozen=True)
class Image:
    """A verified image: its manifest's exact bytes, and the blobs it names."""

    manifest: bytes
    media_type: str
    config: Blob
    layers: tuple[Blob, ...]

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.manifest).hexdigest()

    @property
    def blobs(self) -> tuple[Blob, ...]:
        return (self.config, *self.layers)


def _open_under(directory_fd: int, name: str, flags: int) -> int:
    return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=directory_fd)


@contextlib.contextmanager
def _directory(path: Path) -> Iterator[int]:
    """The layout directory, opened without following a link at its last component."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def open_blob(layout: Path, digest: str) -> Iterator[BinaryIO]:
    """A blob file of the layout, opened safely: a regular file under ``blobs/sha256``."""
    if not _DIGEST.match(digest):
        raise LayoutError(f"{digest[:80]!r} is not a sha256 digest")
    with _directory(layout) as root:
        blobs = _open_under(root, "blobs", os.O_RDONLY | os.O_DIRECTORY)
        try:
            algorithm = _open_under(blobs, "sha256", os.O_RDONLY | os.O_DIRECTORY)
        finally:
            os.close(blobs)
        try:
            fd = _open_under(algorithm, digest.removeprefix("sha256:"), os.O_RDONLY)
        except FileNotFoundError:
            raise LayoutError(f"the image has no blob {digest}") from None
        finally:
            os.close(algorithm)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise LayoutError(f"blob {digest} is not a regular file")
    with os.fdopen(fd, "rb") as file:
        yield file


def _read_document(file: BinaryIO, what: str) -> bytes:
    data = file.read(MAX_DOCUMENT + 1)
    if len(data) > MAX_DOCUMENT:
        raise LayoutError(f"the image's {what} is over {MAX_DOCUMENT} bytes")
    return data


def _json(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        raise LayoutError(f"the image's {what} is not JSON") from None
    if not isinstance(value, dict):
        raise LayoutError(f"the image's {what} is not a JSON object")
    return value


def _descriptor(value: object, what: str) -> Blob:
    if not isinstance(value, dict):
        raise LayoutError(f"the image's {what} descriptor is malformed")
    digest, size, media_type = value.get("digest"), value.get("size"), value.get("mediaType")
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise LayoutError(f"the image's {what} has no sha256 digest")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise LayoutError(f"the image's {what} has no size")
    return Blob(digest, size, media_type if isinstance(media_type, str) else "")


def read_image(layout: Path) -> Image:
    """The one image of an OCI layout, its manifest and blobs verified."""
    with _directory(layout) as root:
        fd = _open_under(root, "index.json", os.O_RDONLY)
        with os.fdopen(fd, "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise LayoutError("the image's index is not a regular file")
            index = _json(_read_document(file, "index"), "index")
    manifests = index.get("manifests")
    if not isinstance(manifests, list) or len(manifests) != 1:
        raise LayoutError("the exported layout must hold exactly one image")
    descriptor = _descriptor(manifests[0], "manifest")
    with open_blob(layout, descriptor.digest) as file:
        manifest = _read_document(file, "manifest")
    if "sha256:" + hashlib.sha256(manifest).hexdigest() != descriptor.digest:
        raise LayoutError("the image's manifest does not match its digest")
    body = _json(manifest, "manifest")
    media_type = body.get("mediaType") or descriptor.media_type or OCI_MANIFEST
    if media_type not in (OCI_MANIFEST, DOCKER_MANIFEST):
        raise LayoutError(f"the image's manifest type {str(media_type)[:80]!r} is not supported")
    layers = body.get("layers")
    if not isinstance(layers, list):
        raise LayoutError("the image's manifest lists no layers")
    image = Image(
        manifest=manifest,
        media_type=str(media_type),
        config=_descriptor(body.get("config"), "config"),
        layers=tuple(_descriptor(layer, "layer") for layer in layers),
    )
    for blob in image.blobs:
        verify_blob(layout, blob)
    return image


def verify_blob(layout: Path, blob: Blob) -> None:
    with open_blob(layout, blob.digest) as file:
        digest = hashlib.sha256()
        size = 0
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    if "sha256:" + digest.hexdigest() != blob.digest or size != blob.size:
        raise LayoutError(f"blob {blob.digest} does not match its digest or size")


def write_archive(layout: Path, image: Image, destination: Path, reference: str) -> None:
    """An OCI archive (``oci-archive`` transport) of ``image``: ``oci-layout``, our own
    ``index.json`` naming the manifest (``org.opencontainers.image.ref.name``), and the
    verified blobs."""
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": image.media_type,
                "digest": image.digest,
                "size": len(image.manifest),
                "annotations": {"org.opencontainers.image.ref.name": reference},
            }
        ],
    }
    fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with (
        os.fdopen(fd, "wb") as out,
        tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        _add_bytes(tar, "index.json", json.dumps(index, separators=(",", ":")).encode())
        _add_directory(tar, "blobs")
        _add_directory(tar, "blobs/sha256")
        _add_bytes(tar, "blobs/sha256/" + image.digest.removeprefix("sha256:"), image.manifest)
        for blob in image.blobs:
            with open_blob(layout, blob.digest) as file:
                member = tarfile.TarInfo("blobs/sha256/" + blob.digest.removeprefix("sha256:"))
                member.size = blob.size
                member.mode = 0o644
                tar.addfile(member, file)


def _add_directory(tar: tarfile.TarFile, name: str) -> None:
    member = tarfile.TarInfo(name)
    member.type = tarfile.DIRTYPE
    member.mode = 0o755
    tar.addfile(member)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    member = tarfile.TarInfo(name)
    member.size = len(data)
    member.mode = 0o644
    tar.addfile(member, io.BytesIO(data))
