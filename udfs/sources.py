"""Reading image bytes from wherever a path points: local/FUSE paths, file:// URIs, fsspec URLs.

Every failure is a ``SourceError`` with a stable status code and a message naming the path;
the caller turns it into a result row.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

# "s3://", "gs://", "abfss://", "memory://": a scheme of 2+ characters (so Windows drive letters
# like "C:" are never taken for one). file:// is handled locally.
_URL_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]+)://")


class SourceError(Exception):
    """Reading the bytes failed; ``code`` is the row's status."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def url_scheme(path: str) -> str | None:
    """The URL scheme of ``path`` (``'s3'``), or None for a plain local path."""
    match = _URL_SCHEME.match(path)
    return match.group(1).lower() if match else None


def local_path(path: str) -> Path | None:
    """The local filesystem path for plain paths and file:// URIs, else None.

    Only file:// URIs are percent-decoded: a plain path may contain a literal '%'.
    """
    scheme = url_scheme(path)
    if scheme is None:
        return Path(path)
    if scheme == "file":
        return Path(unquote(urlsplit(path).path))
    return None


def require_protocol(scheme: str) -> None:
    """Raise a clear ImportError when no fsspec filesystem is installed for ``scheme``.

    Meant for the driver, before a job starts, so that a missing ``s3fs`` fails once and early
    instead of on every row.
    """
    try:
        import fsspec
    except ImportError as err:  # pragma: no cover - fsspec is a core dependency
        raise ImportError("reading URLs needs fsspec: pip install fsspec") from err
    try:
        fsspec.get_filesystem_class(scheme)
    except (ImportError, ValueError) as err:
        raise ImportError(f"no filesystem for '{scheme}://' paths: {err}") from err


def read_bytes(path: str, max_bytes: int) -> bytes:
    """Read a whole file, refusing files larger than ``max_bytes``.

    Raises:
        SourceError: codes ``missing_file``, ``is_directory``, ``file_too_large``,
            ``unsupported_source`` (no filesystem for the URL scheme) or ``read_error``.
    """
    if not isinstance(path, str) or not path:
        raise SourceError("invalid_path", f"path must be a non-empty string, got {path!r}")
    local = local_path(path)
    if local is not None:
        return _read_local(local, path, max_bytes)
    return _read_fsspec(path, max_bytes)


def _read_local(local: Path, shown: str, max_bytes: int) -> bytes:
    try:
        size = os.stat(local).st_size
        if local.is_dir():
            raise SourceError("is_directory", f"{shown}: is a directory, not an image file")
        if size > max_bytes:
            raise SourceError("file_too_large", f"{shown}: {size} bytes > limit {max_bytes}")
        with open(local, "rb") as handle:
            return handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise SourceError("missing_file", f"{shown}: no such file") from None
    except IsADirectoryError:
        raise SourceError("is_directory", f"{shown}: is a directory, not an image file") from None
    except OSError as err:
        raise SourceError("read_error", f"{shown}: {type(err).__name__}: {err}") from None


def _read_fsspec(url: str, max_bytes: int) -> bytes:
    scheme = url_scheme(url) or "?"
    try:
        import fsspec

        fs, fs_path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as err:
        raise SourceError(
            "unsupported_source", f"{url}: no filesystem for '{scheme}://' ({err})"
        ) from None
    try:
        info = fs.info(fs_path)
        if info.get("type") == "directory":
            raise SourceError("is_directory", f"{url}: is a directory, not an image file")
        size = info.get("size")
        if size is not None and size > max_bytes:
            raise SourceError("file_too_large", f"{url}: {size} bytes > limit {max_bytes}")
        with fs.open(fs_path, "rb") as handle:
            return handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise SourceError("missing_file", f"{url}: no such file") from None
    except SourceError:
        raise
    except Exception as err:  # noqa: BLE001 - filesystems raise their own types; keep the cause
        raise SourceError("read_error", f"{url}: {type(err).__name__}: {err}") from None
