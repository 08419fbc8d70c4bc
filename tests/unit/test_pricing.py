"""include.storage_report.pricing: dated list prices, Variable overrides, fallbacks that are reported."""

from __future__ import annotations

import pytest

from include.storage_report.pricing import GB, LIST_PRICES, PRICES_AS_OF, PRICES_SOURCE, load_prices


def test_table_is_dated_sourced_and_plausible():
    assert PRICES_AS_OF[:4].isdigit() and "aws.amazon.com/s3/pricing" in PRICES_SOURCE
    for region, classes in LIST_PRICES.items():
        assert classes["STANDARD"] > classes["STANDARD_IA"] > classes["GLACIER_IR"] > classes["DEEP_ARCHIVE"], region


def test_monthly_cost_is_bytes_over_binary_gb_times_price():
    prices = load_prices()
    assert prices.monthly_cost("us-east-1", "STANDARD", 10 * GB) == pytest.approx(0.23)
    assert prices.monthly_cost("us-east-1", "DEEP_ARCHIVE", 1000 * GB) == pytest.approx(0.99)
    assert prices.monthly_cost("eu-central-1", "STANDARD", GB) == pytest.approx(0.0245)
    assert prices.describe()["fallback_regions"] == {} and prices.describe()["unpriced"] == []


def test_unknown_region_falls_back_to_us_east_1_and_says_so():
    prices = load_prices()
    assert prices.monthly_cost("ap-south-2", "STANDARD", GB) == pytest.approx(0.023)
    assert prices.describe()["fallback_regions"] == {"ap-south-2": "us-east-1"}


def test_unknown_class_costs_nothing_and_is_listed():
    prices = load_prices()
    assert prices.monthly_cost("us-east-1", "OUTPOSTS", GB) == 0.0
    assert prices.describe()["unpriced"] == ["us-east-1/OUTPOSTS"]


def test_override_merges_class_by_class_and_adds_regions():
    prices = load_prices({"as_of": "2027-01-01", "source": "contract",
                          "prices": {"us-east-1": {"STANDARD": 0.02}, "ap-south-1": {"STANDARD": 0.025}}})
    assert prices.price("us-east-1", "STANDARD") == 0.02
    assert prices.price("us-east-1", "GLACIER") == LIST_PRICES["us-east-1"]["GLACIER"]
    assert prices.price("ap-south-1", "STANDARD") == 0.025
    assert prices.describe()["as_of"] == "2027-01-01" and prices.describe()["source"] == "contract"
    assert load_prices({"prices": {}}).describe()["source"].endswith("overridden by pricing (key of the Variable s3ops_storage_report)")


@pytest.mark.parametrize("bad", [
    {"prices": {"us-east-1": 0.02}},
    {"prices": {"us-east-1": {"STANDARD": "cheap"}}},
    {"prices": {"us-east-1": {"STANDARD": -1}}},
    {"prices": ["us-east-1"]},
])
def test_bad_override_names_the_problem(bad):
    with pytest.raises(ValueError, match="s3ops_storage_report"):
        load_prices(bad)
