"""include.storage_report.pricing: dated list prices, Variable overrides, fallbacks that are reported."""

from __future__ import annotations

import math

import pytest

from include.storage_report.pricing import (
    GB,
    LIST_PRICES,
    MAX_FILE_BYTES,
    MAX_PRICE,
    PRICES_AS_OF,
    PRICES_SOURCE,
    check_pricing,
    load_prices,
    read_pricing_file,
)


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


# ------------------------------------------------------------------ one check for the setting and --pricing

ENTRY = 'prices["us-east-1"]["STANDARD"]'


@pytest.mark.parametrize(("usd", "shown"), [
    (math.nan, "NaN"), (math.inf, "Infinity"), (-math.inf, "-Infinity"), (10**400, "1000000000"), (-1, "-1"),
    (1_000_001, "1000001"), (True, "true"), ("0.02", '"0.02"'), (None, "null"),
])
def test_a_price_must_be_a_finite_number_from_0_to_the_maximum(usd, shown):
    """NaN passed ``usd < 0`` and printed $nan/month (and NaN in --json); 1e400 printed $inf."""
    with pytest.raises(ValueError) as refused:
        load_prices({"prices": {"us-east-1": {"STANDARD": usd}}})
    message = str(refused.value)
    assert message.startswith(f"pricing (key of the Variable s3ops_storage_report): {ENTRY} = {shown}")
    assert message.endswith(f"is not a price: use a number of USD per GB-month from 0 to {MAX_PRICE:,}")
    assert "\n" not in message


@pytest.mark.parametrize(("override", "says"), [
    ([], '= [] is not allowed: use a JSON object like {"as_of"'),
    ("cheap", '= "cheap" is not allowed: use a JSON object'),
    ({"pricess": {}}, 'the key "pricess" is not allowed: use as_of, source, prices'),
    ({"prices": {"us-east-1": {"BOGUS": 0.01}}},
     'prices["us-east-1"]["BOGUS"]: "BOGUS" is not a storage class: use one of STANDARD, INTELLIGENT_TIERING'),
    ({"prices": {"eu-west1": {"STANDARD": 0.01}}}, 'prices["eu-west1"]: "eu-west1" is not a region name'),
    ({"prices": {"us-east-1": 0.02}}, 'prices["us-east-1"] = 0.02 is not allowed: map storage classes'),
    ({"prices": ["us-east-1"]}, 'prices = ["us-east-1"] is not allowed: map regions'),
    ({"as_of": 2026}, "as_of = 2026 is not allowed: use text of at most 200 printable characters"),
    ({"source": "x\x1b[31m"}, "source = \"x\\u001b[31m\" is not allowed: use text"),
])
def test_a_bad_override_is_refused_in_one_line_naming_the_entry(override, says):
    with pytest.raises(ValueError) as refused:
        check_pricing(override, "W")
    assert str(refused.value).startswith("W") and says in str(refused.value), refused.value
    assert "\n" not in str(refused.value)


def test_an_empty_override_is_the_built_in_table_and_known_classes_without_a_price_may_get_one():
    assert load_prices({}).describe() == load_prices().describe()
    assert load_prices({"prices": {"us-east-1": {"OUTPOSTS": 0.05}}}).price("us-east-1", "OUTPOSTS") == 0.05


BAD_FILES = [
    ('{"prices": {"us-east-1": {"STANDARD": NaN}}}', f"{ENTRY} = NaN is not a price"),
    ('{"prices": {"us-east-1": {"STANDARD": Infinity}}}', f"{ENTRY} = Infinity is not a price"),
    ('{"prices": {"us-east-1": {"STANDARD": 1e400}}}', f"{ENTRY} = Infinity is not a price"),
    ("[]", "= [] is not allowed: use a JSON object"),
    ("null", "= null is not allowed: use a JSON object"),
    ('{"prices": {"us-east-1": {"BOGUS": 0.01}}}', '"BOGUS" is not a storage class: use one of STANDARD'),
    ('{"prices": {"us-east-1": {"STANDARD": 0.01, "STANDARD": 5}}}', 'is not valid JSON: the key "STANDARD" appears '
                                                                      "twice in one object"),
    ("", "is not valid JSON: Expecting value"),
]


@pytest.mark.parametrize(("text", "says"), BAD_FILES)
def test_a_bad_pricing_file_is_refused_naming_the_file_and_the_entry(tmp_path, text, says):
    path = tmp_path / "prices.json"
    path.write_text(text)
    with pytest.raises(ValueError) as refused:
        read_pricing_file(str(path))
    assert str(refused.value).startswith(f"--pricing {path}") and says in str(refused.value), refused.value


def test_an_unreadable_pricing_file_is_refused_naming_it(tmp_path):
    for path, says in ((tmp_path / "missing.json", "cannot read it: No such file or directory"),
                       (tmp_path, "cannot read it: Is a directory")):
        with pytest.raises(ValueError, match=f"^--pricing {path}: {says}$"):
            read_pricing_file(str(path))
    (tmp_path / "latin1.json").write_bytes(b'{"source": "caf\xe9"}')
    with pytest.raises(ValueError, match="is not UTF-8 text"):
        read_pricing_file(str(tmp_path / "latin1.json"))
    (tmp_path / "big.json").write_bytes(b" " * (MAX_FILE_BYTES + 1))
    with pytest.raises(ValueError, match="larger than 1,048,576 bytes"):
        read_pricing_file(str(tmp_path / "big.json"))
    good = tmp_path / "good.json"
    good.write_text('\ufeff{"as_of": "2027-01-01", "prices": {"eu-west-1": {"STANDARD": 0.021}}}')  # a BOM is fine
    assert load_prices(read_pricing_file(str(good))).price("eu-west-1", "STANDARD") == 0.021


@pytest.mark.parametrize("override", [
    [], {"pricess": {}}, {"prices": {"us-east-1": {"BOGUS": 0.01}}}, {"prices": {"us-east-1": {"STANDARD": -1}}},
    {"prices": {"us-east-1": {"STANDARD": 10**400}}}, {"prices": {"eu-west1": {}}}, {"as_of": 1},
])
def test_the_dag_setting_refuses_what_the_command_line_refuses_with_the_same_words(override):
    """The Variable's ``pricing`` goes through check_pricing when the run's settings are resolved (its first
    task), not only when ``aggregate`` prices the buckets after every listing."""
    from include.core.settings import SettingsError
    from include.storage_report.settings import SETTINGS

    with pytest.raises(ValueError) as cli:
        check_pricing(override, "W")
    with pytest.raises(SettingsError) as dag:
        SETTINGS.resolve({}, {"pricing": override})
    assert str(cli.value).removeprefix("W") in str(dag.value)
    with pytest.raises(SettingsError, match="is not a finite number"):  # NaN is refused before any schema
        SETTINGS.resolve({}, {"pricing": {"prices": {"us-east-1": {"STANDARD": math.nan}}}})


@pytest.mark.parametrize(("text", "says"), BAD_FILES[:6])
def test_report_refuses_a_bad_pricing_file_with_exit_2_before_connecting(tmp_path, monkeypatch, capsys, text, says):
    from include.storage_report import cli

    def no_connection(*_: object, **__: object) -> None:
        raise AssertionError("connected before refusing --pricing")

    monkeypatch.setattr(cli.ClientFactory, "__call__", no_connection)
    path = tmp_path / "prices.json"
    path.write_text(text)
    assert cli.main(["--pricing", str(path), "--json", "--endpoint-url", "http://127.0.0.1:9"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"storage report: --pricing {path}") and says in err
    assert len(err.splitlines()) == 1


def test_a_class_an_override_leaves_out_of_a_new_region_is_priced_as_us_east_1():
    """An override pricing only STANDARD in ap-south-1 made that region's GLACIER cost $0 (its other
    classes lost the fallback a region missing altogether gets)."""
    prices = load_prices({"prices": {"ap-south-1": {"STANDARD": 0.025}}})
    assert prices.monthly_cost("ap-south-1", "STANDARD", GB) == pytest.approx(0.025)
    assert prices.monthly_cost("ap-south-1", "GLACIER", GB) == pytest.approx(load_prices().price("us-east-1", "GLACIER"))
    assert prices.describe()["fallback_regions"] == {"ap-south-1/GLACIER": "us-east-1"}
    assert prices.describe()["unpriced"] == []


def test_every_storage_class_s3_lists_can_be_priced_and_filtered():
    """A class ListObjectsV2 can name (botocore's ObjectStorageClass) is one an override may price and the
    storage_classes filter may name: FSX_OPENZFS, FSX_ONTAP and the AWS Backup classes were refused, so
    objects in them stayed unpriced (cost 0) whatever the override said."""
    import botocore.session

    from include.storage_report.pricing import STORAGE_CLASSES, load_prices

    listed = botocore.session.get_session().get_service_model("s3").shape_for("ObjectStorageClass").enum
    assert set(listed) <= set(STORAGE_CLASSES)
    prices = load_prices({"prices": {"us-east-1": {cls: 0.05 for cls in listed}}})
    assert prices.monthly_cost("us-east-1", "FSX_OPENZFS", 2 * 1024**3) == 0.1
    assert prices.describe()["unpriced"] == []
