"""Where image bytes come from: local and FUSE-like paths, file: URIs, fsspec URLs."""

from __future__ import annotations

import importlib.util
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from udfs.images.sources import (
    SourceError,
    local_path,
    read_bytes,
    require_protocol,
    url_scheme,
)

PAYLOAD = b"\x89PNG not really, only bytes"
# File names that break naive URL handling: each must be read as it is named.
AWKWARD_NAMES = [
    "with space.jpg",
    "hash#tag.jpg",
    "100%.jpg",
    "%20literal.jpg",
    "colon:name.jpg",
    "question?.jpg",
    "ünïcødé 画像.jpg",
]


def _error(path: str, max_bytes: int = 1_000) -> SourceError:
    with pytest.raises(SourceError) as err:
        read_bytes(path, max_bytes)
    return err.value


@pytest.fixture
def memory_dir() -> Iterator[str]:
    """A fresh folder on fsspec's process-wide in-memory filesystem, removed afterwards."""
    fs = fsspec.filesystem("memory")
    root = f"/candid-tests/{uuid.uuid4().hex}"
    fs.mkdir(root)
    yield root
    fs.rm(root, recursive=True)


@pytest.mark.parametrize(
    ("path", "scheme"),
    [
        ("s3://bucket/a.jpg", "s3"),
        ("GS://bucket/a.jpg", "gs"),
        ("memory://x/a.jpg", "memory"),
        ("file:///tmp/a.jpg", "file"),
        ("file:/tmp/a.jpg", "file"),  # Spark's spelling
        ("/tmp/a.jpg", None),
        ("/tmp/a:b.jpg", None),
        ("relative/a.jpg", None),
        ("C:/images/a.jpg", None),  # a drive letter is not a scheme
        ("/dbfs/mnt/images/a.jpg", None),
    ],
)
def test_url_scheme(path: str, scheme: str | None) -> None:
    assert url_scheme(path) == scheme


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/tmp/100%20.jpg", "/tmp/100%20.jpg"),  # plain paths are never decoded
        ("file:///tmp/a%20b.jpg", "/tmp/a b.jpg"),
        ("file://localhost/tmp/a%23b.jpg", "/tmp/a#b.jpg"),
        ("file:/tmp/a%25.jpg", "/tmp/a%.jpg"),
        ("file:///tmp/a#b?.jpg", "/tmp/a#b?.jpg"),  # pasted, unencoded: still the file name
        ("file:///tmp/%E7%94%BB.jpg", "/tmp/画.jpg"),
    ],
)
def test_local_path_decodes_only_file_uris(path: str, expected: str) -> None:
    assert local_path(path) == Path(expected)


def test_local_path_is_none_for_remote_urls() -> None:
    assert local_path("s3://bucket/a.jpg") is None
    assert local_path("memory://a.jpg") is None


def test_file_uri_naming_another_host_is_unsupported() -> None:
    err = _error("file://fileserver/share/a.jpg")
    assert err.code == "unsupported_source"
    assert "fileserver" in err.message


@pytest.mark.parametrize("name", AWKWARD_NAMES)
def test_awkward_local_names_read_as_plain_paths_and_file_uris(tmp_path: Path, name: str) -> None:
    target = tmp_path / "sub dir #1" / name
    target.parent.mkdir()
    target.write_bytes(PAYLOAD)
    assert read_bytes(str(target), 1_000) == PAYLOAD
    # as_uri() percent-encodes: the URI form must find the same file.
    assert read_bytes(target.as_uri(), 1_000) == PAYLOAD


def test_fuse_like_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "Volumes" / "cat").mkdir(parents=True)
    (tmp_path / "Volumes" / "cat" / "a.jpg").write_bytes(PAYLOAD)
    monkeypatch.chdir(tmp_path)
    assert read_bytes("Volumes/cat/a.jpg", 1_000) == PAYLOAD


def test_missing_local_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.jpg")
    err = _error(path)
    assert err.code == "missing_file"
    assert err.message.startswith(path) and "no such file" in err.message


def test_path_through_a_file_is_missing(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(PAYLOAD)
    err = _error(str(tmp_path / "a.jpg" / "b.jpg"))
    assert err.code == "missing_file"


def test_directory(tmp_path: Path) -> None:
    err = _error(str(tmp_path))
    assert err.code == "is_directory"
    assert str(tmp_path) in err.message and "directory" in err.message


def test_file_too_large_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    path.write_bytes(b"x" * 2_000)
    err = _error(str(path), max_bytes=1_999)
    assert err.code == "file_too_large"
    assert "2000 bytes > limit 1999" in err.message
    assert read_bytes(str(path), 2_000) == b"x" * 2_000


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_fifo_is_refused_instead_of_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    err = _error(str(fifo))
    assert err.code == "read_error"
    assert "not a regular file" in err.message


@pytest.mark.parametrize("path", ["", None, 42, "/tmp/nul\x00byte.jpg"])
def test_invalid_paths(path: object) -> None:
    err = _error(path)  # type: ignore[arg-type]
    assert err.code == "invalid_path"


def test_memory_filesystem(memory_dir: str) -> None:
    fs = fsspec.filesystem("memory")
    for name in ("a.jpg", "with space #1.jpg"):
        fs.pipe(f"{memory_dir}/{name}", PAYLOAD)
        assert read_bytes(f"memory://{memory_dir}/{name}", 1_000) == PAYLOAD


def test_memory_filesystem_failures(memory_dir: str) -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe(f"{memory_dir}/big.jpg", b"x" * 50)
    fs.mkdir(f"{memory_dir}/folder")
    fs.pipe(f"{memory_dir}/folder/inside.jpg", PAYLOAD)
    cases = {
        f"memory://{memory_dir}/none.jpg": "missing_file",
        f"memory://{memory_dir}/big.jpg": "file_too_large",
        f"memory://{memory_dir}/folder": "is_directory",
    }
    for url, code in cases.items():
        err = _error(url, max_bytes=10)
        assert (err.code, err.message.split(": ")[0]) == (code, url)


@pytest.mark.parametrize(("scheme", "package"), [("s3", "s3fs"), ("gs", "gcsfs")])
def test_cloud_scheme_without_its_package(scheme: str, package: str) -> None:
    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed here")
    url = f"{scheme}://bucket/images/a.jpg"
    err = _error(url)
    assert err.code == "unsupported_source"
    assert err.message.startswith(url)
    assert f"'{scheme}://'" in err.message and f"pip install {package}" in err.message
    with pytest.raises(ImportError, match=f"pip install {package}") as raised:
        require_protocol(scheme)
    assert f"'{scheme}://'" in str(raised.value)


def test_unknown_scheme() -> None:
    err = _error("nosuchproto://bucket/a.jpg")
    assert err.code == "unsupported_source"
    assert "'nosuchproto://' is not a protocol fsspec knows" in err.message
    with pytest.raises(ImportError, match="nosuchproto"):
        require_protocol("nosuchproto")


def test_require_protocol_accepts_builtin_filesystems() -> None:
    require_protocol("memory")
    require_protocol("file")
