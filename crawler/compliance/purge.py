"""Purge: delete what is held in a scope, everywhere the project wrote it, with a receipt.

Locations (GDPR Art. 17(2): erasure reaches every copy):

- ``store``: items in the store (registered domains and their subdomains, or URL patterns);
- ``httpcache``: Scrapy's HTTP cache, filesystem and DBM backends;
- ``feed``: local feed files written by crawls (``-o``/``-O``/``FEEDS``),
  rewritten without the in-scope records (write new, fsync, rename);
- ``jobdir``: pending requests in a ``JOBDIR``'s disk queues.

Crawls record where they write (``crawl_outputs``); a location still being
written by a running crawl is ``deferred`` to that crawl, which applies the
purge when it closes it; a location that cannot be reached from here (a remote
feed URI, another machine's disk, a format that cannot be rewritten) is listed
as ``manual_action_required``, never skipped silently.

Crash safety: a purge killed at any moment (SIGKILL) and run again resumes
the same purge record, finishes, and its receipt counts exactly what was
deleted. The store's deletes and their count are one transaction. Elsewhere a
deletion is prepared under a unique name (cache entries moved to a trash
folder, a rewritten feed, DBM file or queue written beside the original), its
count is committed with that name (``purge_marks``), then it is applied: on the
next run a prepared change whose name was counted is applied without being
counted again, and one that was not is counted (a trash folder) or discarded
(a rewrite not yet in place, whose records are then found and counted again).
"""

from __future__ import annotations

import csv
import json
import os
import pickle
import shutil
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa

from crawler.compliance.faults import fault_point
from crawler.compliance.notices import CompiledScope
from crawler.compliance.store import SCRUB_INCOMPLETE, Store, items, utcnow

CHUNK = 20_000

#: Feed formats whose files can be rewritten record by record.
REWRITABLE_FEED_FORMATS = ("jsonlines", "jsonl", "jl", "json", "csv", "xml")


@dataclass(frozen=True)
class Location:
    kind: str  # store, httpcache, feed, jobdir
    location: str  # a path, a URI, or "store"
    options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    machine: str = ""
    crawl_ids: tuple[str, ...] = ()


@dataclass
class Outcome:
    status: str  # done, manual_action_required, deferred
    count: int = 0
    detail: str = ""
    #: The count was already committed to the purge's step, change by change (see Progress).
    recorded: bool = False


#: Cache entries moved to one trash folder before their count is committed.
CACHE_BATCH = 500


@dataclass
class Progress:
    """A location's tally in the store, committed with the name of each change it counts (see the module's docstring).

    Without a store (a scan outside a purge) nothing is recorded.
    """

    store: Store | None = None
    purge_id: str = ""
    location: str = ""
    kind: str = ""
    #: Told each committed count (a live display of the purge; see run_purge).
    tally: Callable[[int], None] | None = None

    def commit(self, count: int, mark: str) -> None:
        if self.store is not None and count:
            self.store.commit_progress(self.purge_id, self.location, self.kind, count, mark)
            if self.tally is not None:
                self.tally(count)

    def counted(self, mark: str) -> bool:
        return self.store is not None and self.store.progress_counted(self.purge_id, self.location, mark)


class PurgeError(RuntimeError):
    """A location could not be purged; the message says which and why."""


# -- scanning and rewriting each kind of location ----------------------------------


def _store_condition(scope: CompiledScope) -> tuple[sa.ColumnElement[bool] | None, sa.ColumnElement[bool] | None]:
    """(rows in scope by registered domain, candidate rows for URL patterns).

    Pattern candidates are selected by the registered-domain column (indexed,
    and the same on every engine, whatever the URL's case, port or trailing
    dot), then matched in Python with the gates' own matcher.
    """
    by_domain = items.c.domain.in_(sorted(scope.domains)) if scope.domains else None
    candidates = scope.pattern_domains
    by_pattern = items.c.domain.in_(sorted(candidates)) if candidates else None
    return by_domain, by_pattern


def _partition(records: list[Any], url_of: Callable[[Any], str | None], scope: CompiledScope) -> tuple[list[Any], int, int]:
    """(records to keep, how many are in scope, how many have no readable URL and are kept)."""
    kept: list[Any] = []
    removed = unplaced = 0
    for record in records:
        url = url_of(record)
        if url is None:
            unplaced += 1
            kept.append(record)
        elif scope.match(url) is not None:
            removed += 1
        else:
            kept.append(record)
    return kept, removed, unplaced


def _store_pattern_ids(store: Store, scope: CompiledScope, condition: sa.ColumnElement[bool]) -> Iterator[list[int]]:
    after = 0
    while True:
        rows = store.matching_item_ids(condition, after, CHUNK)
        if not rows:
            return
        after = rows[-1][0]
        chosen = [i for i, url in rows if scope.match(url) is not None]
        if chosen:
            yield chosen


def count_store(store: Store, scope: CompiledScope) -> int:
    chosen = getattr(scope, "store_condition", None)
    if chosen is not None:  # a scope of chosen items (retention, erasure: crawler.dataprotection.itemscope)
        return store.count_matching(chosen)
    # The two conditions select disjoint domains (pattern_domains leaves out scope.domains).
    by_domain, by_pattern = _store_condition(scope)
    total = store.count_matching(by_domain) if by_domain is not None else 0
    if by_pattern is not None:
        total += sum(len(chunk) for chunk in _store_pattern_ids(store, scope, by_pattern))
    return total


def purge_store(store: Store, scope: CompiledScope, purge_id: str, tally: Callable[[int], None] | None = None) -> int:
    chosen = getattr(scope, "store_condition", None)
    by_domain, by_pattern = (chosen, None) if chosen is not None else _store_condition(scope)
    total = 0
    if by_domain is not None:
        while deleted := store.delete_items_chunk(by_domain, purge_id, "store", CHUNK):
            total += deleted
            if tally is not None:
                tally(deleted)
            fault_point("store-chunk")
    if by_pattern is not None:
        for chunk in _store_pattern_ids(store, scope, by_pattern):
            deleted = store.delete_item_ids(chunk, purge_id, "store")
            total += deleted
            if tally is not None:
                tally(deleted)
    return total


def _cache_entries(path: Path, gzipped: bool = False) -> Iterator[tuple[Path, str | None]]:
    """(entry directory, its request URL) for a filesystem HTTP cache of one spider."""
    import gzip

    opener = gzip.open if gzipped else open
    for meta in sorted(path.glob("*/*/pickled_meta")):
        try:
            with opener(meta, "rb") as handle:
                url = pickle.load(handle).get("url")  # noqa: S301 - Scrapy's own cache format, written by our crawls
        except Exception:  # noqa: BLE001 - a damaged entry is reported, not fatal
            url = None
        yield meta.parent, url


def _trash_prefix(path: Path) -> str:
    return f".{path.name}.purging-"


def _empty_trash(trash: Path, progress: Progress) -> int:
    """Count the entries in ``trash`` (unless already counted), then remove it; the count it added."""
    added = 0
    if not progress.counted(trash.name):
        added = sum(1 for _ in trash.iterdir())
        progress.commit(added, trash.name)
        fault_point("cache-counted")
    _remove_tree(trash)
    return added


def scan_httpcache(location: Location, scope: CompiledScope, *, delete: bool, progress: Progress | None = None) -> Outcome:
    path = Path(location.location)
    backend = location.options.get("backend")
    progress = progress or Progress()
    if backend == "dbm":
        return _dbm_cache(location, scope, delete=delete, progress=progress)
    if backend != "filesystem":
        return Outcome("manual_action_required", 0, f"HTTPCACHE_STORAGE {location.location} is not one this purge knows; purge it by hand")
    count = unreadable = 0
    if delete:
        # Trash folders of a killed run: counted now if that run had not counted them.
        for leftover in sorted(path.parent.glob(_trash_prefix(path) + "*")):
            count += _empty_trash(leftover, progress)
    if not path.exists():
        return Outcome("done", count, "no cache directory (already removed)", recorded=delete)
    trash: Path | None = None
    in_trash = 0
    for entry, url in _cache_entries(path, gzipped=bool(location.options.get("gzip"))):
        if url is None:
            unreadable += 1
            continue
        if scope.match(url) is not None:
            if delete:
                if trash is None:
                    trash = path.parent / f"{_trash_prefix(path)}{uuid.uuid4().hex}"
                    trash.mkdir()
                try:
                    # Atomic: the cache no longer serves it. Counted with its trash folder.
                    os.replace(entry, trash / f"{entry.parent.name}-{entry.name}")
                except OSError as exc:
                    count += _empty_trash(trash, progress)
                    # What was removed so far is counted; the rest is for a person.
                    return Outcome("manual_action_required", count, f"{count} in-scope entries removed, then {entry}: {exc}", recorded=True)
                in_trash += 1
                if in_trash >= CACHE_BATCH:
                    fault_point("cache-trashed")
                    count += _empty_trash(trash, progress)
                    trash, in_trash = None, 0
            else:
                count += 1
    if trash is not None:
        fault_point("cache-trashed")
        count += _empty_trash(trash, progress)
    for leftover in path.glob("*/*.purging"):  # from a purge of an earlier version, killed between rename and rmtree
        if delete:
            _remove_tree(leftover)
    outcome = _unless_kept(count, "in-scope entries", unreadable, "unreadable entries")
    outcome.recorded = delete
    return outcome


def _unless_kept(removed: int, removed_what: str, kept: int, kept_what: str, why: str = "") -> Outcome:
    """Done, unless records this purge could not place were kept: those may be in scope, so a person must look."""
    if not kept:
        return Outcome("done", removed)
    return Outcome("manual_action_required", removed, f"{removed} {removed_what} removed; {kept} {kept_what} kept{why}: check them by hand")


def _remove_tree(path: Path) -> None:
    """Remove a cache entry for good: a symlink is unlinked (rmtree refuses one), errors raise."""
    if path.is_symlink() or not path.is_dir():
        path.unlink()
    else:
        shutil.rmtree(path)


def _dbm_cache(location: Location, scope: CompiledScope, *, delete: bool, progress: Progress) -> Outcome:
    import importlib

    module = importlib.import_module(location.options.get("dbm_module") or "dbm")
    path = location.location
    if delete:
        _recover_dbm_swap(path, progress)
    if not any(Path(p).exists() for p in (path, path + ".db", path + ".dat", path + ".pag")):
        return Outcome("done", 0, "no cache database (already removed)")
    try:
        db = module.open(path, "w" if delete else "r")
    except Exception as exc:  # noqa: BLE001 - a locked or damaged database is reported
        return Outcome("manual_action_required", 0, f"cannot open the DBM cache: {exc}")
    count = unreadable = 0
    doomed: set[bytes] = set()
    try:
        for key in [k for k in db.keys() if k.endswith(b"_data")]:
            try:
                url = pickle.loads(db[key]).get("url")  # noqa: S301 - Scrapy's own cache format
            except Exception:  # noqa: BLE001 - a damaged entry is kept and reported
                unreadable += 1
                continue
            if url and scope.match(url) is not None:
                count += 1
                stem = key[: -len(b"_data")]
                doomed.update((stem + b"_data", stem + b"_time"))
        if delete and doomed:
            _rebuild_dbm(module, db, path, doomed, count, progress)
    finally:
        db.close()
    outcome = _unless_kept(count, "in-scope entries", unreadable, "unreadable entries")
    outcome.recorded = delete
    return outcome


_DBM_SUFFIXES = ("", ".db", ".pag", ".dat", ".dir", ".bak")


def _rebuild_dbm(module: Any, db: Any, path: str, doomed: set[bytes], count: int, progress: Progress) -> None:
    """Copy the kept entries into a new database and rename it into place.

    Deleting a key from a DBM file leaves its bytes on disk (dbm.dumb and
    gdbm reuse the space later, if ever); a purge must not leave the body.

    Some DBMs are two or three files (dbm.dumb: .dat, .dir, .bak; ndbm:
    .pag, .dir), and renaming several files is not atomic. So the complete
    new database is written first, then a marker ``PATH.purging.swap``, then
    the renames, then the marker goes: a purge killed half-way through the
    renames finishes them when it runs again (:func:`_recover_dbm_swap`).
    The marker names the change (a token); its count is committed with the
    token before the first rename, so the next run knows whether to finish
    the swap (counted) or drop the copy (not counted, nothing renamed yet).
    """
    fresh = path + ".purging"
    out = module.open(fresh, "n")
    try:
        for key in db.keys():
            if key not in doomed:
                out[key] = db[key]
    finally:
        out.close()
    new_files = [suffix for suffix in _DBM_SUFFIXES if Path(fresh + suffix).exists()]
    for suffix in new_files:
        _fsync(fresh + suffix)
    marker = fresh + ".swap"
    token = "dbm-" + uuid.uuid4().hex
    with open(marker, "w", encoding="utf-8") as handle:
        handle.write("\n".join([f"token:{token}", *new_files]))
        handle.flush()
        os.fsync(handle.fileno())
    progress.commit(count, token)
    fault_point("dbm-counted")
    _swap_dbm(path, new_files)


def _swap_dbm(path: str, new_files: list[str]) -> None:
    fresh = path + ".purging"
    for n, suffix in enumerate(new_files):
        if Path(fresh + suffix).exists():
            os.replace(fresh + suffix, path + suffix)
        if n == 0:
            fault_point("dbm-swapping")
    # A file of the old database the new one does not have (dbm.dumb's .bak,
    # an index of the old data) must not outlive it.
    for suffix in _DBM_SUFFIXES:
        if suffix not in new_files and Path(path + suffix).exists():
            os.remove(path + suffix)
    os.remove(fresh + ".swap")


def _recover_dbm_swap(path: str, progress: Progress) -> None:
    """Finish a swap a killed purge counted, or drop a copy it never counted (the old database is intact then)."""
    fresh = path + ".purging"
    marker = Path(fresh + ".swap")
    if marker.exists():
        lines = marker.read_text(encoding="utf-8").split("\n")
        if not lines[0].startswith("token:"):  # written by an earlier version: finish it
            _swap_dbm(path, lines)
            return
        if progress.counted(lines[0].removeprefix("token:")):
            _swap_dbm(path, lines[1:])
            return
        marker.unlink()
    for suffix in _DBM_SUFFIXES:
        if Path(fresh + suffix).exists():
            os.remove(fresh + suffix)


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _json_values(text: str) -> list[tuple[Any, str]]:
    """Every top-level JSON value of a JSON or JSON-lines text, in order, with its text as written.

    Handles any indentation (FEED_EXPORT_INDENT), an array cut short by a
    killed crawl (no closing bracket), and line separators such as U+2028
    inside strings (only "\n" ends a JSON-lines record). Kept records are
    written back as their original text, so a purge changes nothing in them
    (numbers such as 1e400, repeated keys, escaped lone surrogates).
    """
    decoder = json.JSONDecoder()
    values = []
    position = 0
    if text.lstrip().startswith("["):
        position = text.index("[") + 1
    length = len(text)
    while position < length:
        while position < length and text[position] in " \t\r\n,":
            position += 1
        if position >= length or text[position] == "]":
            break
        start = position
        value, position = decoder.raw_decode(text, position)
        values.append((value, text[start:position]))
    return values


def _lines_with_ends(text: str) -> list[str]:
    """``text`` cut after each "\n" only (str.splitlines also cuts at \r, \x0b, U+2028, ...)."""
    lines = text.split("\n")
    return [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])


def _feed_records(text: str, fmt: str, options: dict[str, Any]) -> tuple[list[Any], Callable[[list[Any]], str], Callable[[Any], str | None]]:
    """Parse a feed file: (records, how to write records back, a record's URL)."""

    def url_of(record: Any) -> str | None:
        value = record[0]
        return value.get("url") if isinstance(value, dict) and isinstance(value.get("url"), str) else None

    indent = options.get("indent")
    if fmt in ("jsonlines", "jsonl", "jl"):
        records = _json_values(text)

        def write_lines(kept: list[Any]) -> str:
            return "".join(raw + "\n" for _, raw in kept)

        return records, write_lines, url_of
    if fmt == "json":
        records = _json_values(text)

        def write_json(kept: list[Any]) -> str:
            prefix = " " * int(indent) if isinstance(indent, int) and indent > 0 else ""
            return "[\n" + ",\n".join(prefix + raw for _, raw in kept) + ("\n]" if kept else "]") + ("\n" if prefix else "")

        return records, write_json, url_of
    if fmt == "csv":
        # Rows are kept as the lines they were written as (a quoted field may
        # span lines): csv reads our own line list, and line_num says where
        # each row ended.
        lines = _lines_with_ends(text)
        reader = csv.DictReader(iter(lines))
        _ = reader.fieldnames  # reads the header row
        consumed = reader.line_num
        header = "".join(lines[:consumed])
        rows: list[tuple[dict[str, Any], str]] = []
        for row in reader:
            rows.append((row, "".join(lines[consumed : reader.line_num])))
            consumed = reader.line_num

        def write_csv(kept: list[Any]) -> str:
            body = "".join(raw if raw.endswith("\n") else raw + "\r\n" for _, raw in kept)
            return (header if header.endswith("\n") or not kept else header + "\r\n") + body

        return rows, write_csv, lambda record: record[0].get("url")
    if fmt == "xml":
        root = ET.fromstring(text)  # noqa: S314 - our own export, no entities
        children = list(root)

        def write_xml(kept: list[Any]) -> str:
            for child in list(root):
                root.remove(child)
            root.extend(kept)
            return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"

        return children, write_xml, lambda element: element.findtext("url")
    raise PurgeError(f"feed format {fmt!r} cannot be rewritten record by record")


def scan_feed(location: Location, scope: CompiledScope, *, delete: bool, progress: Progress | None = None) -> Outcome:
    progress = progress or Progress()
    fmt = str(location.options.get("format") or "").lower()
    if fmt not in REWRITABLE_FEED_FORMATS:
        return Outcome("manual_action_required", 0, f"feed format {fmt!r} cannot be rewritten safely; delete or edit it by hand")
    path = Path(location.location)
    if not path.exists():
        return Outcome("done", 0, "no feed file (already removed)")
    # A symlink is followed: the records live in its target, and replacing
    # the link would leave them there while reporting them gone.
    path = path.resolve()
    if delete:
        _recover_prepared_file(path, progress)
    if not path.is_file():
        return Outcome("manual_action_required", 0, f"{path} is not a regular file (a FIFO, device or directory); nothing was read or changed")
    try:
        with path.open(encoding="utf-8", newline="") as handle:  # line ends as written: kept records are copied verbatim
            text = handle.read()
        records, write, url_of = _feed_records(text, fmt, location.options)
    except (OSError, UnicodeDecodeError, ValueError, ET.ParseError, csv.Error) as exc:
        return Outcome("manual_action_required", 0, f"cannot read the feed ({exc}); nothing was changed")
    kept, removed, no_url = _partition(records, url_of, scope)
    if delete and removed:
        _replace_file(path, write(kept), removed, progress)
    outcome = _unless_kept(removed, "in-scope record(s)", no_url, "record(s) without a url")
    outcome.recorded = delete
    return outcome


def _prepared_prefix(path: Path) -> str:
    return f".{path.name}.purge-"


def _replace_file(path: Path, content: str, removed: int, progress: Progress) -> None:
    """Write the new file beside ``path``, commit its count under its name, then rename it over ``path``.

    A reader sees the old file or the new; a purge killed in between finds
    the prepared file on its next run (:func:`_recover_prepared_file`).
    """
    prepared = path.with_name(f"{_prepared_prefix(path)}{uuid.uuid4().hex}")
    mode = path.stat().st_mode & 0o777
    try:
        with prepared.open("w", encoding="utf-8", newline="") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(prepared, mode)
        fault_point("file-prepared")
        progress.commit(removed, prepared.name)
    except BaseException:
        prepared.unlink(missing_ok=True)
        raise
    fault_point("file-counted")
    os.replace(prepared, path)
    fault_point("file-replaced")


def _recover_prepared_file(path: Path, progress: Progress) -> None:
    """A rewrite a killed purge prepared: put in place if its count was committed, else dropped (the file is unchanged)."""
    for prepared in sorted(path.parent.glob(_prepared_prefix(path) + "*")):
        if progress.counted(prepared.name):
            os.replace(prepared, path)
        else:
            prepared.unlink()


def _queue_paths(jobdir: Path) -> Iterator[tuple[Path, str]]:
    """Every disk queue under ``JOBDIR/requests.queue``: (path, "fifo" or "lifo")."""
    root = jobdir / "requests.queue"
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*")):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue  # our own swap files (.name.new, .name.old)
        if path.is_dir() and (path / "info.json").is_file():
            yield path, "fifo"
        elif path.is_file() and path.suffix != ".json" and not (path.parent / "info.json").exists():
            yield path, "lifo"


def _read_queue(path: Path, kind: str) -> list[bytes]:
    """The queue's records, oldest first, read from a copy outside the job directory (queuelib
    consumes what it pops, and a dry run must not touch the JOBDIR, even its mtime)."""
    import tempfile

    from queuelib.queue import FifoDiskQueue, LifoDiskQueue

    with tempfile.TemporaryDirectory(prefix="purge-queue-") as scratch_dir:
        scratch = Path(scratch_dir) / "queue"
        (shutil.copytree if kind == "fifo" else shutil.copy2)(path, scratch)
        queue = FifoDiskQueue(str(scratch)) if kind == "fifo" else LifoDiskQueue(str(scratch))
        records = []
        while (record := queue.pop()) is not None:
            records.append(record)
        queue.close()
    return records if kind == "fifo" else records[::-1]  # oldest first


def _write_queue(path: Path, kind: str, records: list[bytes], removed: int, progress: Progress) -> None:
    """Write the kept requests beside the queue, commit the count under that copy's name, then swap it in."""
    from queuelib.queue import FifoDiskQueue, LifoDiskQueue

    token = uuid.uuid4().hex
    if not records:
        # queuelib removes an empty queue when closing it; Scrapy recreates it empty on resume.
        fresh = path.with_name(f".{path.name}.empty-{token}")
        fresh.touch()
    else:
        fresh = path.with_name(f".{path.name}.new-{token}")
        queue = FifoDiskQueue(str(fresh)) if kind == "fifo" else LifoDiskQueue(str(fresh))
        for record in records:
            queue.push(record)
        queue.close()
    progress.commit(removed, fresh.name)
    fault_point("queue-counted")
    _apply_queue(path, fresh)


def _apply_queue(path: Path, fresh: Path) -> None:
    """Put a prepared copy (``.NAME.new-T``, or ``.NAME.empty-T`` for none left) in place of the queue at ``path``."""
    old = path.with_name(f".{path.name}.old")
    if ".empty-" in fresh.name:
        if path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        fresh.unlink()
        return
    if not fresh.is_dir():
        os.replace(fresh, path)
        return
    if path.exists():
        os.replace(path, old)
    fault_point("queue-swapped")
    os.replace(fresh, path)
    shutil.rmtree(old, ignore_errors=True)


def _recover_queues(jobdir: Path, progress: Progress) -> None:
    """Finish what a killed purge left: counted copies are put in place, uncounted ones dropped, moved-aside queues restored."""
    root = jobdir / "requests.queue"
    if not root.is_dir():
        return
    for fresh in sorted([*root.rglob(".*.new-*"), *root.rglob(".*.empty-*")]):
        name = fresh.name[1:].rsplit(".new-" if ".new-" in fresh.name else ".empty-", 1)[0]
        if progress.counted(fresh.name):
            _apply_queue(fresh.with_name(name), fresh)
        else:
            shutil.rmtree(fresh) if fresh.is_dir() else fresh.unlink()
    for old in root.rglob(".*.old"):
        target = old.with_name(old.name[1 : -len(".old")])
        if not target.exists():
            os.replace(old, target)
        else:
            shutil.rmtree(old, ignore_errors=True)


def _request_url(record: bytes) -> str | None:
    try:
        value = pickle.loads(record)  # noqa: S301 - Scrapy's own disk-queue format (request_to_dict)
    except Exception:  # noqa: BLE001
        return None
    return value.get("url") if isinstance(value, dict) else None


def scan_jobdir(location: Location, scope: CompiledScope, *, delete: bool, progress: Progress | None = None) -> Outcome:
    progress = progress or Progress()
    jobdir = Path(location.location)
    if not jobdir.is_dir():
        return Outcome("done", 0, "no job directory (already removed)")
    if delete:
        _recover_queues(jobdir, progress)
    removed = unreadable = 0
    for path, kind in list(_queue_paths(jobdir)):
        records = _read_queue(path, kind)
        kept, in_scope, unplaced = _partition(records, _request_url, scope)
        removed += in_scope
        unreadable += unplaced
        if delete and in_scope:
            _write_queue(path, kind, kept, in_scope, progress)
    # Requests this purge cannot read (another serializer, damage) may be in scope.
    outcome = _unless_kept(removed, "in-scope request(s)", unreadable, "unreadable request(s)", " (not pickled by Scrapy's disk queues?)")
    outcome.recorded = delete
    return outcome


def scan_redisqueue(location: Location, scope: CompiledScope, *, delete: bool) -> Outcome:
    """Requests waiting in a distributed crawl's shared queue (scrapy-redis)."""
    try:
        import redis

        from crawler.cluster import leased_urls, queued_urls

        waiting = queued_urls(location.options["redis_url"], location.options["key"])
        doomed = [member for member, url in waiting if url is not None and scope.match(url) is not None]
        unreadable = sum(1 for _, url in waiting if url is None)
        client = redis.Redis.from_url(location.options["redis_url"], socket_timeout=10)
        # Requests leased by workers: a dead worker's go back to the queue when another notices.
        leased = leased_urls(client, location.options["key"])
        doomed_leases = [(key, name) for key, name, url in leased if url is not None and scope.match(url) is not None]
        if not delete:
            if unreadable:
                return Outcome("manual_action_required", len(doomed) + len(doomed_leases), f"{unreadable} queued request(s) cannot be read")
            return Outcome("done", len(doomed) + len(doomed_leases))
        removed = 0
        for start in range(0, len(doomed), 1000):
            removed += int(client.zrem(location.options["key"], *doomed[start : start + 1000]))
        for key, name in doomed_leases:
            removed += int(client.hdel(key, name))
        return _unless_kept(removed, "in-scope request(s)", unreadable, "queued request(s) this purge cannot read")
    except Exception as exc:  # noqa: BLE001 - an unreachable Redis is listed, not skipped
        return Outcome("manual_action_required", 0, f"cannot reach the Redis queue: {exc}")


class PurgeScope:
    """What a purge covers, as a project's own purge location sees it (see :class:`PurgeLocation`).

    ``domains`` are registered domains (their subdomains are covered too);
    ``url_patterns`` are URLs with robots.txt-style ``*`` and ``$`` in their
    path. :meth:`matches` answers for one URL exactly as the built-in
    locations and the crawl's gates do.
    """

    def __init__(self, compiled: CompiledScope) -> None:
        self._compiled = compiled
        self.domains: frozenset[str] = compiled.domains
        self.url_patterns: tuple[str, ...] = tuple(written for _, _, written in compiled.patterns)

    def matches(self, url: str) -> bool:
        return self._compiled.match(url) is not None

    def __repr__(self) -> str:
        return f"PurgeScope(domains={sorted(self.domains)}, url_patterns={list(self.url_patterns)})"


class PurgeLocation:
    """A place a project's own code writes crawled data to, registered with purge.

    Register a subclass (or any object with the same methods) with the
    setting ``COMPLIANCE_PURGE_LOCATIONS = ["myproject.purge.OrdersTable"]``
    or the entry point group ``ethical_crawler.purge_locations``. Purge calls
    :meth:`count` for ``--dry-run`` and ``--verify`` and :meth:`delete` for a
    purge; each location appears in the receipt under ``custom:NAME``. A
    class is built with ``from_settings(settings)`` when it has one, else
    with no arguments.

    ``delete`` must return what it deleted, after the deletion is durable
    (committed): the receipt counts it then, so a purge killed half way and
    run again never reports more than was deleted. Raising any exception
    marks the location ``manual_action_required`` with the message.
    """

    #: The name in receipts (``custom:NAME``); the class name if not set.
    name: str = ""

    def count(self, scope: PurgeScope) -> int:  # pragma: no cover - interface
        """How many records in scope this location holds now."""
        raise NotImplementedError

    def delete(self, scope: PurgeScope) -> int:  # pragma: no cover - interface
        """Delete every record in scope; return how many were deleted."""
        raise NotImplementedError


def custom_location(handler: Any) -> Location:
    name = getattr(handler, "name", "") or type(handler).__name__
    return Location("custom", str(name), {"handler": handler})


def scan_custom(location: Location, scope: CompiledScope, *, delete: bool) -> Outcome:
    handler = location.options["handler"]
    public = PurgeScope(scope)
    try:
        if delete:
            return Outcome("done", int(handler.delete(public)))
        return Outcome("done", int(handler.count(public)))
    except Exception as exc:  # noqa: BLE001 - a project's code: whatever it raises, a person must look
        what = "delete" if delete else "count"
        return Outcome("manual_action_required", 0, f"{type(handler).__name__}.{what}() failed: {type(exc).__name__}: {exc}")


SCANNERS: dict[str, Callable[..., Outcome]] = {
    "httpcache": scan_httpcache, "feed": scan_feed, "jobdir": scan_jobdir, "redisqueue": scan_redisqueue,
    "custom": scan_custom,
}  # fmt: skip


# -- planning and running ------------------------------------------------------------


def plan(store: Store, machine: str, extra: Sequence[Location] = ()) -> list[Location]:
    """Every location the project wrote to, as recorded by crawls (the store first), then ``extra``.

    ``extra`` are the locations no crawl records: batches kept for later
    when the store refused them, and the project's own registered locations.
    """
    merged: dict[tuple[str, str, str], Location] = {}
    for row in store.outputs():
        machine_of_row = "" if row["kind"] == "redisqueue" else row["machine"]
        key = (row["kind"], row["location"], machine_of_row)
        previous = merged.get(key)
        crawl_ids = (*previous.crawl_ids, row["crawl_id"]) if previous else (row["crawl_id"],)
        merged[key] = Location(row["kind"], row["location"], row["options"], machine_of_row, crawl_ids)
    recorded = {(loc.kind, loc.location) for loc in merged.values()}
    return [Location("store", "store", {}, machine), *merged.values(), *(e for e in extra if (e.kind, e.location) not in recorded)]


def reachability(location: Location, machine: str, running: dict[str, dict[str, Any]]) -> Outcome | None:
    """None when this process can purge ``location`` now; else why not (deferred or manual)."""
    if location.kind in ("redisqueue", "custom"):
        # Redis: shared by every machine and safe to change under running
        # workers (ZREM is atomic). Custom: the project's own code decides.
        return None
    owners = [c for c in location.crawl_ids if c in running]
    if location.kind == "feed" and location.options.get("remote"):
        return Outcome("manual_action_required", 0, f"remote feed {location.options.get('uri')}: delete the in-scope records there")
    if location.machine and location.machine != machine:
        if owners:
            return Outcome("deferred", 0, f"being written by running crawl {owners[0]} on {location.machine}; it applies this purge when it closes it")
        return Outcome("manual_action_required", 0, f"on machine {location.machine}: run the same purge command there")
    if owners:
        return Outcome("deferred", 0, f"being written by running crawl {owners[0]}; it applies this purge when it closes it")
    if location.kind in ("feed", "httpcache", "jobdir"):
        # A crawl opens its files a moment before it records them, and any
        # other program may hold one open: rewriting a file under a writer
        # would send its later writes to the replaced copy.
        writers = open_writers(location.location)
        if writers:
            pid, command = writers[0]
            crawl = next((c for c, info in running.items() if info.get("pid") == pid and info.get("machine") == machine), None)
            if crawl is not None:
                return Outcome("deferred", 0, f"being written by running crawl {crawl} (pid {pid}); it applies this purge when it closes it")
            return Outcome("manual_action_required", 0, f"open for writing by pid {pid} ({command}): purge again once it has closed it")
    return None


def open_writers(path: str) -> list[tuple[int, str]]:
    """Other processes on this machine holding ``path`` (or a file below it) open for writing: [(pid, command)].

    Read from ``/proc`` (Linux); where there is no ``/proc`` the answer is
    empty and only recorded owners count.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    target = os.path.realpath(path)
    found: list[tuple[int, str]] = []
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit() or int(pid_dir.name) == os.getpid():
            continue
        try:
            fds = list((pid_dir / "fd").iterdir())
        except OSError:
            continue  # gone, or not ours to read
        for fd in fds:
            try:
                opened = os.readlink(fd)
                if opened != target and not opened.startswith(target + os.sep):
                    continue
                flags = next(line for line in (pid_dir / "fdinfo" / fd.name).read_text().splitlines() if line.startswith("flags:"))
            except (OSError, StopIteration):
                continue
            if int(flags.split()[1], 8) & (os.O_WRONLY | os.O_RDWR):
                try:
                    command = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()[:120]
                except OSError:
                    command = "?"
                found.append((int(pid_dir.name), command))
                break
    return found


def scan(store: Store, scope: CompiledScope, location: Location, *, delete: bool, purge_id: str = "", name: str = "",
         tally: Callable[[int], None] | None = None) -> Outcome:  # fmt: skip
    """What ``scope`` holds at ``location``; with ``delete``, delete it (``tally`` is told each count as it is committed)."""
    if location.kind == "store":
        if delete:
            deleted = purge_store(store, scope, purge_id, tally)
            # Scrubbed when this purge deleted anything (in this run or an earlier, interrupted
            # one), or when the previous purge could not finish its scrub.
            earlier = any(s["location"] == (name or "store") and s["count"] for s in store.purge_steps(purge_id)) if purge_id else False
            note = ""
            if deleted or earlier or (purge_id and store.scrub_owed(purge_id)):
                try:
                    note = store.scrub_deleted()
                except (sa.exc.SQLAlchemyError, OSError) as exc:
                    # The items are deleted; what may remain is their text in the file. Said so, and
                    # the other locations are still purged (the receipt is never held back by this).
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    note = (f"{SCRUB_INCOMPLETE}: the deleted items' text may remain in the store's files "
                            f"({type(exc).__name__}: {first}); the next purge of this store retries")  # fmt: skip
            return Outcome("done", deleted, note, recorded=True)
        return Outcome("done", count_store(store, scope))
    scanner = SCANNERS.get(location.kind)
    if scanner is None:
        return Outcome("manual_action_required", 0, f"unknown kind of location {location.kind!r}")
    if delete and location.kind in ("httpcache", "feed", "jobdir"):
        # Counted change by change into the purge's step (no purge record: the caller counts).
        progress = Progress(store, purge_id, name or label(location), location.kind, tally) if purge_id else Progress()
        outcome = scanner(location, scope, delete=delete, progress=progress)
        outcome.recorded = outcome.recorded and bool(purge_id)
        return outcome
    return scanner(location, scope, delete=delete)


class PurgeProgress(Protocol):
    """What a purge tells a live display: how many locations, which one now, what each step deleted."""

    def planned(self, locations: int) -> None: ...

    def location(self, name: str) -> None: ...

    def deleted(self, count: int) -> None: ...


@dataclass
class PurgeRequest:
    scope: CompiledScope
    scope_record: dict[str, Any]  # as written in the receipt and the ledger
    reason: str
    operator: str
    notice_id: str | None = None


def label(location: Location, machine: str = "") -> str:
    """How a location is named in receipts: a path on another machine carries that machine's name."""
    if location.kind == "store":
        return "store"
    name = f"{location.kind}:{location.location}"
    return f"{name}@{location.machine}" if location.machine and location.machine != machine else name


def run_purge(store: Store, request: PurgeRequest, machine: str, extra: Sequence[Location] = (),
              progress: PurgeProgress | None = None, *, outbox: Path | None = None, deadline_days: int = 30) -> dict[str, Any]:  # fmt: skip
    """Purge every location and return the receipt (resumes an unfinished purge of the same thing).

    ``progress`` (a live display, say) hears of each location as it starts
    and of each count of deleted records as it is committed. The receipt
    lists every recorded export that held an item in scope (``exports``);
    with ``outbox`` (the project's ``var/outbox/``) one deletion request per
    destination is written there (``deletion_requests``; see
    :mod:`crawler.dataprotection.exports`).
    """
    from crawler.dataprotection.exports import held_by

    # Read before anything is deleted (the manifests name URLs, so a resumed purge finds the same).
    held = held_by(store, request.scope)
    unfinished = store.unfinished_purge(request.notice_id, request.scope_record)
    if unfinished is not None:
        purge_id = unfinished["id"]
        started_at = unfinished["started_at"]
    else:
        purge_id = uuid.uuid4().hex
        store.start_purge(purge_id, request.notice_id, request.reason, request.operator, request.scope_record)
        started_at = store.purge_record(purge_id)["started_at"]  # type: ignore[index]
        fault_point("started")
    locations = plan(store, machine, extra)
    if progress is not None:
        progress.planned(len(locations))
    for location in locations:
        name = label(location, machine)
        if progress is not None:
            progress.location(name)
        # Re-read who writes this location right before touching it: a crawl
        # that started writing it during this purge owns it now.
        running = store.running_crawls()
        location = Location(location.kind, location.location, location.options, location.machine,
                            store.output_owners(location.kind, location.location) or location.crawl_ids)  # fmt: skip
        blocked = reachability(location, machine, running)
        if blocked is not None:
            store.record_step(purge_id, name, location.kind, 0, blocked.status, blocked.detail)
            continue
        try:
            outcome = scan(store, request.scope, location, delete=True, purge_id=purge_id, name=name,
                           tally=progress.deleted if progress is not None else None)  # fmt: skip
        except (OSError, ValueError, PurgeError) as exc:
            outcome = Outcome("manual_action_required", 0, f"could not purge: {type(exc).__name__}: {exc}")
        # Store, caches, feeds and job directories were counted change by
        # change, with the change (see Progress); the others count here.
        store.record_step(purge_id, name, location.kind, 0 if outcome.recorded else outcome.count, outcome.status, outcome.detail)
        if progress is not None and not outcome.recorded:
            progress.deleted(outcome.count)
    fault_point("before-receipt")
    receipt = _receipt(store, purge_id, request, started_at, held)
    if held:
        from crawler.dataprotection.exports import write_deletion_requests

        if outbox is None:
            receipt["deletion_requests"] = []
            receipt["manual_action_required"].append({"location": "outbox", "why": "no project folder here (COMPLIANCE_DATA_DIR "
                                                      "is relative): tell the destinations in 'exports' by hand"})  # fmt: skip
        else:
            receipt["deletion_requests"] = write_deletion_requests(outbox, held, receipt, deadline_days)
    return receipt


def _receipt(store: Store, purge_id: str, request: PurgeRequest, started_at: Any, held: dict[str, Any] | None = None) -> dict[str, Any]:
    steps = store.purge_steps(purge_id)
    if getattr(started_at, "tzinfo", 1) is None:
        from datetime import UTC

        started_at = started_at.replace(tzinfo=UTC)
    receipt = {
        "purge_id": purge_id,
        "notice_id": request.notice_id,
        "reason": request.reason,
        "operator": request.operator,
        "scope": request.scope_record,
        "started_at": started_at.isoformat(),
        "finished_at": utcnow().isoformat(),
        "counts": {s["location"]: int(s["count"]) for s in steps if s["status"] == "done"},
        "total_deleted": sum(int(s["count"]) for s in steps),
        "manual_action_required": [
            {"location": s["location"], "why": s["detail"]} for s in steps if s["status"] == "manual_action_required"
        ],
        "deferred": [{"location": s["location"], "why": s["detail"]} for s in steps if s["status"] == "deferred"],
        "notes": {s["location"]: s["detail"] for s in steps if s["status"] == "done" and s["detail"]},
    }
    if held:
        from crawler.dataprotection.exports import receipt_summary

        # GDPR Art. 19: who received copies of what was purged (ids and counts; the URLs go to the outbox only).
        receipt["exports"] = receipt_summary(held)
    entry = store.finish_purge(purge_id, receipt)
    # The receipt a site owner can check without trusting the store: the
    # entry, its inclusion proof and the signed tree head (crawler/verify_receipt.py).
    proof = store.ledger_receipt(entry.seq) if store.head_key is not None else None
    return {**receipt, "ledger_entry": {"seq": entry.seq, "hash": entry.hash}, "ledger_receipt": proof}


def survey(store: Store, scope: CompiledScope, machine: str, extra: Sequence[Location] = ()) -> list[tuple[Location, Outcome]]:
    """What is in scope at every location, deleting nothing (``--dry-run`` and ``--verify``)."""
    running = store.running_crawls()
    found = []
    for location in plan(store, machine, extra):
        blocked = reachability(location, machine, running)
        if blocked is not None and blocked.status == "manual_action_required":
            found.append((location, blocked))
            continue
        if blocked is not None and location.machine and location.machine != machine:
            found.append((location, blocked))
            continue
        try:
            found.append((location, scan(store, scope, location, delete=False)))
        except (OSError, ValueError, PurgeError) as exc:
            found.append((location, Outcome("manual_action_required", 0, f"could not read: {type(exc).__name__}: {exc}")))
    return found
