"""``--input``: one meaning of a glob, before the job and inside it.

``*`` and ``?`` match within one path segment; ``**`` as a whole segment matches zero or more
directories (``DIR/**/*.cms`` also matches ``DIR/x.cms``). The run's pre-check and the job's
first stage call the same ``match_inputs``. Beam's own ``**`` needs at least one directory, so
for other file systems (gs://, s3://) a pattern is expanded into the patterns Beam matches: each
``**/`` kept (one or more directories) or dropped (none), a file matched twice listed once.
"""

from __future__ import annotations

import glob
import itertools
import os

from minimeter.errors import ConfigError

MAX_DOUBLE_STARS = 3


def _separator(pattern: str) -> str:
    return "/" if "://" in pattern or os.sep == "/" else os.sep


def expand_pattern(pattern: str) -> tuple[str, ...]:
    """The patterns, in Beam's glob dialect, that together mean ``pattern``."""
    sep = _separator(pattern)
    parts = pattern.split(sep)
    stars = [i for i, part in enumerate(parts) if part == "**" and i < len(parts) - 1]
    if len(stars) > MAX_DOUBLE_STARS:
        raise ConfigError(f"--input: at most {MAX_DOUBLE_STARS} '**' segments", "usage")
    variants = []
    for keep in itertools.product((True, False), repeat=len(stars)):
        drop = {i for i, k in zip(stars, keep, strict=True) if not k}
        variants.append(sep.join(p for i, p in enumerate(parts) if i not in drop))
    return tuple(dict.fromkeys(variants))


def input_base(pattern: str) -> str:
    """The fixed directory part of a pattern (message names are relative to it), with a
    trailing separator."""
    sep = _separator(pattern)
    parts = pattern.split(sep)
    fixed = list(itertools.takewhile(lambda p: not glob.has_magic(p), parts))
    if len(fixed) == len(parts):  # no wildcard: a single file
        fixed = fixed[:-1]
    return sep.join(fixed) + sep if fixed else ""


def match_inputs(pattern: str) -> list[str]:
    """Every path the pattern matches, sorted, once each: on a local file system with Python's
    glob (``**`` as above; directories, FIFOs and devices are listed too, for the job to refuse),
    elsewhere through Beam's FileSystems with the expanded patterns."""
    if "://" not in pattern:
        return sorted(set(glob.glob(pattern, recursive=True)))
    from apache_beam.io.filesystem import BeamIOError
    from apache_beam.io.filesystems import FileSystems

    try:
        results = FileSystems.match(list(expand_pattern(pattern)))
    except BeamIOError as exc:
        raise ConfigError(f"--input: cannot list {pattern} ({exc})", "input-unreadable") from None
    except ValueError as exc:  # an unknown scheme, or its extra not installed
        raise ConfigError(f"--input: {exc}", "usage") from None
    return sorted({m.path for r in results for m in r.metadata_list})
