"""Reading an inventory's data files: verified downloads, and a bucket's objects from them in key order.

Data files are downloaded to a local folder and checked against the manifest (size and MD5): a file
that does not match refuses the whole inventory, never half-read. DuckDB then reads them (gzip CSV
and Parquet natively, vectorised, with bounded memory).

The deleting pipelines need the objects *in key order*: the retention plan is a merge join with job
rows sorted the same way, and deploy cleanup's second pass must see a deployment's objects together.
A listing arrives sorted; inventory data files are in no order. :class:`Snapshot` has DuckDB sort them
(``ORDER BY key``: UTF-8 binary order, the order S3 lists in), spilling to the snapshot's folder beyond
its memory limit, so a billion-row inventory sorts on disk instead of in RAM: that is what DuckDB is
made for, and why nothing here sorts by hand. Keys in CSV inventories are URL-encoded (``+`` for a
space, as AWS writes them) and decoded in the query. Rows stream to Python in batches.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from include.aws.listing import S3Object, S3Version
from include.inventory.manifest import InventoryError, Manifest, latest

#: DuckDB's memory limit for a query over an inventory; beyond it the sort spills to disk.
DUCKDB_MEMORY = os.environ.get("S3OPS_INVENTORY_MEMORY", "512MB")


def duckdb_config(**extra: str | bool) -> dict[str, str | bool]:
    """The DuckDB settings of every inventory reader: the memory limit, and an allocator that hands freed
    memory back after each query. Without the latter a process reading 10 CSV.gz data files peaked
    ~160 MB higher than one reading 1 (bench/README.md, "Inventory"); with it, the peak is flat."""
    return {"memory_limit": DUCKDB_MEMORY, "allocator_flush_threshold": "8MB",
            "allocator_bulk_deallocation_flush_threshold": "8MB", **extra}
_BATCH = 10_000
#: A Parquet inventory's ``last_modified_date`` as S3 writes times (``…T04:28:13.123Z``). AWS stores it as
#: TIMESTAMP(MILLIS, isAdjustedToUTC=true), which DuckDB reads as a TIMESTAMP WITH TIME ZONE and
#: ``::TIMESTAMP`` turns into the process's local time (``TZ=Asia/Tokyo``: 9 hours off). Microseconds since
#: the epoch are the same in every zone, for either kind of column.
PARQUET_TIME = "strftime(make_timestamp(epoch_us(last_modified_date)), '%Y-%m-%dT%H:%M:%S.%g') || 'Z'"


@contextmanager
def read_as_described(where: str) -> Iterator[None]:
    """DuckDB's errors about the data itself (a CSV whose rows do not match the manifest's ``fileSchema``,
    a damaged Parquet file) as :class:`InventoryError` naming ``where``: no retry reads them otherwise, so
    the bucket's inventory is refused in one clear line instead of failing every try with DuckDB's."""
    import duckdb

    try:
        yield
    except (duckdb.InvalidInputException, duckdb.ConversionException) as exc:
        said = str(exc).strip().splitlines()
        raise InventoryError(f"{where}: not readable as the manifest describes it "
                             f"({said[0] if said else type(exc).__name__})") from None


def sql_text(value: str) -> str:
    """``value`` as a SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def relation(fmt: str, columns: Sequence[str], paths: Sequence[str]) -> str:
    """A DuckDB table expression over data files, with the inventory's own column names (``fileSchema``)."""
    files = "[" + ", ".join(sql_text(p) for p in paths) + "]"
    if fmt == "Parquet":
        return f"read_parquet({files}, union_by_name = true)"
    cols = ", ".join(f"'{c}': 'VARCHAR'" for c in columns)
    return f"read_csv({files}, header = false, compression = 'gzip', quote = '\"', columns = {{{cols}}})"


def download(client: Any, bucket: str, entry: dict[str, Any], path: str) -> str:
    """The data file ``entry`` (a manifest ``files[]`` item) at ``path``, after checking its size and MD5."""
    digest = hashlib.md5()  # the checksum the manifest gives
    size = 0
    body = client.get_object(Bucket=bucket, Key=entry["key"])["Body"]
    with open(path, "wb") as fh:
        for chunk in iter(lambda: body.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
            fh.write(chunk)
    if size != entry["size"] or digest.hexdigest() != entry["md5"]:
        raise InventoryError(f"s3://{bucket}/{entry['key']}: {size} bytes with MD5 {digest.hexdigest()}, the "
                             f"manifest says {entry['size']} bytes with MD5 {entry['md5']}: refused")
    return path


def local_name(index: int, entry: dict[str, Any]) -> str:
    return f"data-{index:06d}" + (".parquet" if entry["key"].endswith(".parquet") else ".csv.gz")


class Snapshot:
    """Every data file of one manifest, downloaded and verified, queried in key order. Use as a
    context manager (``with open_snapshot(...) as snap``): the files are removed on exit."""

    def __init__(self, manifest: Manifest, folder: str, paths: list[str], *, need_etag: bool = False) -> None:
        import duckdb

        self.manifest = manifest
        self.need_etag = need_etag
        self.folder = folder
        self.paths = paths
        # a database file in the snapshot's folder: the rows are written there before they are sorted
        self._con = duckdb.connect(os.path.join(folder, "snapshot.duckdb"),
                                   config=duckdb_config(temp_directory=folder, preserve_insertion_order=False))
        self._tables = 0

    def close(self) -> None:
        self._con.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the columns, as the listing has them --------------------------------------------------------
    def _key(self) -> str:
        return "url_decode(replace(key, '+', ' '))" if self.manifest.format == "CSV" else "key"

    def _when(self) -> str:
        if self.manifest.format == "Parquet":
            return PARQUET_TIME
        return "last_modified_date"

    def _etag(self) -> str:
        """The ETag column, or '' when the inventory was configured without it."""
        return "COALESCE(e_tag, '')" if "e_tag" in self.manifest.columns else "''"

    def _rows(self, select: str, where: str, prefix: str, order: str,
              on_batch: Callable[[int], None] | None) -> Iterator[tuple[Any, ...]]:
        import duckdb

        # Written to a table first, then sorted: sorting straight from ten 1M-row CSV.gz files ran out of
        # DuckDB's memory limit (its CSV readers' buffers beside the sort), the two steps apart spill.
        self._tables += 1
        table = f"rows_{self._tables}"  # one per call: two streams may be read side by side
        with read_as_described(f"the data files of s3://{self.manifest.dest_bucket}/{self.manifest.key}"):
            self._con.execute(f"CREATE TABLE {table} AS SELECT * FROM (SELECT {self._key()} AS k, {select} FROM "
                              f"{relation(self.manifest.format, self.manifest.columns, self.paths)} {where}) "
                              f"WHERE starts_with(k, {sql_text(prefix)})")
        cursor = self._con.cursor()  # its own cursor, so another stream's queries do not end this one
        cursor.execute(f"SELECT * FROM {table} ORDER BY {order}")
        try:
            while True:
                batch = cursor.fetchmany(_BATCH)
                if not batch:
                    return
                yield from batch
                if on_batch is not None:
                    on_batch(len(batch))
        finally:
            cursor.close()
            with contextlib.suppress(duckdb.Error):  # a closed snapshot took its folder with it
                self._con.execute(f"DROP TABLE IF EXISTS {table}")  # its disk space, before the snapshot ends

    def describe(self) -> dict[str, Any]:
        """What plan.json records about the inventory a plan was made from."""
        m = self.manifest
        return {"manifest": f"s3://{m.dest_bucket}/{m.key}", "date": m.iso_date, "format": m.format,
                "files": len(m.files), "versions": m.versions, "skipped": m.skipped[:3]}

    def _bad_size(self, key: str) -> InventoryError:
        return InventoryError(f"the inventory of {self.manifest.source_bucket} ({self.manifest.key}) has no "
                              f"readable Size for {key!r}: refused")

    def objects(self, prefix: str = "", on_batch: Callable[[int], None] | None = None) -> Iterator[S3Object]:
        """The current objects under ``prefix``, in key order (with the ETag the inventory recorded)."""
        versions = self.manifest.versions
        where = ("WHERE COALESCE(TRY_CAST(is_latest AS BOOLEAN), false) "
                 "AND NOT COALESCE(TRY_CAST(is_delete_marker AS BOOLEAN), false)") if versions else ""
        select = (f"TRY_CAST(size AS BIGINT), {self._when()}, COALESCE(NULLIF(storage_class, ''), 'STANDARD'), "
                  f"{self._etag()}")
        for key, size, when, cls, tag in self._rows(select, where, prefix, "k", on_batch):
            if size is None:
                raise self._bad_size(key)
            if self.need_etag and not tag:
                raise InventoryError(f"the inventory of {self.manifest.source_bucket} ({self.manifest.key}) has no "
                                     f"ETag for {key!r}, so its delete could not be conditional: refused")
            yield S3Object(key, int(size), str(when), str(cls), str(tag).strip('"'))

    def versions(self, prefix: str = "", on_batch: Callable[[int], None] | None = None) -> Iterator[S3Version]:
        """Every version and delete marker under ``prefix``: key order, each key's newest first (as
        ListObjectVersions answers). Needs an inventory of every version."""
        if not self.manifest.versions:
            raise InventoryError(f"{self.manifest.key}: the inventory holds current versions only; "
                                 "include_versions needs one configured with IncludedObjectVersions All")
        marker = "COALESCE(TRY_CAST(is_delete_marker AS BOOLEAN), false)"
        select = (f"COALESCE(version_id, 'null'), TRY_CAST(size AS BIGINT), {self._when()} AS w, "
                  f"COALESCE(NULLIF(storage_class, ''), 'STANDARD'), COALESCE(TRY_CAST(is_latest AS BOOLEAN), false) "
                  f"AS latest, {marker}, {self._etag()}")
        rows = self._rows(select, "", prefix, "k, latest DESC, w DESC", on_batch)
        for key, vid, size, when, cls, is_latest, is_marker, tag in rows:
            if size is None and not is_marker:
                raise self._bad_size(key)
            if vid == "null" and not is_marker and not tag:  # include.deletion.plan.null_version_kept
                raise InventoryError(f"the inventory of {self.manifest.source_bucket} ({self.manifest.key}) has no "
                                     f"ETag for the 'null' version of {key!r}, the one version whose delete must be "
                                     "checked against it: add ETag to the configuration's optional fields, or plan "
                                     "from the listing")
            yield S3Version(key, str(vid), 0 if is_marker else int(size), str(when), "" if is_marker else str(cls),
                            bool(is_latest), bool(is_marker), "" if is_marker else str(tag).strip('"'))


def open_snapshot(client: Any, manifest: Manifest, *, need_etag: bool,
                  on_file: Callable[[int], None] | None = None) -> Snapshot:
    """Download and verify every data file of ``manifest`` into a temporary folder. ``need_etag``:
    refuse an inventory without the ETag column (deletes are conditional on it). ``on_file(bytes)``
    after each file (progress)."""
    if need_etag and "e_tag" not in manifest.columns:
        raise InventoryError(f"s3://{manifest.dest_bucket}/{manifest.key}: the inventory has no ETag column, so "
                             "deletes could not be made conditional on it: add ETag to the configuration's "
                             "optional fields, or plan from the listing")
    folder = tempfile.mkdtemp(prefix="s3ops-inventory-")
    try:
        paths = []
        for i, entry in enumerate(manifest.files):
            paths.append(download(client, manifest.dest_bucket, entry, os.path.join(folder, local_name(i, entry))))
            if on_file is not None:
                on_file(int(entry["size"]))
        if not paths:
            raise InventoryError(f"s3://{manifest.dest_bucket}/{manifest.key}: the manifest lists no data files")
        return Snapshot(manifest, folder, paths, need_etag=need_etag)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def latest_snapshot(client: Any, bucket: str, *, include_versions: bool,
                    on_file: Callable[[int], None] | None = None) -> Snapshot:
    """The newest verified inventory of ``bucket``, downloaded, for a plan; :class:`InventoryError`
    naming why when there is none (a plan from an inventory never falls back silently)."""
    found = latest(client, bucket, want_versions=include_versions)
    if found is None:
        raise InventoryError(
            f"s3://{bucket} has no usable S3 Inventory configuration (enabled, the whole bucket, CSV or Parquet"
            + (", every version" if include_versions else "") + "): configure one, or plan from the listing "
            "(source: listing)")
    # With versions every plan item names its version id: exact without an ETag, except the mutable 'null'
    # version (Snapshot.versions refuses one without its ETag).
    return open_snapshot(client, found, need_etag=not include_versions, on_file=on_file)


class ObjectSource:
    """Where a deleting plan reads a bucket's objects, in key order: its listing (``snapshot`` None) or
    its newest inventory. The plans call this, never the two sources themselves."""

    def __init__(self, client: Any, bucket: str, snapshot: Snapshot | None) -> None:
        self.client, self.bucket, self.snapshot = client, bucket, snapshot
        self.reading = "reading the inventory of" if snapshot is not None else "listing"  # for progress lines

    def objects(self, prefix: str = "", on_batch: Callable[[int], None] | None = None) -> Iterator[S3Object]:
        from include.aws.listing import iter_objects

        if self.snapshot is not None:
            return self.snapshot.objects(prefix, on_batch=on_batch)
        return iter_objects(self.client, self.bucket, prefix, on_page=on_batch)

    def versions(self, prefix: str = "", on_batch: Callable[[int], None] | None = None) -> Iterator[S3Version]:
        from include.aws.listing import iter_versions

        if self.snapshot is not None:
            return self.snapshot.versions(prefix, on_batch=on_batch)
        return iter_versions(self.client, self.bucket, prefix, on_page=on_batch)

    def describe(self) -> dict[str, Any] | None:
        """The inventory a plan was made from (``plan.json``'s ``inventory``), None for a listing."""
        return self.snapshot.describe() if self.snapshot is not None else None


@contextmanager
def object_source(client: Any, bucket: str, source: str, *, include_versions: bool) -> Iterator[ObjectSource]:
    """The :class:`ObjectSource` a plan's ``source`` setting names (``listing`` or ``inventory``); an
    inventory is downloaded first (progress in the log) and removed on exit."""
    if source == "listing":
        yield ObjectSource(client, bucket, None)
        return
    if source != "inventory":
        raise ValueError(f"source must be listing or inventory, not {source!r}")
    from include.core.progress import Progress

    fetching = Progress(f"downloading the inventory of s3://{bucket}", unit="files")
    with latest_snapshot(client, bucket, include_versions=include_versions,
                         on_file=lambda n: fetching.add(1, n)) as snapshot:
        fetching.finish()
        yield ObjectSource(client, bucket, snapshot)


def plan_note(inventory: dict[str, Any]) -> str:
    """What an approver must know about a plan made from an inventory (``Snapshot.describe()``)."""
    return (f"Planned from the S3 Inventory of {inventory.get('date')} ({inventory.get('manifest')}), not a "
            "listing: objects written since are not in this plan, and each delete is conditional on the ETag the "
            "inventory recorded (or names its version), so an object rewritten since is kept.")
