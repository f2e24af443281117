"""Norm-style file lists: the first line is the number of files N, then one path per line.

Only the first N paths are used. A relative path is taken relative to the working directory (as HugeCTR
does); when nothing exists there, hgc also tries it relative to the directory holding the list.
"""

from __future__ import annotations

import os

from hgc.errors import DataError


def read_file_list(path: str | os.PathLike[str]) -> list[str]:
    """Return the data file paths of the list at ``path``; raise DataError for a malformed list or a
    missing/unreadable data file (naming the list, the line and its byte offset)."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DataError(path, f"cannot read the file list: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(path, f"the file list is not UTF-8 text ({e.reason})", offset=e.start) from None

    lines: list[tuple[int, int, str]] = []  # (line number, byte offset, text)
    offset = 0
    for number, line in enumerate(text.split("\n"), start=1):
        lines.append((number, offset, line.strip()))
        offset += len(line.encode("utf-8")) + 1
    if not lines or not lines[0][2]:
        raise DataError(path, "the first line must be the number of data files; the list is empty", offset=0)
    first = lines[0][2]
    if not first.isdigit():
        shown = first if len(first) <= 60 else first[:57] + "..."
        raise DataError(path, f"the first line must be the number of data files; got {shown!r}", offset=0)
    count = int(first)
    if count < 1:
        raise DataError(
            path, "the first line says the list holds 0 data files; it needs at least one", offset=0
        )

    entries = [(n, off, p) for n, off, p in lines[1:] if p]
    if len(entries) < count:
        raise DataError(
            path,
            f"the first line says {count} data files but only {len(entries)} paths follow",
            offset=len(raw),
        )
    base = os.path.dirname(os.path.abspath(path))
    files = []
    for number, off, entry in entries[:count]:
        files.append(_resolve(path, base, number, off, entry))
    return files


def _resolve(list_path: str, base: str, number: int, offset: int, entry: str) -> str:
    candidates = [entry]
    if not os.path.isabs(entry):
        candidates.append(os.path.join(base, entry))
    for cand in candidates:
        if os.path.isfile(cand):
            if not os.access(cand, os.R_OK):
                raise DataError(
                    list_path, f"line {number}: data file '{entry}' is not readable", offset=offset
                )
            return cand
        if os.path.exists(cand):
            raise DataError(list_path, f"line {number}: '{entry}' is not a regular file", offset=offset)
    raise DataError(list_path, f"line {number}: data file '{entry}' does not exist", offset=offset)


def write_file_list(path: str | os.PathLike[str], files: list[str]) -> None:
    """Write a Norm-style file list (count line, then one path per line)."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"{len(files)}\n")
        f.writelines(f"{p}\n" for p in files)
