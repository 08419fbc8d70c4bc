"""S3 storage list prices, for the storage report's "estimated at list price" monthly costs.

The table is dated and sourced. It holds the first pricing tier (the first 50 TB a month) of storage
only: no requests, retrievals, transfer, monitoring fees, minimum object sizes or minimum storage
durations, and no discounts. Prices are USD per GB-month where AWS's GB is 2**30 bytes. Override or
extend it with the deployment setting ``pricing`` (key of the Airflow Variable ``s3ops_storage_report``;
``--pricing FILE`` on the command line)::

    {"as_of": "2026-01-01", "source": "our AWS contract",
     "prices": {"eu-west-1": {"STANDARD": 0.021}, "ap-south-1": {"STANDARD": 0.025, "GLACIER": 0.0045}}}

Regions in the override are merged class by class over the built-in table. A region missing from
the table is priced as ``us-east-1`` and listed as a fallback in the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: how messages name the override
VARIABLE = "pricing (key of the Variable s3ops_storage_report)"
#: Storage classes as ListObjectsV2 names them (the ``storage_classes`` param's enum).
STORAGE_CLASSES = (
    "STANDARD", "INTELLIGENT_TIERING", "STANDARD_IA", "ONEZONE_IA", "GLACIER_IR", "GLACIER", "DEEP_ARCHIVE",
    "REDUCED_REDUNDANCY", "EXPRESS_ONEZONE", "OUTPOSTS", "SNOW",
)
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
        """USD per GB-month, or None when the class has no price (it then costs 0 in the report)."""
        table = self.prices.get(region or "")
        if table is None:
            self.fallback_regions.add(region or "unknown")
            table = self.prices.get(FALLBACK_REGION, {})
        found = table.get(storage_class)
        if found is None:
            self.unpriced.add((region or "unknown", storage_class))
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


def load_prices(override: dict[str, Any] | None = None) -> PriceTable:
    """The built-in table, with ``override`` (the ``pricing`` setting) merged over it."""
    prices = {region: dict(classes) for region, classes in LIST_PRICES.items()}
    if not override:
        return PriceTable(prices)
    if not isinstance(override, dict) or not isinstance(override.get("prices", {}), dict):
        raise ValueError(f'{VARIABLE} must be a JSON object like {{"as_of", "source", "prices": {{region: {{class: usd}}}}}}')
    for region, classes in override.get("prices", {}).items():
        if not isinstance(classes, dict):
            raise ValueError(f"{VARIABLE}: prices[{region!r}] must map storage classes to USD per GB-month")
        for cls, usd in classes.items():
            if not isinstance(usd, (int, float)) or isinstance(usd, bool) or usd < 0:
                raise ValueError(f"{VARIABLE}: prices[{region!r}][{cls!r}] = {usd!r} is not a price >= 0")
        prices.setdefault(region, {}).update({cls: float(usd) for cls, usd in classes.items()})
    return PriceTable(
        prices,
        as_of=str(override.get("as_of", f"{PRICES_AS_OF} + overrides")),
        source=str(override.get("source", f"{PRICES_SOURCE}, overridden by {VARIABLE}")),
    )
