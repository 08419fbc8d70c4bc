"""S3 storage list prices, for the storage report's "estimated at list price" monthly costs.

The table is dated and sourced. It holds the first pricing tier (the first 50 TB a month) of storage
only: no requests, retrievals, transfer, monitoring fees, minimum object sizes or minimum storage
durations, and no discounts. Prices are USD per GB-month where AWS's GB is 2**30 bytes. Override or
extend it with the deployment setting ``pricing`` (key of the Airflow Variable ``s3ops_storage_report``;
``--pricing FILE`` on the command line)::

    {"as_of": "2026-01-01", "source": "our AWS contract",
     "prices": {"eu-west-1": {"STANDARD": 0.021}, "ap-south-1": {"STANDARD": 0.025, "GLACIER": 0.0045}}}

Regions in the override are merged class by class over the built-in table. A region missing from
the table, or a class missing from a region's prices, is priced as ``us-east-1`` and listed as a
fallback in the report; a class without any price costs 0 and the report says so. An override is checked by
:func:`check_pricing` wherever it comes from (the setting, when a run's settings are resolved and again
in ``aggregate``; a ``--pricing`` file, :func:`read_pricing_file`): region names, known storage
classes, prices from 0 to ``MAX_PRICE`` (never NaN or infinite), refused in one line naming the entry.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from include.core.settings import short_json

#: how messages name the override
VARIABLE = "pricing (key of the Variable s3ops_storage_report)"
#: The keys of an override.
OVERRIDE_KEYS = ("as_of", "source", "prices")
#: The highest price an override may set, in USD per GB-month (list prices are cents): it keeps every
#: cost finite (2**63 bytes at this price is about 8.6e15 USD).
MAX_PRICE = 1_000_000
#: A ``--pricing`` file is a few KB; a bigger one is refused rather than read into memory.
MAX_FILE_BYTES = 1 << 20
#: ``as_of`` and ``source`` are printed in every report: short, printable text.
MAX_TEXT = 200
#: Storage classes as ListObjectsV2 names them (the ``storage_classes`` param's enum; every one of botocore's
#: ``ObjectStorageClass``, so that a class S3 lists can be filtered for and priced by an override).
STORAGE_CLASSES = (
    "STANDARD", "INTELLIGENT_TIERING", "STANDARD_IA", "ONEZONE_IA", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE",
    "REDUCED_REDUNDANCY", "EXPRESS_ONEZONE", "OUTPOSTS", "SNOW", "FSX_OPENZFS", "FSX_ONTAP", "AWS_BACKUP_WARM",
    "AWS_BACKUP_LOW_COST_WARM",
)
#: An AWS region name (eu-west-1, us-gov-west-1, ap-southeast-4, the European Sovereign Cloud's
#: eusc-de-east-1): price table keys and the ``regions`` filter.
REGION_PATTERN = r"^[a-z]{2,4}(-[a-z]+)+-[0-9]+$"
GB = 1024**3
FALLBACK_REGION = "us-east-1"

PRICES_AS_OF = "2025-06-01"
PRICES_SOURCE = "https://aws.amazon.com/s3/pricing/ (Storage, first 50 TB / month tier)"

_US_STANDARD = {
    "STANDARD": 0.023,
    "INTELLIGENT_TIERING": 0.023,  # frequent-access tier; the automatic tiers cost less
    "STANDARD_IA": 0.0125,
    "ONEZONE_IA": 0.01,
    "GLACIER_IR": 0.004,
    "GLACIER": 0.0036,
    "DEEP_ARCHIVE": 0.00099,
    "REDUCED_REDUNDANCY": 0.024,  # legacy class, no longer on the pricing page
    "EXPRESS_ONEZONE": 0.11,
}

#: USD per GB-month, by region, by storage class (as ListObjectsV2 names the class).
LIST_PRICES: dict[str, dict[str, float]] = {
    "us-east-1": dict(_US_STANDARD),
    "us-east-2": dict(_US_STANDARD),
    "us-west-2": dict(_US_STANDARD),
    "eu-west-1": {k: v for k, v in _US_STANDARD.items() if k != "EXPRESS_ONEZONE"},
    "eu-central-1": {
        "STANDARD": 0.0245,
        "INTELLIGENT_TIERING": 0.0245,
        "STANDARD_IA": 0.0135,
        "ONEZONE_IA": 0.0108,
        "GLACIER_IR": 0.005,
        "GLACIER": 0.0045,
        "DEEP_ARCHIVE": 0.0018,
        "REDUCED_REDUNDANCY": 0.0264,
    },
}


@dataclass
class PriceTable:
    """List prices plus where they come from; remembers what it had to guess."""

    prices: dict[str, dict[str, float]]
    as_of: str = PRICES_AS_OF
    source: str = PRICES_SOURCE
    fallback_regions: set[str] = field(default_factory=set)
    unpriced: set[tuple[str, str]] = field(default_factory=set)

    def price(self, region: str | None, storage_class: str) -> float | None:
        """USD per GB-month, or None when the class has no price (it then costs 0 in the report). A region
        missing from the table is priced as ``us-east-1`` (``fallback_regions`` names it); so is a class
        missing from a region's table (an override that prices only some classes of a new region):
        ``fallback_regions`` names it ``region/CLASS``."""
        name = region or "unknown"
        table = self.prices.get(region or "")
        fallback = self.prices.get(FALLBACK_REGION, {})
        if table is None:
            self.fallback_regions.add(name)
            table = fallback
        found = table.get(storage_class)
        if found is None and table is not fallback and storage_class in fallback:
            self.fallback_regions.add(f"{name}/{storage_class}")
            found = fallback[storage_class]
        if found is None:
            self.unpriced.add((name, storage_class))
        return found

    def monthly_cost(self, region: str | None, storage_class: str, size_bytes: int) -> float:
        """Estimated USD per month for ``size_bytes`` kept in ``storage_class`` (list price)."""
        per_gb = self.price(region, storage_class) or 0.0
        return size_bytes / GB * per_gb

    def describe(self) -> dict[str, Any]:
        """The report's ``pricing`` block."""
        return {
            "label": "estimated at list price",
            "currency": "USD",
            "unit": "GB-month (GB = 2^30 bytes)",
            "as_of": self.as_of,
            "source": self.source,
            "fallback_regions": {r: FALLBACK_REGION for r in sorted(self.fallback_regions)},
            "unpriced": [f"{r}/{c}" for r, c in sorted(self.unpriced)],
        }


def _check_text(value: Any, entry: str) -> None:
    if not isinstance(value, str) or len(value) > MAX_TEXT or not value.isprintable():
        raise ValueError(f"{entry} = {short_json(value, 60)} is not allowed: use text of at most {MAX_TEXT} printable "
                         "characters")


def _check_price(usd: Any, entry: str) -> None:
    """A price is a number from 0 to ``MAX_PRICE``: NaN, infinities (``1e400``) and booleans are refused."""
    if isinstance(usd, bool) or not isinstance(usd, (int, float)) or not 0 <= usd <= MAX_PRICE:
        raise ValueError(f"{entry} = {short_json(usd, 60)} is not a price: use a number of USD per GB-month from 0 to "
                         f"{MAX_PRICE:,}")


def _check_region(region: Any, classes: Any, where: str) -> None:
    entry = f"{where}: prices[{short_json(region, 60)}]"
    if not isinstance(region, str) or not re.fullmatch(REGION_PATTERN, region):
        raise ValueError(f"{entry}: {short_json(region, 60)} is not a region name such as eu-west-1 (lower case)")
    if not isinstance(classes, dict):
        raise ValueError(f"{entry} = {short_json(classes, 60)} is not allowed: map storage classes to USD per GB-month, "
                         'like {"STANDARD": 0.023}')
    for cls, usd in classes.items():
        if cls not in STORAGE_CLASSES:
            raise ValueError(f"{entry}[{short_json(cls, 60)}]: {short_json(cls, 60)} is not a storage class: use one of "
                             f"{', '.join(STORAGE_CLASSES)}")
        _check_price(usd, f"{entry}[{short_json(cls, 60)}]")


def check_pricing(override: Any, where: str = VARIABLE) -> dict[str, Any]:
    """``override`` (the ``pricing`` setting, or a ``--pricing`` file's JSON) if it is valid, else a one-line
    ValueError naming ``where``, the entry and what is allowed. The DAG's setting, its ``aggregate`` task and
    the command line all check prices here."""
    if not isinstance(override, dict):
        raise ValueError(f"{where} = {short_json(override, 60)} is not allowed: use a JSON object like "
                         '{"as_of": "2026-01-01", "source": "our contract", "prices": {"eu-west-1": {"STANDARD": 0.021}}}')
    unknown = [key for key in override if key not in OVERRIDE_KEYS]
    if unknown:
        raise ValueError(f"{where}: the key {short_json(unknown[0], 60)} is not allowed: use {', '.join(OVERRIDE_KEYS)}")
    for key in ("as_of", "source"):
        if key in override:
            _check_text(override[key], f"{where}: {key}")
    prices = override.get("prices", {})
    if not isinstance(prices, dict):
        raise ValueError(f"{where}: prices = {short_json(prices, 60)} is not allowed: map regions to "
                         '{storage class: USD per GB-month}, like {"eu-west-1": {"STANDARD": 0.021}}')
    for region, classes in prices.items():
        _check_region(region, classes, where)
    return override


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's pairs as a dict; a key given twice is refused (JSON would keep the last silently)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {short_json(key, 60)} appears twice in one object")
        out[key] = value
    return out


def read_pricing_file(path: str) -> dict[str, Any]:
    """The override in the ``--pricing`` file ``path``, checked by :func:`check_pricing`; else a one-line
    ValueError naming the file."""
    where = f"--pricing {path}"
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"{where}: cannot read it: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ValueError(f"{where}: larger than {MAX_FILE_BYTES:,} bytes; a price table is a few KB")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{where} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        override = json.loads(text, object_pairs_hook=_unique_keys)
    except ValueError as exc:  # JSONDecodeError, a duplicate key, an integer too long to read
        raise ValueError(f"{where} is not valid JSON: {exc}") from None
    return check_pricing(override, where)


def load_prices(override: dict[str, Any] | None = None) -> PriceTable:
    """The built-in table, with ``override`` (the ``pricing`` setting, checked by :func:`check_pricing`)
    merged over it class by class. None or ``{}``: the built-in table as it is."""
    prices = {region: dict(classes) for region, classes in LIST_PRICES.items()}
    if override is None:
        return PriceTable(prices)
    check_pricing(override)
    if not override:
        return PriceTable(prices)
    for region, classes in override.get("prices", {}).items():
        prices.setdefault(region, {}).update({cls: float(usd) for cls, usd in classes.items()})
    return PriceTable(
        prices,
        as_of=override.get("as_of", f"{PRICES_AS_OF} + overrides"),
        source=override.get("source", f"{PRICES_SOURCE}, overridden by {VARIABLE}"),
    )
