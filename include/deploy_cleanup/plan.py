"""Deploy cleanup: which deployment folders under a prefix to delete, and the plan that deletes them.

A deployment is a folder directly under the prefix (``<prefix><name>/…``, any depth, any number of
objects). Its time is the newest ``LastModified`` among its objects; ties are ranked by name (the name
that sorts last counts as newer), but a deployment as new as one kept for its rank is kept too (S3
times have one-second steps, and names do not sort as versions: ``release-9`` after ``release-10``).
A folder holding only empty ``…/`` markers (the S3 console's "Create folder") is no deployment: not
ranked, never deleted. Objects directly under the prefix are not in a deployment and are never touched.
The prefix is never the bucket root by omission: it is ``/`` then (refused where keys start with ``/``,
which ``/`` named before). With an inventory, a folder created since ranks as the newest when it
holds something, and is never deleted by that plan.

Selection (:func:`select`), at the run's logical time ``now``, ranking deployments newest first:

- ``protect`` (names or globs): never deleted. A pattern names a deployment folder: the prefix and a
  trailing ``/`` are stripped (``deploys/prod-*``, ``prod-1/`` work), and matching ignores case and
  Unicode normalization (``Prod-*`` protects ``prod-1``; erring towards keeping); a pattern also protects
  the name it spells (``build[1]``) and, with surrounding spaces ignored, ``prod-1 ``. A pattern that can
  never match a deployment name (empty, or a ``/`` inside) is refused; one that matched no deployment
  is listed in plan.json (``protect_unmatched``) and in the text the approver reads;
- the newest ``min_keep`` (≥ 1): never deleted;
- ``keep`` = N: only deployments outside the newest N are candidates;
- ``older_than_days`` = X: only deployments older than X days at ``now`` are candidates;
- with both ``keep`` and ``older_than_days``, a candidate must satisfy both.

Planning lists the prefix twice (streaming, constant memory per deployment): once to date and rank the
deployments, once to write every object (or, with ``include_versions``, every version and delete
marker) of the doomed ones to the plan. ``deployments.jsonl`` in the run folder records every
deployment's time, size and decision, and ``plan.json`` its digest; the re-check before delete reads it
as planned (or refuses the chunk), compares against it and skips a
deployment whose newest object changed since planning, and a whole chunk when a deployment kept for its
rank is gone or emptied since, or its planned newest object is gone or older (its time went back).
"""

from __future__ import annotations

import fnmatch
import logging
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from include.aws.client import versioning_state
from include.aws.listing import iter_objects
from include.core import artifacts
from include.core.errors import error_code
from include.core.progress import Progress
from include.core.text import shown
from include.core.times import format_time, parse_time
from include.deletion.approval import DeleteRefused, bytes_digest
from include.deletion.plan import PLAN_FILE, PlanItem, PlanWriter, keep_earlier_record, null_versions_note
from include.deletion.settings import PLAN_SOURCES

if TYPE_CHECKING:  # the boto3 stubs are a dev dependency
    from types_boto3_s3 import S3Client

    from include.inventory.read import ObjectSource

log = logging.getLogger(__name__)

DEPLOYMENTS_FILE = "deployments.jsonl"
#: more than 100 years would make "now minus X days" leave the calendar
MAX_DAYS = 36_500
MAX_KEEP = 10**6
#: how a setting names the bucket root as the prefix (an empty or omitted prefix is refused)
ROOT = "/"


@dataclass(frozen=True)
class CleanupSettings:
    """Validated cleanup parameters (see :func:`settings_from_params`)."""

    prefix: str = ""
    keep: int | None = None
    older_than_days: float | None = None
    min_keep: int = 1
    protect: tuple[str, ...] = ()
    include_versions: bool = False
    source: str = "listing"  # or "inventory" (include.deletion.settings.PLAN_SOURCES)


def settings_from_params(params: Mapping[str, Any]) -> CleanupSettings:
    """Check the parameters before anything is listed; a :class:`ValueError` names what is wrong."""
    problems: list[str] = []
    prefix = params.get("prefix")
    if prefix is None or prefix == "":  # never the bucket root by omission: every top-level folder would be a deployment
        problems.append("prefix is not set: give the folder holding the deployments, ending with '/' (e.g. "
                        "'deploys/'), or '/' for the bucket root (every top-level folder is then a deployment)")
        prefix = ""
    elif not isinstance(prefix, str) or not prefix.endswith("/"):
        problems.append(f"prefix must end with '/' (got {prefix!r}; did you mean {str(prefix) + '/'!r}?)")
    elif prefix == ROOT:
        prefix = ""
    keep, days, min_keep = params.get("keep"), params.get("older_than_days"), params.get("min_keep", 1)
    for name, value, most in (("keep", keep, MAX_KEEP), ("older_than_days", days, MAX_DAYS)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not 0 <= value <= most):  # also refuses NaN and infinities
            problems.append(f"{name} must be a number from 0 to {most} or empty, got {value!r}")
    if keep is not None and isinstance(keep, float) and not keep.is_integer():
        problems.append(f"keep must be a whole number, got {keep!r}")
    if keep is None and days is None:
        problems.append("set keep (keep the newest N deployments) and/or older_than_days (delete older ones): "
                        "with neither, nothing says what to delete")
    if min_keep is None or isinstance(min_keep, bool) or not isinstance(min_keep, int) or min_keep < 1:
        problems.append(f"min_keep must be a whole number >= 1 (the newest deployment is never deleted), got {min_keep!r}")
    protect = params.get("protect") or []
    if isinstance(protect, str):
        protect = [p.strip() for p in protect.split(",")]
    patterns: list[str] = []
    if not isinstance(protect, (list, tuple)) or not all(isinstance(p, str) for p in protect):
        problems.append(f"protect must be a list of names or globs, got {protect!r}")
    else:
        for number, given in enumerate(protect, 1):
            if not given.strip():  # e.g. --protect "$UNSET": the protection meant would silently not apply
                problems.append(f"protect entry {number} is empty: give a deployment name or glob, or leave it out")
                continue
            try:
                patterns.append(protect_pattern(given, prefix if isinstance(prefix, str) else ""))
            except ValueError as exc:
                problems.append(str(exc))
    source = params.get("source") or "listing"
    if source not in PLAN_SOURCES:
        problems.append(f"source must be one of {', '.join(PLAN_SOURCES)}, got {source!r}")
    if problems:
        raise ValueError("invalid deploy cleanup parameters: " + "; ".join(problems))
    return CleanupSettings(
        prefix=prefix, keep=None if keep is None else int(keep), older_than_days=None if days is None else float(days),
        min_keep=int(min_keep), protect=tuple(dict.fromkeys(patterns)),
        include_versions=bool(params.get("include_versions")), source=str(source),
    )


def protect_pattern(given: str, prefix: str) -> str:
    """A ``protect`` entry as a pattern for the bare deployment name: the prefix and trailing ``/``
    stripped; a :class:`ValueError` for one that could never match a deployment name."""
    given = given.strip()  # "prod-* " in JSON means prod-*: a glob with a stray space would protect nothing
    pattern = given[len(prefix):] if prefix and given.startswith(prefix) else given
    pattern = pattern.rstrip("/")
    if not pattern:
        raise ValueError(f"protect pattern {given!r} names no deployment (a deployment is a folder under the "
                         f"prefix {prefix!r}): give its name or a glob such as 'prod-*'")
    if "/" in pattern:
        raise ValueError(f"protect pattern {given!r} can never match: deployment names are single folder names "
                         f"directly under the prefix {prefix!r} (no '/'); give the name alone, e.g. "
                         f"{pattern.rsplit('/', 1)[-1]!r}")
    return pattern


def deployment_name(key: str, prefix: str) -> str | None:
    """The deployment a key belongs to, or None for objects directly under the prefix (or outside it)."""
    if not key.startswith(prefix):
        return None
    name, slash, _ = key[len(prefix):].partition("/")
    return name if slash and name else None


@dataclass
class Deployment:
    name: str
    newest: str  # ISO 8601 UTC LastModified of its newest object
    objects: int = 0
    bytes: int = 0
    newest_key: str = ""
    after_inventory: bool = False  # in the bucket now, not in the inventory the plan was made from
    markers_only: bool = False  # nothing but empty "…/" folder markers (the console's "Create folder")

    def add(self, key: str, size: int, last_modified: str) -> None:
        self.objects += 1
        self.bytes += size
        if size or not key.endswith("/"):
            self.markers_only = False
        if last_modified > self.newest:
            self.newest, self.newest_key = last_modified, key


@dataclass(frozen=True)
class Decision:
    name: str
    rank: int  # 0 = newest
    delete: bool
    why: str
    reason: str = ""  # the plan reason when deleted
    # what the delete step checks still holds content: among the newest max(min_keep, keep), protected or
    # tied or not; and whether it is among the newest min_keep (recorded for the reader of deployments.jsonl)
    holds_rank: bool = False
    min_keep: bool = False


@dataclass
class ScanResult:
    deployments: dict[str, Deployment] = field(default_factory=dict)
    loose_objects: int = 0
    slash_key: str = ""  # with the root as the prefix: a key starting with "/" (its folder is no deployment)
    objects: int = 0
    bytes: int = 0


def scan(objects: Iterable[Any], prefix: str, *, on_object: Any = None) -> ScanResult:
    """Group ``(key, size, last_modified, …)`` objects into deployments; count the loose ones."""
    result = ScanResult()
    for obj in objects:
        result.objects += 1
        result.bytes += obj.size
        if on_object is not None:
            on_object(obj)
        name = deployment_name(obj.key, prefix)
        if name is None:
            result.loose_objects += 1
            if not prefix and obj.key.startswith("/") and not result.slash_key:
                result.slash_key = obj.key
            continue
        dep = result.deployments.get(name)
        if dep is None:
            dep = result.deployments[name] = Deployment(name, "", newest_key=obj.key, markers_only=True)
        dep.add(obj.key, obj.size, obj.last_modified)
    return result


def _fold(text: str) -> str:
    # NFC then casefold: 'Prod-*' protects 'prod-1', a pattern typed in NFC protects an NFD folder name
    return unicodedata.normalize("NFC", text).casefold()


def _protects(pattern: str, folded_name: str) -> bool:
    """A pattern protects the name it spells as well as the names its glob matches: ``build[1]`` protects
    the folder ``build[1]`` (as a glob it means ``build1``), and ``prod-1 `` protects ``prod-1``."""
    folded = _fold(pattern)
    return (fnmatch.fnmatchcase(folded_name, folded) or folded_name == folded
            or folded_name.strip() == folded.strip())


def protected_by(name: str, patterns: Sequence[str]) -> str | None:
    """The first pattern protecting deployment ``name`` (case and Unicode normalization ignored)."""
    folded = _fold(name)
    return next((p for p in patterns if _protects(p, folded)), None)


def unmatched_patterns(names: Iterable[str], patterns: Sequence[str]) -> list[str]:
    """The ``protect`` patterns that match none of the deployments ``names`` (probably a typo)."""
    folded = [_fold(n) for n in names]
    return [p for p in patterns if not any(_protects(p, n) for n in folded)]


def select(deployments: Iterable[Deployment], settings: CleanupSettings, now: datetime) -> list[Decision]:
    """Decide every deployment, newest first (see the module docstring for the rule)."""
    deployments = list(deployments)
    ranked = sorted((d for d in deployments if not d.markers_only), key=lambda d: (d.newest, d.name), reverse=True)
    cutoff = now - timedelta(days=settings.older_than_days) if settings.older_than_days is not None else None
    reason = ("beyond_keep_and_older_than" if settings.keep is not None and cutoff is not None
              else "beyond_keep" if settings.keep is not None else "older_than")
    keep_rank = max(settings.min_keep, settings.keep or 0)
    # S3 times have one-second steps: deployments copied or restored together tie, and their order is
    # unknown; one as new as a deployment kept for its rank is kept too, never decided by its name
    kept_times = {d.newest: d.name for d in ranked[:keep_rank]}
    decisions: list[Decision] = []
    for rank, dep in enumerate(ranked):
        decisions.append(replace(_decide(dep, rank, settings, cutoff, reason, kept_times),
                                 holds_rank=rank < keep_rank or dep.newest in kept_times,
                                 min_keep=rank < settings.min_keep))
    for dep in sorted((d for d in deployments if d.markers_only), key=lambda d: d.name):
        decisions.append(Decision(dep.name, -1, False, "empty: only folder markers, no deployment (not ranked, "
                                                       "never deleted)"))
    return decisions


def _decide(dep: Deployment, rank: int, settings: CleanupSettings, cutoff: datetime | None, reason: str,
            kept_times: Mapping[str, str]) -> Decision:
    """One ranked deployment's decision (see :func:`select`)."""
    pattern = protected_by(dep.name, settings.protect)
    if pattern is not None:
        return Decision(dep.name, rank, False, f"protected by {pattern!r}")
    if rank < settings.min_keep:
        return Decision(dep.name, rank, False, f"among the newest min_keep={settings.min_keep}")
    if settings.keep is not None and rank < settings.keep:
        return Decision(dep.name, rank, False, f"among the newest keep={settings.keep}")
    if dep.newest in kept_times:
        return Decision(dep.name, rank, False, f"as new as {kept_times[dep.newest]!r}, kept for its rank (a tie: "
                                               "which is newer is unknown)")
    if cutoff is not None and not parse_time(dep.newest) < cutoff:
        return Decision(dep.name, rank, False, f"not older than {settings.older_than_days:g} days")
    why = []
    if settings.keep is not None:
        why.append(f"not among the newest {settings.keep}")
    if cutoff is not None:
        why.append(f"older than {settings.older_than_days:g} days")
    return Decision(dep.name, rank, True, " and ".join(why), reason)


def _items(entries: Iterable[Any], settings: CleanupSettings, doomed: Mapping[str, Decision]) -> Iterator[PlanItem]:
    """Every object (or, with ``include_versions``, every version) of the doomed deployments, from a
    second pass over the listing or the inventory."""
    for e in entries:
        name = deployment_name(e.key, settings.prefix)
        if name is None or name not in doomed:
            continue
        if settings.include_versions:
            yield PlanItem(e.key, e.size, doomed[name].reason, version_id=e.version_id,
                           last_modified=e.last_modified, group=name, etag=e.etag)
        else:
            yield PlanItem(e.key, e.size, doomed[name].reason, last_modified=e.last_modified, group=name, etag=e.etag)


def _has_content(client: S3Client, bucket: str, folder: str) -> bool:
    """Does ``folder`` hold an object that is not an empty ``…/`` marker (usually the first page says)?"""
    return any(o.size or not o.key.endswith("/") for o in iter_objects(client, bucket, folder))


def _emptied(client: S3Client, bucket: str, prefix: str, names: Sequence[str]) -> list[str]:
    """Those of ``names`` whose folder holds nothing now but ``…/`` markers (16 listings in flight; usually
    one request each)."""
    if not names:
        return []
    with ThreadPoolExecutor(min(16, len(names))) as pool:
        held = list(pool.map(lambda name: _has_content(client, bucket, f"{prefix}{name}/"), names))
    return sorted(name for name, has in zip(names, held, strict=True) if not has)


@dataclass(frozen=True)
class NewestCheck:
    """What one HeadObject of a kept deployment's planned newest object says (:func:`_newest_changed`)."""

    why: str | None  # why the deployment is not as new as planned; None: it is
    holds_content: bool  # its newest object is there and is content (not an empty "…/" marker)


def _newest_changed(client: S3Client, bucket: str, prefix: str, row: Mapping[str, Any]) -> NewestCheck:
    """Is the deployment of ``row`` (deployments.jsonl) still as new as planned: its planned newest object
    still there and no older (one HeadObject)? Gone (its newest file deleted by hand, a version rolled back
    to an older one) or older: the deployment's time went back, and a deployment planned for deletion may
    now be newer than it. HeadObject denied: the deployment is listed instead, and its newest object now must
    be no older than planned. A row without a newest key (created after the inventory the plan was made from)
    is left to the emptied check."""
    key, planned = row.get("newest_key"), row.get("newest")
    if not key or not isinstance(planned, str):
        return NewestCheck(None, False)
    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        code = error_code(exc)
        if code in ("404", "NoSuchKey", "NotFound"):
            return NewestCheck(f"its newest object {shown(key)!r} is gone since planning", False)
        if code not in ("403", "AccessDenied"):
            raise
        name = str(row.get("name"))
        now = _current_deployments(client, bucket, prefix, [name]).get(name)
        if now is not None and now.newest >= planned:
            return NewestCheck(None, False)  # whether it holds content: the emptied check lists it
        return NewestCheck(f"its newest object is older now ({shown(now.newest_key)!r} at {now.newest}, planned "
                           f"{shown(key)!r} at {planned})" if now is not None else "it is gone since planning", False)
    # HeadObject's Last-Modified has whole seconds, the listing's milliseconds
    if head["LastModified"] < parse_time(planned).replace(microsecond=0):
        return NewestCheck(f"its newest object {shown(key)!r} is older now ({format_time(head['LastModified'])}, "
                           f"planned {planned})", False)
    return NewestCheck(None, bool(head.get("ContentLength")) or not str(key).endswith("/"))


def _kept_newest(client: S3Client, bucket: str, prefix: str, planned: Mapping[str, Mapping[str, Any]],
                 names: Sequence[str]) -> dict[str, NewestCheck]:
    """:func:`_newest_changed` of each of the deployments ``names`` (kept for their rank; 16 in flight, one
    request each)."""
    rows = [planned[name] for name in names if name in planned]
    if not rows:
        return {}
    with ThreadPoolExecutor(min(16, len(rows))) as pool:
        checks = list(pool.map(lambda row: _newest_changed(client, bucket, prefix, row), rows))
    return {str(row["name"]): check for row, check in zip(rows, checks, strict=True)}


def _unrank_emptied(client: S3Client, bucket: str, settings: CleanupSettings, deployments: Mapping[str, Deployment],
                    now: datetime) -> None:
    """With an inventory, what a folder holds now is unknown where it changed since: a folder created since
    (ranked as the newest) may be an empty console folder, and a deployment emptied since (a rollback that
    left its folder marker) still looks whole. Either would hold a rank and push a release out of the newest
    N, and an emptied one would make every delete refuse the plan until the next inventory. Check those
    that would hold a rank, and mark the empty ones as only markers (never ranked, never deleted), until
    the ranking holds: usually one round of ``keep`` listings."""
    checked: set[str] = set()
    while True:
        holding = [d.name for d in select(deployments.values(), settings, now)
                   if d.holds_rank and d.name not in checked]
        if not holding:
            return
        checked.update(holding)
        for name in _emptied(client, bucket, settings.prefix, holding):
            deployments[name].markers_only = True


def live_deployment_names(client: S3Client, bucket: str, prefix: str) -> set[str]:
    """The deployment folders under ``prefix`` now (ListObjectsV2 with a delimiter: one request per
    1,000 folders, whatever their size)."""
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "Delimiter": "/"}
    names: set[str] = set()
    while True:
        page = client.list_objects_v2(**kwargs)
        names.update(p["Prefix"][len(prefix):-1] for p in page.get("CommonPrefixes", []))
        if not page.get("IsTruncated"):
            return names - {""}
        kwargs["ContinuationToken"] = page["NextContinuationToken"]


def reconcile(scanned: ScanResult, live: set[str], now: datetime) -> list[str]:
    """Bring deployments seen in an inventory up to date with the folders there are now: a deployment
    gone since is dropped (it must not hold a rank the newest N are counted by), one created since is
    added as the newest (``after_inventory``: never deleted by this plan). Returns the names dropped."""
    gone = sorted(n for n in scanned.deployments if n not in live)
    for name in gone:
        del scanned.deployments[name]
    for name in sorted(live - set(scanned.deployments)):
        scanned.deployments[name] = Deployment(name, format_time(now), after_inventory=True)
    return gone


def plan_cleanup(
    client: S3Client, bucket: str, settings: CleanupSettings, run_dir: Any, now: datetime, *, chunk_size: int = 1000,
    run_settings: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """List (or read the newest inventory), select and write the plan (plus ``deployments.jsonl``);
    return the plan summary. An inventory problem raises :class:`include.inventory.manifest.InventoryError`."""
    from include.inventory.read import object_source

    keep_earlier_record(run_dir)  # before anything of the new plan is written
    with object_source(client, bucket, settings.source, include_versions=settings.include_versions) as found:
        return _plan(client, bucket, settings, run_dir, now, chunk_size, found, run_settings)


def _plan(client: S3Client, bucket: str, settings: CleanupSettings, run_dir: Any, now: datetime, chunk_size: int,
          found: ObjectSource, run_settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    writer = PlanWriter(run_dir, chunk_size=chunk_size, settings=run_settings)
    where = f"s3://{bucket}/{settings.prefix}"
    listing = Progress(f"{found.reading} {where} (deploy cleanup plan)")
    scanned = scan(found.objects(settings.prefix, on_batch=listing.add), settings.prefix,
                   on_object=lambda o: writer.note_scanned(o.size))
    listing.finish()
    gone: list[str] = []
    if found.snapshot is not None:
        gone = reconcile(scanned, live_deployment_names(client, bucket, settings.prefix), now)
    if found.snapshot is not None:
        _unrank_emptied(client, bucket, settings, scanned.deployments, now)
    decisions = [d if not scanned.deployments[d.name].after_inventory or d.rank < 0
                 else replace(d, delete=False, why="created after the inventory: not in this plan")
                 for d in select(scanned.deployments.values(), settings, now)]
    deps = scanned.deployments
    rows = artifacts.jsonl_bytes(
        {**asdict(deps[d.name]), "rank": d.rank, "delete": d.delete, "why": d.why, "holds_rank": d.holds_rank,
         "min_keep": d.min_keep} for d in decisions
    )
    artifacts.write_bytes(run_dir / DEPLOYMENTS_FILE, rows)
    # the delete step's re-check trusts these rows (what was planned, what holds the ranking): plan.json, which
    # the approval pins, pins them in turn
    deployments_digest = bytes_digest(rows)
    doomed = {d.name: d for d in decisions if d.delete}
    if doomed:
        relisting = Progress(f"{found.reading} {where} again: objects of the doomed deployments", unit="entries")
        entries: Iterable[Any] = (found.versions(settings.prefix, on_batch=relisting.add) if settings.include_versions
                                  else found.objects(settings.prefix, on_batch=relisting.add))
        for item in _items(entries, settings, doomed):
            writer.add(item)
        relisting.finish()
    kept = [d.name for d in decisions if not d.delete]
    def names(some: list[str]) -> str:
        return ", ".join(some[:5]) + (f" … (+{len(some) - 5})" if len(some) > 5 else "")

    doomed_names = [d.name for d in decisions if d.delete]
    unmatched = unmatched_patterns(deps, settings.protect)
    headline = (f"Delete {len(doomed)} of {len(decisions)} deployments under s3://{bucket}/{settings.prefix}"
                + (f": {names(doomed_names)}" if doomed else "") + f"; keep {len(kept)}"
                + (f": {names(kept)}." if kept else "."))
    if not decisions:  # a misspelt prefix ("Deploys/") would clean nothing, every day, in silence
        headline += (f" Warning: no deployment folder under s3://{bucket}/{settings.prefix} ({scanned.objects} "
                     "objects there): check the prefix (keys are case-sensitive).")
    if unmatched:
        headline += (f" Warning: protect patterns that matched no deployment: {', '.join(map(repr, unmatched))} "
                     "(check the spelling; they protect nothing in this run).")
    refusals = []
    if scanned.slash_key:  # the prefix "/" meant these keys before it named the root: never a silent switch
        refusals.append(f"the prefix '/' names the bucket root (every top-level folder is a deployment), but keys "
                        f"start with '/' here (e.g. {shown(scanned.slash_key)!r}): deployments under a '/' folder "
                        "cannot be cleaned by s3ops; move them, or clean the root only once they are gone")
    versioning = versioning_state(client, bucket) if settings.include_versions else None
    if versioning is not None and (note := null_versions_note(versioning)):
        headline += " " + note
    inventory = found.describe()
    if inventory is not None:
        from include.inventory.read import plan_note

        headline += " " + plan_note(inventory)
        if gone:
            headline += f" Gone since the inventory (not counted): {names(gone)}."
    summary = writer.close(listing_complete=True, extra={
        "headline": headline,
        "now": now.isoformat(),
        "prefix": settings.prefix,
        "deployments_total": len(decisions),
        "deployments_delete": len(doomed),
        "deployments_keep": len(kept),
        "protect": list(settings.protect),
        "protect_unmatched": unmatched,
        "loose_objects": scanned.loose_objects,
        "delete_sample": doomed_names[:20],
        "include_versions": settings.include_versions,
        "versioning": versioning,
        "source": settings.source,
        "inventory": inventory,
        "gone_since_inventory": gone,
        "deployments_uri": artifacts.uri(run_dir / DEPLOYMENTS_FILE),
        "deployments_digest": deployments_digest,
        "refusals": refusals,
    })
    log.info("%s", shown(headline))  # names are anyone's who can write to the bucket: no forged log line
    return summary


def planned_deployments(run_dir: Any, plan: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Rows of ``deployments.jsonl`` by name, parsed from the bytes whose digest ``plan`` (plan.json as
    authorised) records. :class:`DeleteRefused` when they differ: the file was changed since planning, and
    the re-check would otherwise judge the chunk by rows nobody approved."""
    path = run_dir / DEPLOYMENTS_FILE
    if not artifacts.exists(path):
        raise DeleteRefused(f"{artifacts.uri(path)} is missing: the re-check cannot tell what the plan kept, "
                            "nothing is deleted; plan again")
    data = artifacts.read_bytes(path)
    pinned = plan.get("deployments_digest")
    if pinned is None:
        raise DeleteRefused(f"the plan at {artifacts.uri(run_dir / PLAN_FILE)} records no digest of "
                            f"{artifacts.uri(path)} (made before s3ops pinned it): nothing is deleted; plan again")
    if bytes_digest(data) != pinned:
        raise DeleteRefused(f"{artifacts.uri(path)} changed since planning (its digest is not the one plan.json "
                            "records): nothing is deleted; plan again, and find out who wrote to the artifact store")
    return {row["name"]: row for row in artifacts.parse_jsonl(data)}


#: above this many deployments in one chunk, one range listing beats one listing per deployment
RANGE_LISTING_FROM = 20


def _current_deployments(client: S3Client, bucket: str, prefix: str, names: list[str]) -> dict[str, Deployment]:
    """The deployments ``names`` as they are now (absent when they have no objects left)."""
    if not names:
        return {}
    if len(names) < RANGE_LISTING_FROM:
        found: dict[str, Deployment] = {}
        for name in names:
            dep = scan(iter_objects(client, bucket, f"{prefix}{name}/"), prefix).deployments.get(name)
            if dep is not None:
                found[name] = dep
        return found
    # keys of deployment d sort between prefix+d and prefix+d+"0" ("0" follows "/"). The range ends at the
    # greatest of those ends, not at max(names)+"0": "v1/…" sorts after "v1.2…" ("/" follows "."), so the
    # end of the longest name can come before the objects of a shorter one.
    objects = iter_objects(client, bucket, prefix, start_after=f"{prefix}{min(names)}",
                           end_before=max(f"{prefix}{name}0" for name in names))
    wanted = set(names)
    return {n: d for n, d in scan(objects, prefix).deployments.items() if n in wanted}


def recheck_deployments(
    client: S3Client, bucket: str, prefix: str, planned: Mapping[str, Mapping[str, Any]], items: list[PlanItem],
    kept_by_rank: Sequence[str] = (),
) -> dict[str, str]:
    """``{key: why}`` for items that must not be deleted now: their deployment got a newer object since
    planning (a redeploy), was not planned for deletion, or the key is not inside its deployment folder.
    Every item is kept when a deployment the plan kept for its rank (``kept_by_rank``: the newest
    ``min_keep``/``keep``) is gone since, or emptied down to its folder marker: the ranking the plan was
    approved under no longer holds (a rollback removed a newer release), and deleting now would leave fewer
    deployments than promised. Likewise when such a deployment's newest object is gone or older since
    (its newest file deleted by hand): the deployment is still there, so the count holds, but its time went
    back and a deployment planned for deletion may be newer than it now."""
    if kept_by_rank:
        newest = _kept_newest(client, bucket, prefix, planned, kept_by_rank)
        # listed only where HeadObject did not find content: usually one request per deployment in all
        unconfirmed = [name for name in kept_by_rank if not (name in newest and newest[name].holds_content)]
        gone = _emptied(client, bucket, prefix, unconfirmed)  # a folder with nothing left at all is empty too
        if gone:
            named = ", ".join(repr(shown(name)) for name in gone[:5])
            why = (f"deployments the plan kept as the newest are gone or emptied since planning ({named}"
                   f"{' …' if len(gone) > 5 else ''}): the ranking changed, nothing of this chunk is deleted; plan again")
            return {item.key: why for item in items}
        changed = sorted((name, check.why) for name, check in newest.items() if check.why is not None)
        if changed:
            named = "; ".join(f"{shown(name)!r}: {why}" for name, why in changed[:5])
            why = (f"deployments the plan kept as the newest changed since planning ({named}"
                   f"{' …' if len(changed) > 5 else ''}): the ranking may have changed, nothing of this chunk is "
                   "deleted; plan again")
            return {item.key: why for item in items}
    protected: dict[str, str] = {}
    groups = sorted({i.group for i in items})
    why_group: dict[str, str] = {}
    for name in groups:
        row = planned.get(name)
        if not name or row is None or not row.get("delete"):
            why_group[name] = f"deployment {name!r} was not planned for deletion"
    to_check = [g for g in groups if g not in why_group]
    current = _current_deployments(client, bucket, prefix, to_check)
    for name in to_check:
        now_dep, row = current.get(name), planned[name]
        if now_dep is not None and now_dep.newest > row["newest"]:
            why_group[name] = (f"deployment {name!r} changed since planning: newest object {now_dep.newest_key} "
                               f"at {now_dep.newest} (planned newest {row['newest']})")
    for item in items:
        if item.group in why_group:
            protected[item.key] = why_group[item.group]
        elif not item.key.startswith(f"{prefix}{item.group}/"):
            protected[item.key] = f"key is not inside deployment folder {prefix}{item.group}/"
    return protected


def make_recheck(ctx: Any) -> Any:
    """The re-check factory for :func:`include.deletion.airflow.add_deletion_tasks`."""
    prefix = str(ctx.plan.get("prefix", ""))

    rows = planned_deployments(ctx.run_dir, ctx.plan)  # pinned, so written with the flags below
    kept_by_rank = [name for name, row in rows.items() if row.get("holds_rank")]

    def recheck(items: list[PlanItem]) -> dict[str, str]:
        return recheck_deployments(ctx.client, ctx.bucket, prefix, rows, items, kept_by_rank)

    return recheck
