"""Internal consistency of the shipped reference data (cbm/reference/data/*.csv).

Uses only the stdlib csv module: these tests check the files themselves, not the loader.
"""

import csv
import datetime as dt
import itertools
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "cbm/reference/data"

HEADERS = {
    "regions.csv": ["code", "name", "description"],
    "states.csv": ["code", "name", "region", "tags", "osce_since", "note"],
    "state_aliases.csv": ["alias", "state", "note"],
    "regime_participation.csv": [
        "state",
        "regime",
        "status",
        "valid_from",
        "valid_to",
        "group",
        "note",
        "source",
        "source_status",
    ],
    "os_quotas.csv": [
        "holder",
        "members",
        "passive_quota",
        "note",
        "citation",
        "source_status",
    ],
    "os_airfields.csv": [
        "holder",
        "airfield",
        "max_distance_km",
        "note",
        "citation",
        "source_status",
    ],
    "rule_parameters.csv": [
        "regime",
        "edition",
        "key",
        "value",
        "unit",
        "paragraph",
        "status",
        "source",
        "description",
    ],
}

REGION_COUNTS = {
    "north_america": 2,
    "nordic": 5,
    "baltic": 3,
    "western_europe": 10,
    "central_europe": 9,
    "southern_europe": 6,
    "south_eastern_europe": 6,
    "black_sea_eastern_europe": 7,
    "south_caucasus": 3,
    "central_asia": 6,
}
TAGS = {"baltic_sea", "black_sea", "cfe_flank"}
REGIMES = {"VD", "OST", "CFE", "GEMI"}
STATUSES = {"party", "suspended", "withdrawn"}
SOURCE_STATUSES = {"primary", "secondary", "unverified"}
EDITIONS = {"VD": "VD2011", "OST": "OST1992", "CFE": "CFE1990", "GEMI": "GEMI1994"}
NUMERIC_UNITS = {
    "troops",
    "tanks",
    "acv",
    "artillery",
    "sorties",
    "days",
    "hours",
    "working_days",
    "months",
    "years",
    "count",
    "percent",
    "km",
    "units_per_visit",
    "ratio",
}
WORD_UNITS = {
    "comparator": {"gte", "gt"},
    "rounding": {"ceil", "floor", "ceil_even"},
}
UNITS = NUMERIC_UNITS | set(WORD_UNITS) | {"month_day"}
OST_PARTIES = {
    "BLR", "BEL", "BIH", "BGR", "CAN", "HRV", "CZE", "DNK", "EST", "FIN", "FRA", "GEO",
    "DEU", "GRC", "HUN", "ISL", "ITA", "LVA", "LTU", "LUX", "NLD", "NOR", "POL", "PRT",
    "ROU", "RUS", "SVK", "SVN", "ESP", "SWE", "TUR", "UKR", "GBR", "USA",
}  # fmt: skip
CFE_GROUP1 = {
    "ARM", "AZE", "BLR", "BGR", "CZE", "GEO", "HUN", "KAZ", "MDA", "POL", "ROU", "RUS",
    "SVK", "UKR",
}  # fmt: skip
CFE_GROUP2 = {
    "BEL", "CAN", "DNK", "FRA", "DEU", "GRC", "ISL", "ITA", "LUX", "NLD", "NOR", "PRT",
    "ESP", "TUR", "GBR", "USA",
}  # fmt: skip
SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")
DOTTED_KEY = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
MONTH_DAY = re.compile(r"^(\d{2})-(\d{2})$")


def read(name):
    with open(DATA / name, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, strict=True))


def date(value):
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", value), value
    return dt.date.fromisoformat(value)


def key(alias):
    return alias.strip().casefold()


@pytest.fixture(scope="module")
def states():
    return read("states.csv")


@pytest.fixture(scope="module")
def state_codes(states):
    return {s["code"] for s in states}


@pytest.fixture(scope="module")
def participation():
    return read("regime_participation.csv")


@pytest.fixture(scope="module")
def quotas():
    return read("os_quotas.csv")


@pytest.fixture(scope="module")
def params():
    return read("rule_parameters.csv")


# --- file format -----------------------------------------------------------


@pytest.mark.parametrize("name", sorted(HEADERS))
def test_file_format(name):
    raw = (DATA / name).read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf"), "BOM not allowed"
    text = raw.decode("utf-8")
    assert text.endswith("\n"), "trailing newline required"
    assert not text.endswith("\n\n"), "no blank line at the end"
    rows = list(csv.reader(text.splitlines(), strict=True))
    assert rows[0] == HEADERS[name]
    assert len(rows) > 1
    for number, row in enumerate(rows[1:], start=2):
        assert len(row) == len(HEADERS[name]), f"{name} row {number}: {row}"
        assert not row[0].lstrip().startswith("#"), f"{name} row {number}: comment"
        assert all(cell == cell.strip() for cell in row), f"{name} row {number}"


# --- regions and states ----------------------------------------------------


def test_regions_are_the_ten_of_the_reference():
    regions = read("regions.csv")
    codes = [r["code"] for r in regions]
    assert len(codes) == len(set(codes)) == 10
    assert set(codes) == set(REGION_COUNTS)
    assert all(SNAKE.match(c) for c in codes)
    assert all(r["name"] for r in regions)


def test_exactly_57_states_with_unique_alpha3_codes(states):
    codes = [s["code"] for s in states]
    assert len(codes) == 57
    assert len(set(codes)) == 57
    assert all(re.fullmatch(r"[A-Z]{3}", c) for c in codes), codes
    assert "VAT" in codes and "XKX" not in codes and "KOS" not in codes
    names = [s["name"] for s in states]
    assert len(set(names)) == 57 and all(names)
    assert {"Türkiye", "Czechia", "North Macedonia", "Russian Federation"} <= set(names)


def test_every_state_region_exists_and_counts_match(states):
    regions = {r["code"] for r in read("regions.csv")}
    counts = Counter(s["region"] for s in states)
    assert set(counts) <= regions
    assert all(counts[r] >= 1 for r in regions)
    assert dict(counts) == REGION_COUNTS


def test_state_tags_and_dates(states):
    by_code = {s["code"]: s for s in states}
    for s in states:
        tags = s["tags"].split(" ") if s["tags"] else []
        assert set(tags) <= TAGS, s
        assert len(tags) == len(set(tags)), s
        since = date(s["osce_since"])
        assert dt.date(1975, 8, 1) <= since <= dt.date.today(), s
    assert date(by_code["MNG"]["osce_since"]) == dt.date(2012, 11, 21)
    assert date(by_code["CZE"]["osce_since"]) == dt.date(1993, 1, 1)
    assert "black_sea" in by_code["TUR"]["tags"].split()
    assert "baltic_sea" in by_code["RUS"]["tags"].split()


# --- aliases ---------------------------------------------------------------


def test_aliases_unique_and_point_to_known_states(state_codes):
    aliases = read("state_aliases.csv")
    keys = [key(a["alias"]) for a in aliases]
    duplicates = [k for k, n in Counter(keys).items() if n > 1]
    assert not duplicates, duplicates
    for a in aliases:
        assert a["alias"], a
        assert a["state"] in state_codes, a
        # an alias may never be another State's alpha-3 code
        upper = a["alias"].strip().upper()
        assert upper not in state_codes or upper == a["state"], a


def test_aliases_cover_names_alpha2_and_variants(states):
    mapping = {key(a["alias"]): a["state"] for a in read("state_aliases.csv")}
    for s in states:
        assert mapping.get(key(s["name"])) == s["code"], s["name"]
    two_letter = Counter(v for k, v in mapping.items() if re.fullmatch(r"[a-z]{2}", k))
    assert all(two_letter[s["code"]] >= 1 for s in states)
    expected = {
        "Turkey": "TUR",
        "Turkiye": "TUR",
        "Republic of Türkiye": "TUR",
        "Czech Republic": "CZE",
        "Russia": "RUS",
        "USA": "USA",
        "US": "USA",
        "United States": "USA",
        "UK": "GBR",
        "Great Britain": "GBR",
        "United Kingdom of Great Britain and Northern Ireland": "GBR",
        "FYROM": "MKD",
        "Macedonia": "MKD",
        "Republic of Moldova": "MDA",
        "Vatican": "VAT",
        "Kyrgyz Republic": "KGZ",
        "Slovak Republic": "SVK",
        "Byelorussia": "BLR",
        "the Netherlands": "NLD",
        "Holland": "NLD",
        "Bosnia-Herzegovina": "BIH",
        "BiH": "BIH",
        "DE": "DEU",
    }
    for alias, code in expected.items():
        assert mapping.get(key(alias)) == code, alias
    for historical in ("USSR", "Soviet Union", "Yugoslavia", "Czechoslovakia", "CSFR"):
        assert key(historical) not in mapping, historical
    assert key("Czech and Slovak Federal Republic") not in mapping


# --- regime participation --------------------------------------------------


def test_participation_rows_are_valid(participation, state_codes):
    for row in participation:
        assert row["state"] in state_codes, row
        assert row["regime"] in REGIMES, row
        assert row["status"] in STATUSES, row
        assert row["source_status"] in SOURCE_STATUSES, row
        assert row["source"], row
        start = date(row["valid_from"])
        if row["valid_to"]:
            assert start <= date(row["valid_to"]), row


def test_participation_intervals_do_not_overlap(participation):
    intervals = defaultdict(list)
    for row in participation:
        end = date(row["valid_to"]) if row["valid_to"] else dt.date.max
        intervals[row["state"], row["regime"]].append((date(row["valid_from"]), end))
    for pair, spans in intervals.items():
        spans.sort()
        for (_, end), (next_start, _) in itertools.pairwise(spans):
            assert end < next_start, (pair, spans)
        assert sum(1 for _, end in spans if end == dt.date.max) <= 1, pair


def test_vd_and_gemi_cover_all_states_open_ended(participation, state_codes):
    for regime in ("VD", "GEMI"):
        rows = [r for r in participation if r["regime"] == regime]
        assert {r["state"] for r in rows} == state_codes
        assert all(r["status"] == "party" and not r["valid_to"] for r in rows)
    vd = {r["state"]: r["valid_from"] for r in participation if r["regime"] == "VD"}
    assert vd["USA"] == "1990-11-17" and vd["MNG"] == "2012-11-21"


def test_open_skies_parties_and_withdrawals(participation):
    ost = [r for r in participation if r["regime"] == "OST"]
    assert {r["state"] for r in ost} == OST_PARTIES
    assert len({r["state"] for r in ost}) == 34
    for state, withdrawal in (("USA", "2020-11-22"), ("RUS", "2021-12-18")):
        rows = sorted((r for r in ost if r["state"] == state), key=lambda r: r["valid_from"])
        assert [r["status"] for r in rows] == ["party", "withdrawn"]
        assert rows[1]["valid_from"] == withdrawal and not rows[1]["valid_to"]
        assert date(rows[0]["valid_to"]) + dt.timedelta(days=1) == date(withdrawal)
    groups = {r["state"]: r["group"] for r in ost}
    assert groups["BLR"] == groups["RUS"] == "BY-RU"
    assert groups["BEL"] == groups["NLD"] == groups["LUX"] == "Benelux"
    assert all(groups[s] == "" for s in OST_PARTIES - {"BLR", "RUS", "BEL", "NLD", "LUX"})


def test_cfe_parties_groups_and_russia(participation):
    cfe = [r for r in participation if r["regime"] == "CFE"]
    assert {r["state"] for r in cfe} == CFE_GROUP1 | CFE_GROUP2
    assert len({r["state"] for r in cfe}) == 30
    for r in cfe:
        assert r["group"] == ("group1" if r["state"] in CFE_GROUP1 else "group2"), r
    rus = sorted((r for r in cfe if r["state"] == "RUS"), key=lambda r: r["valid_from"])
    assert [(r["status"], r["valid_from"], r["valid_to"]) for r in rus] == [
        ("party", "1992-07-17", "2007-12-11"),
        ("suspended", "2007-12-12", "2023-11-06"),
        ("withdrawn", "2023-11-07", ""),
    ]
    usa = sorted((r for r in cfe if r["state"] == "USA"), key=lambda r: r["valid_from"])
    assert [(r["status"], r["valid_from"]) for r in usa] == [
        ("party", "1992-07-17"),
        ("suspended", "2023-12-07"),
    ]
    starts = {r["state"]: r["valid_from"] for r in cfe if r["status"] == "party"}
    assert starts["CZE"] == starts["SVK"] == "1993-01-01"
    for state in ("ARM", "AZE", "GEO", "KAZ", "UKR"):
        assert [r["status"] for r in cfe if r["state"] == state] == ["party"]


# --- Open Skies quotas and airfields ---------------------------------------


def test_os_quotas(quotas, state_codes):
    holders = [q["holder"] for q in quotas]
    assert len(holders) == len(set(holders)) == 21
    seen_members = []
    for q in quotas:
        members = q["members"].split(" ")
        assert members and set(members) <= state_codes, q
        seen_members.extend(members)
        assert int(q["passive_quota"]) > 0, q
        assert q["source_status"] in SOURCE_STATUSES, q
        assert q["citation"] == "OST Annex A Sec. I ¶1", q
    assert len(seen_members) == len(set(seen_members)), "a State in two holders"
    by_holder = {q["holder"]: q for q in quotas}
    assert int(by_holder["BY-RU"]["passive_quota"]) == 42
    assert by_holder["BY-RU"]["members"] == "BLR RUS"
    assert int(by_holder["USA"]["passive_quota"]) == 42
    assert set(by_holder["Benelux"]["members"].split()) == {"BEL", "NLD", "LUX"}
    assert int(by_holder["Benelux"]["passive_quota"]) == 6
    assert set(by_holder["CSFR"]["members"].split()) == {"CZE", "SVK"}
    assert int(by_holder["PRT"]["passive_quota"]) == 2


def test_os_airfields(quotas):
    holders = {q["holder"] for q in quotas}
    airfields = read("os_airfields.csv")
    assert len(airfields) == 54
    pairs = [(a["holder"], a["airfield"]) for a in airfields]
    assert len(pairs) == len(set(pairs))
    for a in airfields:
        assert a["holder"] in holders, a
        assert a["airfield"], a
        assert re.fullmatch(r"[1-9]\d*", a["max_distance_km"]), a
        assert a["source_status"] in SOURCE_STATUSES, a
    assert {a["holder"] for a in airfields} == holders
    distance = {(a["holder"], a["airfield"]): int(a["max_distance_km"]) for a in airfields}
    assert distance["BY-RU", "Vorkuta"] == 6500
    assert distance["DEU", "Wunstorf"] == 1200
    assert [a["airfield"] for a in airfields if a["holder"] == "ISL"] == ["Keflavik"]


# --- rule parameters -------------------------------------------------------


def test_rule_parameter_keys_units_and_status(params):
    keys = [(p["regime"], p["edition"], p["key"]) for p in params]
    duplicates = [k for k, n in Counter(keys).items() if n > 1]
    assert not duplicates, duplicates
    for p in params:
        assert p["regime"] in REGIMES, p
        assert p["edition"] == EDITIONS[p["regime"]], p
        assert DOTTED_KEY.match(p["key"]), p
        assert p["unit"] in UNITS, p
        assert p["status"] in {"verified", "commonly_cited"}, p
        assert p["paragraph"] and p["source"] and p["description"], p


def test_rule_parameter_values_parse(params):
    for p in params:
        unit, value = p["unit"], p["value"]
        if unit in NUMERIC_UNITS:
            assert re.fullmatch(r"\d+(\.\d+)?", value), p
            assert float(value) >= 0, p
        elif unit == "month_day":
            match = MONTH_DAY.match(value)
            assert match, p
            dt.date(2001, int(match[1]), int(match[2]))  # raises if not a real day
        else:
            assert value in WORD_UNITS[unit], p
        if unit == "percent":
            assert float(value) <= 100, p
        if unit == "ratio":
            assert 0 < float(value) <= 1, p


def test_comparators_and_roundings_belong_to_their_parameter(params):
    by_key = {(p["regime"], p["key"]): p for p in params}
    for (regime, k), p in by_key.items():
        if ".threshold." in k:
            prefix = k.split(".threshold.")[0]
            assert (regime, prefix + ".comparator") in by_key, k
        if p["unit"] == "comparator":
            assert k.endswith("comparator"), k
        if p["unit"] == "rounding":
            assert "rounding" in k, k


EXPECTED_VALUES = {
    ("VD", "annual_exchange.due_month_day"): "12-15",
    ("VD", "annual_exchange.valid_as_of_month_day"): "01-01",
    ("VD", "annual_calendar.due_month_day"): "11-15",
    ("VD", "prior_notification.threshold.troops"): "9000",
    ("VD", "prior_notification.threshold.tanks"): "250",
    ("VD", "prior_notification.threshold.acv"): "500",
    ("VD", "prior_notification.threshold.artillery"): "250",
    ("VD", "prior_notification.threshold.air_sorties"): "200",
    ("VD", "prior_notification.threshold.amphibious_airborne_troops"): "3000",
    ("VD", "prior_notification.comparator"): "gte",
    ("VD", "prior_notification.lead_days"): "42",
    ("VD", "alert_notification.lead_days"): "0",
    ("VD", "prior_notification.min_per_year"): "1",
    ("VD", "observation.threshold.troops"): "13000",
    ("VD", "observation.threshold.tanks"): "300",
    ("VD", "observation.threshold.amphibious_airborne_troops"): "3500",
    ("VD", "observation.comparator"): "gte",
    ("VD", "constraint.simultaneous.max_activities"): "3",
    ("VD", "constraint.simultaneous.threshold.troops"): "13000",
    ("VD", "constraint.simultaneous.threshold.artillery"): "300",
    ("VD", "constraint.simultaneous.comparator"): "gt",
    ("VD", "large_activity.threshold.troops"): "40000",
    ("VD", "large_activity.threshold.acv"): "2000",
    ("VD", "large_activity.comparator"): "gt",
    ("VD", "forecast.due_month_day"): "11-15",
    ("VD", "forecast.years_ahead"): "2",
    ("VD", "constraint.three_year.max_activities"): "1",
    ("VD", "constraint.three_year.window_years"): "3",
    ("VD", "constraint.per_year.max_activities"): "6",
    ("VD", "constraint.per_year_large.max_activities"): "3",
    ("VD", "constraint.per_year_large.threshold.troops"): "25000",
    ("VD", "inspection.passive_quota_per_year"): "3",
    ("VD", "inspection.max_per_requester_per_year"): "1",
    ("VD", "inspection.reply_hours"): "24",
    ("VD", "inspection.report_days"): "14",
    ("VD", "inspection.team_max"): "4",
    ("VD", "evaluation.units_per_visit"): "60",
    ("VD", "evaluation.units_rounding"): "ceil",
    ("VD", "evaluation.max_per_year"): "15",
    ("VD", "evaluation.per_requester_fraction"): "0.2",
    ("VD", "evaluation.per_requester_rounding"): "floor",
    ("VD", "evaluation.small_quota_threshold"): "5",
    ("VD", "evaluation.small_quota_per_requester_max"): "1",
    ("VD", "evaluation.per_unit_max_per_year"): "2",
    ("VD", "evaluation.per_unit_per_requester_max_per_year"): "1",
    ("VD", "evaluation.reply_hours"): "48",
    ("VD", "unusual_activity.reply_hours"): "48",
    ("VD", "analytics.near_threshold_band_percent"): "10",
    ("OST", "flight_notification.min_lead_hours"): "72",
    ("OST", "flight_acknowledgement.max_hours"): "24",
    ("OST", "mission.max_window_hours"): "96",
    ("OST", "mission.demo_extension_hours"): "24",
    ("OST", "mission.late_arrival_prohibit_hours"): "24",
    ("OST", "mission_report.max_days"): "7",
    ("OST", "quota.per_counterpart_cap_percent"): "50",
    ("OST", "quota.per_counterpart_cap_rounding"): "ceil",
    ("OST", "quota.first_distribution_percent"): "75",
    ("OST", "quota.first_distribution_rounding"): "floor",
    ("OST", "planning_notification.due_month_day"): "11-01",
    ("OST", "planning.max_flights_per_quarter"): "16",
    ("OST", "mission_plan.min_lead_hours"): "24",
    ("OST", "mission_plan.decline_after_hours"): "8",
    ("CFE", "annual_exchange.due_month_day"): "12-15",
    ("CFE", "annual_exchange.valid_as_of_month_day"): "01-01",
    ("CFE", "holdings_change.threshold_percent"): "10",
    ("CFE", "holdings_change.notification_working_days"): "5",
    ("CFE", "inspection.notice.declared_site_hours"): "36",
    ("CFE", "inspection.notice.challenge_hours"): "36",
    ("CFE", "inspection.notice.reduction_hours"): "96",
    ("CFE", "inspection.acknowledgement_hours"): "3",
    ("CFE", "reduction.phase1.percent"): "25",
    ("CFE", "reduction.phase2.months"): "28",
    ("CFE", "reduction.phase3.percent"): "100",
    ("CFE", "inspection.quota.baseline_percent"): "20",
    ("CFE", "inspection.quota.reduction_year_percent"): "10",
    ("CFE", "inspection.quota.residual_year_percent"): "15",
    ("CFE", "inspection.challenge.residual_year_percent"): "23",
    ("CFE", "inspection.per_requester_max_percent"): "50",
    ("CFE", "inspection.same_group_max_per_year"): "5",
    ("CFE", "sufficiency.tanks"): "13300",
    ("CFE", "sufficiency.acv"): "20000",
    ("CFE", "sufficiency.artillery"): "13700",
    ("CFE", "sufficiency.combat_aircraft"): "5150",
    ("CFE", "sufficiency.attack_helicopters"): "1500",
    ("CFE", "dpss.removal_without_notice_rounding"): "ceil_even",
    ("CFE", "withdrawal.notice_days"): "150",
    ("GEMI", "annual_exchange.due_month_day"): "04-30",
    ("GEMI", "annual_exchange.valid_as_of_month_day"): "01-01",
}


def test_rule_catalogue_is_covered(params):
    values = {(p["regime"], p["key"]): p["value"] for p in params}
    missing = [k for k in EXPECTED_VALUES if k not in values]
    assert not missing, missing
    wrong = {k: values[k] for k, v in EXPECTED_VALUES.items() if values[k] != v}
    assert not wrong, wrong


def test_verified_status_follows_the_reference(params):
    status = {(p["regime"], p["key"]): p["status"] for p in params}
    assert status["VD", "evaluation.max_per_year"] == "verified"
    assert status["VD", "constraint.simultaneous.max_activities"] == "verified"
    assert status["VD", "prior_notification.lead_days"] == "commonly_cited"
    assert status["VD", "analytics.near_threshold_band_percent"] == "commonly_cited"
    assert status["GEMI", "annual_exchange.due_month_day"] == "commonly_cited"
    assert all(s == "verified" for (r, _), s in status.items() if r == "OST")
