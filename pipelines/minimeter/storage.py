"""Where Minimeter's files live: a local folder, or an object store through Beam's FileSystems.

``location("out")`` is a ``pathlib.Path``; ``location("s3://bucket/out")`` (or ``gs://``, any
scheme Beam has a file system for, with its extras installed) is an ``ObjectPath``: the part of
``pathlib.Path``'s interface Minimeter uses, each call one FileSystems call. The rest of the code
takes either (``AnyPath``) and keeps its one shape; what differs between a POSIX folder and an
object store lives in this module's functions:

| operation            | local folder                    | object store                          |
| -------------------- | ------------------------------- | ------------------------------------- |
| ``write_atomic``     | temporary file, fsync, rename   | one upload (an object appears whole)  |
| ``move_tree``        | one rename                      | copy then delete, manifests last      |
| ``remove_tree``      | ``rmtree``                      | delete every object below the prefix  |
| ``create_exclusive`` | ``O_CREAT | O_EXCL``            | conditional put (S3 ``If-None-Match``, |
|                      |                                 | GCS ``ifGenerationMatch=0``)          |

An object store has no directories: a "directory" is a key prefix, present while an object lies
below it. A tree moved by copying appears file by file; its manifest and signature are copied last,
so a tree without a signed manifest is one still arriving (``minimeter verify`` says so).
"""

from __future__ import annotations

import fnmatch
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, Union

from minimeter.errors import ConfigError

_OPTIONS: list[str] = []
"""Beam's own options of this process (``configure``): the S3 endpoint and credentials."""


def configure(beam_args: Iterable[str]) -> None:
    """Give FileSystems (and the lock's conditional put) the run's Beam options."""
    from apache_beam.options.pipeline_options import PipelineOptions

    _OPTIONS[:] = list(beam_args)
    _fs().set_options(PipelineOptions(_OPTIONS))


def is_url(text: str) -> bool:
    head, sep, _ = text.partition("://")
    return bool(sep) and head.isidentifier() and len(head) > 1


def location(text: str | os.PathLike[str]) -> AnyPath:
    """A local path, or an ``ObjectPath`` for ``scheme://...``."""
    if isinstance(text, ObjectPath):
        return text
    s = os.fspath(text)
    return ObjectPath(s) if is_url(s) else Path(s)


def _fs() -> Any:
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


def _oserror(url: str, exc: BaseException) -> OSError:
    """The store's error as an ``OSError`` with a one-line ``strerror``."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc
    first = exc.args[0] if exc.args else type(exc).__name__
    while isinstance(first, tuple) and first:  # Beam wraps boto3's (message, status) in args
        first = first[0]
    detail = (str(first).strip().splitlines() or [type(exc).__name__])[0][:200]
    err = OSError(5, detail)
    err.filename = url
    return err


@dataclass(frozen=True)
class _Stat:
    st_size: int


class ObjectPath:
    """A key (or key prefix) in an object store, with pathlib's shape."""

    __slots__ = ("url",)

    def __init__(self, url: str) -> None:
        scheme, _, rest = url.partition("://")
        rest = "/".join(p for p in rest.split("/") if p)
        object.__setattr__(self, "url", f"{scheme}://{rest}")

    url: str

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("ObjectPath is immutable")

    def __reduce__(self) -> tuple[type[ObjectPath], tuple[str]]:
        return ObjectPath, (self.url,)

    # --- pure path ---------------------------------------------------------------------------
    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"ObjectPath({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectPath) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    def __lt__(self, other: ObjectPath) -> bool:
        return self.url < other.url

    def __truediv__(self, part: str | PurePosixPath) -> ObjectPath:
        return ObjectPath(f"{self.url}/{part}")

    @property
    def _key(self) -> tuple[str, str]:
        scheme, _, rest = self.url.partition("://")
        return scheme, rest

    @property
    def name(self) -> str:
        return self._key[1].rsplit("/", 1)[-1]

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix

    @property
    def parent(self) -> ObjectPath:
        scheme, rest = self._key
        return ObjectPath(f"{scheme}://{rest.rsplit('/', 1)[0]}") if "/" in rest else self

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self._key[1].split("/"))

    def with_name(self, name: str) -> ObjectPath:
        return self.parent / name

    def relative_to(self, other: ObjectPath) -> PurePosixPath:
        prefix = other.url + "/"
        if not self.url.startswith(prefix):
            raise ValueError(f"{self.url} is not below {other.url}")
        return PurePosixPath(self.url[len(prefix) :])

    def resolve(self) -> ObjectPath:
        return self

    absolute = resolve

    def as_posix(self) -> str:
        return self.url

    # --- the store ---------------------------------------------------------------------------
    def _objects(self, limit: int | None = None) -> list[tuple[str, int]]:
        """Every object below this prefix: (url, size)."""
        try:
            result = _fs().match([self.url + "/**"], [limit] if limit else None)[0]
        except Exception as exc:  # noqa: BLE001 - the store's own error, as OSError
            raise _oserror(self.url, exc) from None
        return sorted(  # a "folder" marker object (a key ending in /) is no file
            (m.path, int(m.size_in_bytes)) for m in result.metadata_list if not m.path.endswith("/")
        )

    def is_file(self) -> bool:
        """Whether the object exists: False only when the store says it does not (any other
        failure is an ``OSError``: never taken for "not there")."""
        try:
            return bool(_fs().exists(self.url))
        except Exception as exc:  # noqa: BLE001 - the store's own error, as OSError
            raise _oserror(self.url, exc) from None

    def is_dir(self) -> bool:
        return bool(self._objects(limit=1))

    def exists(self) -> bool:
        return self.is_file() or self.is_dir()

    def stat(self) -> _Stat:
        try:
            result = _fs().match([self.url])[0].metadata_list
        except Exception as exc:  # noqa: BLE001
            raise _oserror(self.url, exc) from None
        if not result:
            raise FileNotFoundError(2, "No such object", self.url)
        return _Stat(int(result[0].size_in_bytes))

    def iterdir(self) -> Iterator[ObjectPath]:
        prefix = self.url + "/"
        names = sorted({url[len(prefix) :].split("/", 1)[0] for url, _ in self._objects()})
        return iter([self / n for n in names])

    def glob(self, pattern: str) -> Iterator[ObjectPath]:
        """Files and prefixes whose relative path matches ``pattern`` segment by segment
        (``*`` within a segment, as pathlib's)."""
        want = pattern.split("/")
        prefix = self.url + "/"
        found: set[str] = set()
        for url, _ in self._objects():
            parts = url[len(prefix) :].split("/")
            if len(parts) >= len(want) and all(
                fnmatch.fnmatchcase(p, w) for p, w in zip(parts, want, strict=False)
            ):
                found.add("/".join(parts[: len(want)]))
        return iter([self / f for f in sorted(found)])

    def rglob(self, pattern: str) -> Iterator[ObjectPath]:
        prefix = self.url + "/"
        return iter(
            [
                ObjectPath(url)
                for url, _ in self._objects()
                if fnmatch.fnmatchcase(url[len(prefix) :].rsplit("/", 1)[-1], pattern)
            ]
        )

    def open(self, mode: str = "rb") -> IO[bytes]:
        fs = _fs()
        try:
            if mode == "rb":
                return fs.open(self.url, compression_type="uncompressed")  # type: ignore[no-any-return]
            if mode == "wb":
                return fs.create(self.url, compression_type="uncompressed")  # type: ignore[no-any-return]
        except Exception as exc:  # noqa: BLE001
            raise _oserror(self.url, exc) from None
        raise ValueError(f"ObjectPath.open: mode {mode!r} (only rb and wb)")

    def read_bytes(self) -> bytes:
        try:
            with self.open("rb") as f:
                return f.read()
        except OSError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise _oserror(self.url, exc) from None

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> int:
        try:
            with self.open("wb") as f:
                f.write(data)
        except OSError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise _oserror(self.url, exc) from None
        return len(data)

    def write_text(self, text: str, encoding: str = "utf-8") -> int:
        return self.write_bytes(text.encode(encoding))

    def unlink(self, missing_ok: bool = False) -> None:
        if missing_ok and not self.is_file():
            return
        try:
            _fs().delete([self.url])
        except Exception as exc:  # noqa: BLE001
            raise _oserror(self.url, exc) from None

    def mkdir(self, mode: int = 0o777, parents: bool = False, exist_ok: bool = False) -> None:
        """Nothing to do: a prefix exists once an object is written below it."""

    def rmdir(self) -> None:
        if self.is_dir():
            raise OSError(39, "Prefix not empty", self.url)


AnyPath = Union[Path, ObjectPath]  # noqa: UP007 - a runtime alias, also used in isinstance
"""A local path or an object-store path: what every reader and writer of ``--out`` takes."""


# --- the operations that differ ---------------------------------------------------------------


def remove_tree(path: AnyPath, *, ignore_errors: bool = False) -> None:
    """Remove a folder (a prefix) and everything in it; nothing there is fine. In an object
    store a tree's manifest and signature go first: a reader never finds a signed manifest
    whose files are gone."""
    if isinstance(path, Path):
        if path.exists() or path.is_symlink():
            shutil.rmtree(path, ignore_errors=ignore_errors)
        return
    try:
        urls = [url for url, _ in path._objects()]
        _delete_manifest_first(urls)
    except OSError:
        if not ignore_errors:
            raise


def _delete_manifest_first(urls: list[str]) -> None:
    first = [u for u in urls if u.rsplit("/", 1)[-1] in _LAST]
    rest = [u for u in urls if u not in first]
    for batch in (first, rest):
        if batch:
            try:
                _fs().delete(batch)
            except Exception as exc:  # noqa: BLE001
                raise _oserror(batch[0], exc) from None


_LAST = ("manifest.json", "manifest.json.p7s")


MOVED = ".minimeter-moved"
"""In an object store, a tree whose every object was copied to its target: what is left of the
source is deleted, never copied again (a move killed while deleting is finished, not redone)."""


def moved_already(source: AnyPath) -> bool:
    """Whether ``source`` is the remnant of a finished copy (object stores; locally a rename
    leaves no remnant)."""
    return isinstance(source, ObjectPath) and (source / MOVED).is_file()


def move_tree(source: AnyPath, target: AnyPath) -> None:
    """``source`` becomes ``target`` (which must not exist). Local: one rename. Object store:
    every object is copied (one batch), then the manifest and its signature (a second batch),
    each copy checked; then the source is marked moved (``MOVED``) and deleted, the marker
    last. A source found marked was copied already: only its deletion is finished."""
    if isinstance(source, Path) and isinstance(target, Path):
        os.replace(source, target)
        return
    assert isinstance(source, ObjectPath) and isinstance(target, ObjectPath)
    urls = [url for url, _ in source._objects()]
    if not urls:
        if source.is_file():  # one object: copy, then delete (a copy again is harmless)
            _copy([(source.url, target.url)])
            source.unlink()
        return
    marker = (source / MOVED).url
    if marker not in urls:
        prefix = source.url + "/"
        pairs = [(u, f"{target.url}/{u[len(prefix) :]}") for u in urls]
        last = [p for p in pairs if p[0].rsplit("/", 1)[-1] in _LAST]
        _copy([p for p in pairs if p not in last])
        _copy(last)  # the manifest and its signature after everything else
        (source / MOVED).write_bytes(target.url.encode())
    _delete_manifest_first([u for u in urls if u != marker])
    (source / MOVED).unlink(missing_ok=True)


def _copy(pairs: list[tuple[str, str]]) -> None:
    """Copy objects; any failed copy is an ``OSError`` (Beam's S3 copy returns its failures)."""
    if not pairs:
        return
    try:
        results = _fs().copy([s for s, _ in pairs], [t for _, t in pairs])
    except Exception as exc:  # noqa: BLE001
        raise _oserror(pairs[0][0], exc) from None
    failed = [(s, err) for s, _, err in (results or []) if err is not None]
    if failed:
        source, err = failed[0]
        raise _oserror(source, err if isinstance(err, BaseException) else Exception(str(err)))


def create_exclusive(path: AnyPath, data: bytes) -> bool:
    """Create ``path`` holding ``data`` only if it does not exist: False when it does."""
    if isinstance(path, Path):  # written aside, then linked: never seen empty or half-written
        import secrets

        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o644)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise
            except OSError:  # a file system without hard links: create in place
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        return True
    scheme, rest = path._key
    bucket, _, key = rest.partition("/")
    if scheme == "s3":
        return _s3_create_exclusive(bucket, key, data)
    if scheme == "gs":
        return _gcs_create_exclusive(bucket, key, data)
    raise ConfigError(
        f"--out: {scheme}:// has no conditional create, which the lock on --out needs "
        "(s3://, gs:// or a local folder)",
        "usage",
    )


def _s3_client(*, quick: bool = False) -> Any:
    """A boto3 S3 client with the options Beam's S3 file system has (``configure``); ``quick``:
    short timeouts, one retry (a reachability check)."""
    import boto3
    from apache_beam.options.pipeline_options import PipelineOptions, S3Options
    from botocore.config import Config

    o = PipelineOptions(_OPTIONS).view_as(S3Options)
    config = (
        Config(connect_timeout=5, read_timeout=15, retries={"max_attempts": 2, "mode": "standard"})
        if quick
        else None
    )
    return boto3.client(
        "s3",
        endpoint_url=o.s3_endpoint_url or None,
        region_name=o.s3_region_name or None,
        aws_access_key_id=o.s3_access_key_id or None,
        aws_secret_access_key=o.s3_secret_access_key or None,
        aws_session_token=o.s3_session_token or None,
        use_ssl=not o.s3_disable_ssl,
        verify=o.s3_verify,
        config=config,
    )


def check_reachable(path: ObjectPath) -> None:
    """Fail in seconds, with the store's reason, when the bucket cannot be reached (Beam's own
    calls retry for minutes). An ``OSError``; other schemes than S3 are left to Beam."""
    scheme, rest = path._key
    if scheme != "s3":
        return
    bucket = rest.partition("/")[0]
    client = _s3_client(quick=True)
    try:
        try:
            client.head_bucket(Bucket=bucket)
        except Exception as exc:  # noqa: BLE001 - a policy scoped to a prefix: list it instead
            if str((getattr(exc, "response", None) or {}).get("Error", {}).get("Code")) != "403":
                raise
            prefix = rest.partition("/")[2].split("*")[0]
            client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
    except Exception as exc:  # noqa: BLE001 - any failure is the one line
        response = getattr(exc, "response", None) or {}
        code = response.get("Error", {}).get("Code")
        reason = {"404": "no such bucket", "403": "access denied"}.get(str(code))
        raise OSError(5, reason or _oserror(path.url, exc).strerror, path.url) from None


def _s3_create_exclusive(bucket: str, key: str, data: bytes) -> bool:
    from botocore.exceptions import ClientError

    client = _s3_client()
    try:
        client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
            return False  # (409: another conditional put of that key is under way)
        raise _oserror(f"s3://{bucket}/{key}", exc) from None
    return True


def _gcs_create_exclusive(bucket: str, key: str, data: bytes) -> bool:  # pragma: no cover
    from google.api_core.exceptions import PreconditionFailed
    from google.cloud import storage

    blob = storage.Client().bucket(bucket).blob(key)
    try:
        blob.upload_from_string(data, if_generation_match=0)
    except PreconditionFailed:
        return False
    return True


def subfolders(path: AnyPath) -> list[str]:
    """The names of the folders directly in ``path`` (in an object store: one listing)."""
    if isinstance(path, Path):
        return sorted(p.name for p in path.iterdir() if p.is_dir()) if path.is_dir() else []
    return sorted({k.split("/", 1)[0] for k in keys_below(path) if "/" in k})


def children(path: AnyPath) -> list[str]:
    """The names of everything directly in ``path``, files and folders (one listing)."""
    if isinstance(path, Path):
        return sorted(p.name for p in path.iterdir()) if path.is_dir() else []
    return sorted({k.split("/", 1)[0] for k in keys_below(path)})


def keys_below(path: ObjectPath) -> list[str]:
    """Every object below ``path``, relative to it (one listing)."""
    prefix = path.url + "/"
    return [url[len(prefix) :] for url, _ in path._objects()]


def relative(path: AnyPath, base: AnyPath) -> str:
    """``path`` below ``base``, as a POSIX relative path."""
    if isinstance(path, Path) and isinstance(base, Path):
        return path.relative_to(base).as_posix()
    if isinstance(path, ObjectPath) and isinstance(base, ObjectPath):
        return path.relative_to(base).as_posix()
    raise ValueError(f"{path} is not below {base}")


def parquet_rows(path: AnyPath) -> int:
    """Rows of a Parquet file (its footer only)."""
    import pyarrow.parquet as pq

    with path.open("rb") as f:
        return int(pq.ParquetFile(f).metadata.num_rows)


def read_table(path: AnyPath) -> Any:
    """A whole Parquet file as a ``pyarrow.Table``."""
    import pyarrow.parquet as pq

    with path.open("rb") as f:
        return pq.read_table(f)


class LocalCopies:
    """Local paths for files that may live in an object store (for DuckDB's ``read_parquet``):
    local files as they are, objects downloaded into a temporary folder removed on exit."""

    def __init__(self, paths: Iterable[AnyPath]) -> None:
        self.paths = list(paths)
        self.tmp: str | None = None

    def __enter__(self) -> list[str]:
        import tempfile

        out: list[str] = []
        try:
            for n, p in enumerate(self.paths):
                if isinstance(p, Path):
                    out.append(str(p))
                    continue
                if self.tmp is None:
                    self.tmp = tempfile.mkdtemp(prefix="minimeter-")
                local = Path(self.tmp, f"{n:06d}", *p.parts)  # the key's folders kept (run ids)
                local.parent.mkdir(parents=True)
                local.write_bytes(p.read_bytes())
                out.append(str(local))
        except BaseException:
            self.__exit__()
            raise
        return out

    def __exit__(self, *exc: object) -> None:
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
