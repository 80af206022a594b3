"""Receiving an upload: the multipart body streamed straight into its final place, the limit enforced as
bytes arrive (with or without Content-Length).

Each 'files' part is written once, into the adapter folder; an archive part is written once, next to it,
then extracted into the folder and deleted. So an upload takes at most the upload limit on disk plus, for
an archive, its extracted folder (itself bounded by the limit), and never a spooled copy of the body.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import BinaryIO

from fastapi import Request
from python_multipart.multipart import MultipartParser, parse_options_header

from ..errors import BadRequest, PayloadTooLarge
from .archive import extract_archive, is_archive_name

FILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_FIELD_BYTES = 64 * 1024  # the 'labels' text field
ENVELOPE_BYTES = 1024 * 1024  # multipart boundaries and part headers, on top of the files themselves


class _Receiver:
    """multipart callbacks: one part at a time, into its file (or, for 'labels', a small buffer)."""

    def __init__(self, folder: Path, work: Path, max_bytes: int, max_files: int):
        self.folder, self.work, self.max_bytes, self.max_files = folder, work, max_bytes, max_files
        self.total = self.count = 0
        self.archive: Path | None = None
        self.labels: str | None = None
        self._header_field = b""
        self._headers: dict[bytes, bytes] = {}
        self._out: BinaryIO | None = None
        self._field: bytearray | None = None

    def callbacks(self) -> dict:
        return dict(
            on_part_begin=self._begin,
            on_header_field=lambda d, s, e: setattr(self, "_header_field", self._header_field + d[s:e]),
            on_header_value=self._header_value,
            on_header_end=lambda: setattr(self, "_header_field", b""),
            on_headers_finished=self._open,
            on_part_data=self._data,
            on_part_end=self._end,
        )

    def _begin(self) -> None:
        self._headers, self._header_field = {}, b""

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        key = self._header_field.lower()
        self._headers[key] = self._headers.get(key, b"") + data[start:end]

    def _open(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        field = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        if field == "labels" and filename is None:
            self._field = bytearray()
            return
        if field not in ("files", "archive") or filename is None:
            raise BadRequest(
                f"unexpected form field {field!r}; send the adapter's files as parts named "
                "'files' (or one archive), and optionally 'labels'"
            )
        name = filename.decode("utf-8", "replace")
        if not FILE_NAME_RE.match(name):
            raise BadRequest(f"file name {name!r} is not allowed: plain names only, no paths")
        is_archive = field == "archive" or is_archive_name(name)
        if self.archive is not None or (is_archive and self.count):
            raise BadRequest("send either the adapter's files or one archive, not both")
        if self.count + 1 > self.max_files:
            raise BadRequest(f"too many files: the limit is {self.max_files}")
        target = self.work / "upload.archive" if is_archive else self.folder / name
        if target.exists():
            raise BadRequest(f"file {name!r} was sent twice")
        self._out = target.open("wb")
        if is_archive:
            self.archive = target
        else:
            self.count += 1

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._field is not None:
            self._field += data[start:end]
            if len(self._field) > MAX_FIELD_BYTES:
                raise BadRequest(f"the 'labels' field is over {MAX_FIELD_BYTES} bytes")
            return
        self.total += end - start
        if self.total > self.max_bytes:
            raise PayloadTooLarge(f"upload exceeds the limit of {self.max_bytes} bytes")
        self._out.write(data[start:end])

    def _end(self) -> None:
        if self._field is not None:
            self.labels = self._field.decode("utf-8", "replace")
            self._field = None
        if self._out is not None:
            self._out.close()
            self._out = None

    def close(self) -> None:
        if self._out is not None:
            self._out.close()


async def receive_files(request: Request, folder: Path, work: Path, max_bytes: int, max_files: int) -> str | None:
    """The adapter's files into folder (archives extracted safely); returns the 'labels' field, if sent."""
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_bytes + ENVELOPE_BYTES:
        raise PayloadTooLarge(f"upload of {length} bytes exceeds the limit of {max_bytes}")
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise BadRequest("send the adapter as multipart/form-data: parts named 'files', or one archive")
    receiver = _Receiver(folder, work, max_bytes, max_files)
    parser = MultipartParser(boundary, receiver.callbacks())
    body = 0
    try:
        async for chunk in request.stream():
            body += len(chunk)
            if body > max_bytes + ENVELOPE_BYTES:
                raise PayloadTooLarge(f"upload exceeds the limit of {max_bytes} bytes")
            try:
                parser.write(chunk)
            except (BadRequest, PayloadTooLarge):
                raise
            except Exception as e:  # malformed multipart framing
                raise BadRequest(f"could not read the multipart form: {e}; send files as parts named 'files'") from None
        parser.finalize()
    finally:
        receiver.close()
    if receiver.archive is not None:
        await asyncio.to_thread(extract_archive, receiver.archive, folder, max_bytes=max_bytes, max_files=max_files)
        receiver.archive.unlink(missing_ok=True)  # the extracted folder is what is kept
    elif receiver.count == 0:
        raise BadRequest(
            "no files received: send the adapter folder's files as multipart parts named 'files', "
            "or one .tar.gz/.zip archive"
        )
    return receiver.labels
