"""Reading image bytes from wherever a path points: local/FUSE paths, file: URIs, fsspec URLs.

Every failure is a ``SourceError`` with a stable status code and a message naming the path;
the caller turns it into a result row. The codes:

* ``invalid_path``: not a non-empty string, or not a valid path (e.g. a NUL byte);
* ``missing_file``: nothing at that path;
* ``is_directory``: the path is a folder;
* ``file_too_large``: more bytes than the limit (checked before reading);
* ``unsupported_source``: no fsspec filesystem for the URL scheme (package not installed), or a
  ``file://`` URI naming another host;
* ``read_error``: anything else the filesystem reported, with its type and text.

How a path is read:

* plain paths (``/dbfs/...``, ``/Volumes/...`` and other FUSE mounts included) are opened
  as they are: a literal ``%``, ``#`` or ``:`` in a file name is part of the name;
* ``file:`` URIs (``file:///x``, ``file://localhost/x`` and Spark's ``file:/x``) are
  percent-decoded, because that is how a URI spells a space or a ``#``;
* any other ``scheme://`` goes through fsspec (``s3://`` needs ``s3fs``, ``gs://`` ``gcsfs``).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from urllib.parse import unquote

INVALID_PATH = "invalid_path"
MISSING_FILE = "missing_file"
IS_DIRECTORY = "is_directory"
FILE_TOO_LARGE = "file_too_large"
UNSUPPORTED_SOURCE = "unsupported_source"
READ_ERROR = "read_error"

# "s3://", "gs://", "abfss://", "memory://": a scheme of 2+ characters (so Windows drive letters
# like "C:" are never taken for one).
_URL_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]+)://")
# Spark writes local files as "file:/path" (one slash, no authority); RFC 8089 allows it too.
_SHORT_FILE_URI = re.compile(r"^file:/(?!/)", re.IGNORECASE)
_LOCAL_HOSTS = ("", "localhost")


class SourceError(Exception):
    """An image could not be used: reading its bytes failed here, or decoding them failed in
    ``udfs.images.prepare``; ``code`` is the row's status, ``message`` names the file."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def url_scheme(path: str) -> str | None:
    """The URL scheme of ``path`` in lower case (``'s3'``), or None for a plain local path.

    Example:
        >>> url_scheme("s3://bucket/a.jpg"), url_scheme("file:/tmp/a.jpg"), url_scheme("/a:b")
        ('s3', 'file', None)
    """
    if _SHORT_FILE_URI.match(path):
        return "file"
    match = _URL_SCHEME.match(path)
    return match.group(1).lower() if match else None


def local_path(path: str) -> Path | None:
    """The local filesystem path for plain paths and ``file:`` URIs, else None.

    Only ``file:`` URIs are percent-decoded: a plain path may contain a literal '%'. In a URI,
    '#' and '?' are taken as part of the file name (a file URI has no use for a fragment or a
    query, and people build them by pasting a path after ``file://``).

    Example:
        >>> local_path("file:///tmp/a%20b.jpg"), local_path("/tmp/100%.jpg")
        (PosixPath('/tmp/a b.jpg'), PosixPath('/tmp/100%.jpg'))

    Raises:
        SourceError: ``unsupported_source`` for a ``file://host/...`` URI naming another host.
    """
    scheme = url_scheme(path)
    if scheme is None:
        return Path(path)
    if scheme != "file":
        return None
    rest = path[len("file:"):]
    if rest.startswith("//"):
        authority, _, tail = rest[2:].partition("/")
        if authority.lower() not in _LOCAL_HOSTS:
            raise SourceError(
                UNSUPPORTED_SOURCE,
                f"{path}: file URI names host {authority!r}; only local files can be read",
            )
        rest = "/" + tail
    return Path(unquote(rest))


def require_protocol(scheme: str) -> None:
    """Raise a clear ImportError when no fsspec filesystem is installed for ``scheme``.

    Meant for the driver, before a job starts, so that a missing ``s3fs`` fails once and early
    instead of on every row.

    Example:
        >>> require_protocol("memory")  # built into fsspec: returns None

    Raises:
        ImportError: naming the protocol and, where fsspec knows it, the package to install.
    """
    try:
        import fsspec
    except ImportError as err:  # pragma: no cover - fsspec is a core dependency
        raise ImportError("reading URLs needs fsspec: pip install fsspec") from err
    try:
        fsspec.get_filesystem_class(scheme)
    except (ImportError, ValueError) as err:
        raise ImportError(protocol_hint(scheme, err)) from err


def protocol_hint(scheme: str, err: BaseException) -> str:
    """Why ``scheme://`` paths cannot be read, and what to install, from fsspec's registry."""
    from fsspec.registry import known_implementations

    known = known_implementations.get(scheme)
    if known is None:
        return f"'{scheme}://' is not a protocol fsspec knows ({err})"
    package = known["class"].split(".", 1)[0]
    return (
        f"no filesystem for '{scheme}://' paths: package '{package}' is not installed "
        f"(pip install {package}); fsspec says: {err}"
    )


def read_bytes(path: str, max_bytes: int) -> bytes:
    """Read a whole file, refusing files larger than ``max_bytes``.

    Example:
        >>> read_bytes("memory://nothing/here.jpg", 1000)
        Traceback (most recent call last):
        ...
        udfs.images.sources.SourceError: memory://nothing/here.jpg: no such file

    Raises:
        SourceError: codes ``invalid_path``, ``missing_file``, ``is_directory``,
            ``file_too_large``, ``unsupported_source`` or ``read_error``.
    """
    if not isinstance(path, str) or not path:
        raise SourceError(INVALID_PATH, f"path must be a non-empty string, got {path!r}")
    local = local_path(path)
    if local is not None:
        return _read_local(local, path, max_bytes)
    return _read_fsspec(path, max_bytes)


def _read_local(local: Path, shown: str, max_bytes: int) -> bytes:
    try:
        info = os.stat(local)
        if stat.S_ISDIR(info.st_mode):
            raise SourceError(IS_DIRECTORY, f"{shown}: is a directory, not an image file")
        if not stat.S_ISREG(info.st_mode):
            # A FIFO or device would block or never end; only regular files hold images.
            raise SourceError(READ_ERROR, f"{shown}: not a regular file")
        if info.st_size > max_bytes:
            raise SourceError(FILE_TOO_LARGE, f"{shown}: {info.st_size} bytes > limit {max_bytes}")
        with open(local, "rb") as handle:
            return handle.read(max_bytes + 1)
    except (FileNotFoundError, NotADirectoryError) as err:
        raise SourceError(MISSING_FILE, f"{shown}: no such file ({err.strerror})") from None
    except IsADirectoryError:
        raise SourceError(IS_DIRECTORY, f"{shown}: is a directory, not an image file") from None
    except OSError as err:
        raise SourceError(READ_ERROR, f"{shown}: {type(err).__name__}: {err}") from None
    except ValueError as err:  # os.stat refuses embedded NUL bytes with ValueError
        raise SourceError(INVALID_PATH, f"{shown!r}: not a valid path ({err})") from None


def _read_fsspec(url: str, max_bytes: int) -> bytes:
    scheme = url_scheme(url) or "?"
    try:
        import fsspec

        fs, fs_path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as err:
        raise SourceError(UNSUPPORTED_SOURCE, f"{url}: {protocol_hint(scheme, err)}") from None
    except Exception as err:  # noqa: BLE001 - e.g. credentials checked when the fs is made
        raise SourceError(READ_ERROR, f"{url}: {type(err).__name__}: {err}") from None
    try:
        info = fs.info(fs_path)
        if info.get("type") == "directory":
            raise SourceError(IS_DIRECTORY, f"{url}: is a directory, not an image file")
        size = info.get("size")
        if size is not None and size > max_bytes:
            raise SourceError(FILE_TOO_LARGE, f"{url}: {size} bytes > limit {max_bytes}")
        with fs.open(fs_path, "rb") as handle:
            return handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise SourceError(MISSING_FILE, f"{url}: no such file") from None
    except SourceError:
        raise
    except Exception as err:  # noqa: BLE001 - filesystems raise their own types; keep the cause
        raise SourceError(READ_ERROR, f"{url}: {type(err).__name__}: {err}") from None


def content_sha256(path: str, max_bytes: int) -> str | None:
    """sha256 hex digest of the file's bytes, or None when it cannot be read (the describe
    job reports the read error for that row; ingest only records that no hash is known)."""
    import hashlib

    try:
        return hashlib.sha256(read_bytes(path, max_bytes)).hexdigest()
    except SourceError:
        return None
