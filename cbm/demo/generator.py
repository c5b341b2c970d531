"""Deterministic generation of the demo data set: pure data, no database.

:func:`generate` turns the reference data (States, regions, regime participation, Open Skies
quotas and airfields) and a seed into rows for every contract file, as lists of dicts keyed
by contract column names. The same reference and seed always give the same rows (no clock is
read; every random draw comes from a ``random.Random`` seeded with the seed and a label).

The normal data are built to be comfortably compliant: notifications well ahead, figures
far from every threshold, quotas never exhausted. The cases listed in
:mod:`cbm.demo.planted` are then added explicitly.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cbm import contract

UTC = dt.UTC
FIRST_YEAR = 2012
LAST_YEAR = 2025
YEARS = tuple(range(FIRST_YEAR, LAST_YEAR + 1))
# Annual submissions are generated for the years they cover up to the one whose deadline
# falls in the last demo year (the AEMI and calendar sent in late 2025 cover 2026).
SUBMISSION_YEARS = tuple(range(FIRST_YEAR, LAST_YEAR + 2))
HORIZON = dt.date(LAST_YEAR, 12, 31)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)

Row = dict[str, Any]

# --- reference data ---------------------------------------------------------------------


@dataclass(frozen=True)
class Participation:
    """One interval of a State's participation in a regime (``valid_to`` inclusive)."""

    state: str
    regime: str
    status: str
    valid_from: dt.date
    valid_to: dt.date | None
    group: str = ""


@dataclass(frozen=True)
class OSHolder:
    """An Open Skies Annex A passive-quota holder (a State or a group)."""

    holder: str
    members: tuple[str, ...]
    passive_quota: int


@dataclass
class Reference:
    """The reference data the generator needs, read from the database or the shipped files."""

    states: dict[str, tuple[str, str]]  # code -> (name, region code)
    participation: tuple[Participation, ...]
    os_holders: tuple[OSHolder, ...]
    os_airfields: tuple[tuple[str, str, int], ...]  # (holder, airfield, max distance km)
    _index: dict[tuple[str, str], list[Participation]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        for p in sorted(self.participation, key=lambda p: (p.state, p.regime, p.valid_from)):
            self._index.setdefault((p.state, p.regime), []).append(p)

    @classmethod
    def from_files(cls) -> Reference:
        """The reference data as shipped in ``cbm/reference/data`` (no database needed)."""
        from cbm.reference.loader import read_csv

        def date(value: str) -> dt.date | None:
            return dt.date.fromisoformat(value) if value else None

        states = {r["code"]: (r["name"], r["region"]) for r in read_csv("states.csv")}
        participation = tuple(
            Participation(
                r["state"],
                r["regime"],
                r["status"],
                dt.date.fromisoformat(r["valid_from"]),
                date(r.get("valid_to", "")),
                r.get("group", ""),
            )
            for r in read_csv("regime_participation.csv")
        )
        holders = tuple(
            OSHolder(r["holder"], tuple(r["members"].split()), int(r["passive_quota"]))
            for r in read_csv("os_quotas.csv")
        )
        airfields = tuple(
            (r["holder"], r["airfield"], int(r["max_distance_km"]))
            for r in read_csv("os_airfields.csv")
        )
        return cls(states, participation, holders, airfields)

    def name(self, code: str) -> str:
        return self.states[code][0]

    def region(self, code: str) -> str:
        return self.states[code][1]

    def status(self, state: str, regime: str, day: dt.date) -> str | None:
        for p in self._index.get((state, regime), ()):
            if p.valid_from <= day and (p.valid_to is None or day <= p.valid_to):
                return p.status
        return None

    def is_party(self, state: str, regime: str, day: dt.date) -> bool:
        return self.status(state, regime, day) == "party"

    def party_throughout(self, state: str, regime: str, first: dt.date, last: dt.date) -> bool:
        """Party on both days and every day between (intervals are contiguous per State)."""
        return self.is_party(state, regime, first) and self.is_party(state, regime, last)

    def holder_of(self, state: str) -> OSHolder | None:
        for h in self.os_holders:
            if state in h.members:
                return h
        return None

    def airfields_of(self, holder: str) -> list[tuple[str, int]]:
        return sorted((a, km) for h, a, km in self.os_airfields if h == holder)


# --- the generated data -----------------------------------------------------------------

_COLUMNS = {name: contract.get(name).columns for name in contract.LOAD_ORDER}


def _row(table: str, /, **values: Any) -> Row:
    row: Row = dict.fromkeys(_COLUMNS[table])
    for key, value in values.items():
        if key not in row:
            raise KeyError(f"{table} has no column {key!r}")
        row[key] = value
    return row


@dataclass
class DemoData:
    """Rows for every contract file (lists of dicts keyed by contract column names)."""

    activities: list[Row] = field(default_factory=list)
    inspections: list[Row] = field(default_factory=list)
    observation_flights: list[Row] = field(default_factory=list)
    notifications: list[Row] = field(default_factory=list)
    quotas: list[Row] = field(default_factory=list)
    holdings: list[Row] = field(default_factory=list)
    ceilings: list[Row] = field(default_factory=list)
    reductions: list[Row] = field(default_factory=list)

    def rows(self, kind: str) -> list[Row]:
        return getattr(self, contract.get(kind).name)

    def counts(self) -> dict[str, int]:
        return {kind: len(self.rows(kind)) for kind in contract.LOAD_ORDER}

    @property
    def total(self) -> int:
        return sum(self.counts().values())


# --- thresholds (VD 2011 parameters, as shipped in rule_parameters.csv) ------------------

FIGURES = ("troops", "battle_tanks", "acv", "artillery", "air_sorties", "airborne_troops")
# Each level: (thresholds, strict). "strict" means "more than"; otherwise "at least".
NOTIFY = {
    "troops": 9000,
    "battle_tanks": 250,
    "acv": 500,
    "artillery": 250,
    "air_sorties": 200,
    "airborne_troops": 3000,
}
OBSERVE = {
    "troops": 13000,
    "battle_tanks": 300,
    "acv": 500,
    "artillery": 250,
    "airborne_troops": 3500,
}
SIMULTANEOUS = {"troops": 13000, "battle_tanks": 300, "acv": 500, "artillery": 300}
PER_YEAR = {"troops": 13000, "battle_tanks": 300}
PER_YEAR_LARGE = {"troops": 25000, "battle_tanks": 400}
LARGE = {"troops": 40000, "battle_tanks": 900, "acv": 2000, "artillery": 900}
LEVELS: tuple[tuple[str, dict[str, int], bool], ...] = (
    ("notify", NOTIFY, False),
    ("observe", OBSERVE, False),
    ("simultaneous", SIMULTANEOUS, True),
    ("per_year", PER_YEAR, True),
    ("per_year_large", PER_YEAR_LARGE, True),
    ("large", LARGE, True),
)
NEAR_BAND = 0.10


def reaches(figures: Mapping[str, Any], thresholds: Mapping[str, int], strict: bool) -> bool:
    """Whether any parameter reaches its threshold (``>`` when strict, else ``>=``)."""
    for name, limit in thresholds.items():
        value = figures.get(name)
        if value is None:
            continue
        if value > limit or (not strict and value == limit):
            return True
    return False


def level_of(figures: Mapping[str, Any]) -> tuple[bool, ...]:
    return tuple(reaches(figures, t, strict) for _n, t, strict in LEVELS)


def near_thresholds(figures: Mapping[str, Any]) -> list[tuple[str, int]]:
    """(parameter, threshold) pairs whose value lies within 10 % below (or at) the threshold."""
    out = []
    for _name, thresholds, _strict in LEVELS:
        for param, limit in thresholds.items():
            value = figures.get(param)
            if value is not None and limit * (1 - NEAR_BAND) <= value <= limit:
                out.append((param, limit))
    return out


def largest(rows: Iterable[Mapping[str, Any]]) -> dict[str, int | None]:
    """Per parameter, the largest figure of any source row."""
    out: dict[str, int | None] = dict.fromkeys(FIGURES)
    for row in rows:
        for name in FIGURES:
            value = row.get(name)
            if value is not None and (out[name] is None or value > out[name]):
                out[name] = value
    return out


# --- State profiles ---------------------------------------------------------------------


def _codes(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# code: (class, personnel, battle tanks, ACV, artillery, combat aircraft, attack helicopters,
#        formations and units reported in the AEMI). Figures are plausible orders of
# magnitude for forces in the VD zone of application around 2012, not official data.
PROFILES: dict[str, tuple[str, int, int, int, int, int, int, int]] = {
    "ALB": ("small", 8000, 0, 40, 20, 0, 0, 24),
    "AND": ("nil", 0, 0, 0, 0, 0, 0, 0),
    "ARM": ("mid", 45000, 110, 205, 235, 15, 8, 62),
    "AUT": ("mid", 22000, 56, 420, 90, 15, 0, 48),
    "AZE": ("mid", 67000, 205, 200, 270, 40, 28, 70),
    "BEL": ("mid", 30000, 0, 380, 20, 60, 0, 36),
    "BGR": ("mid", 31000, 90, 250, 160, 40, 12, 45),
    "BIH": ("small", 10000, 45, 70, 110, 0, 0, 22),
    "BLR": ("large", 48000, 500, 1200, 580, 70, 20, 95),
    "CAN": ("mid", 600, 0, 20, 0, 0, 0, 2),
    "CHE": ("mid", 140000, 134, 500, 133, 30, 0, 60),
    "CYP": ("small", 12000, 120, 180, 200, 0, 11, 20),
    "CZE": ("mid", 22000, 30, 400, 90, 35, 17, 40),
    "DEU": ("large", 180000, 320, 1800, 200, 230, 60, 160),
    "DNK": ("mid", 16000, 44, 300, 24, 44, 0, 30),
    "ESP": ("mid", 120000, 330, 1100, 500, 170, 50, 90),
    "EST": ("small", 6000, 0, 80, 60, 0, 0, 18),
    "FIN": ("mid", 23000, 200, 700, 690, 62, 0, 60),
    "FRA": ("large", 200000, 220, 2600, 120, 280, 180, 150),
    "GBR": ("large", 150000, 220, 2000, 130, 230, 60, 110),
    "GEO": ("mid", 20000, 120, 150, 200, 12, 10, 40),
    "GRC": ("mid", 105000, 1300, 2200, 1800, 230, 29, 110),
    "HRV": ("small", 15000, 70, 120, 100, 10, 0, 26),
    "HUN": ("mid", 26000, 30, 400, 30, 14, 10, 44),
    "IRL": ("small", 9000, 0, 100, 24, 0, 0, 22),
    "ISL": ("nil", 0, 0, 0, 0, 0, 0, 0),
    "ITA": ("large", 170000, 200, 2400, 600, 240, 60, 140),
    "KAZ": ("mid", 39000, 300, 1000, 600, 100, 30, 70),
    "KGZ": ("small", 11000, 150, 300, 150, 0, 2, 20),
    "LIE": ("nil", 0, 0, 0, 0, 0, 0, 0),
    "LTU": ("small", 15000, 0, 250, 60, 0, 0, 22),
    "LUX": ("small", 900, 0, 0, 0, 0, 0, 4),
    "LVA": ("small", 6000, 0, 90, 40, 0, 0, 16),
    "MCO": ("nil", 0, 0, 0, 0, 0, 0, 0),
    "MDA": ("small", 6000, 0, 170, 140, 0, 0, 18),
    "MKD": ("small", 8000, 30, 100, 60, 0, 2, 18),
    "MLT": ("small", 2000, 0, 20, 0, 0, 0, 8),
    "MNE": ("small", 2000, 0, 8, 12, 0, 0, 8),
    "MNG": ("small", 10000, 400, 300, 300, 0, 11, 26),
    "NLD": ("mid", 35000, 18, 500, 20, 70, 28, 40),
    "NOR": ("mid", 23000, 36, 390, 24, 57, 0, 38),
    "POL": ("large", 100000, 900, 2000, 600, 100, 28, 120),
    "PRT": ("mid", 27000, 56, 350, 80, 30, 0, 30),
    "ROU": ("mid", 70000, 300, 900, 500, 40, 20, 60),
    "RUS": ("large", 900000, 2800, 8000, 4000, 1200, 400, 330),
    "SMR": ("nil", 0, 0, 0, 0, 0, 0, 0),
    "SRB": ("mid", 28000, 200, 400, 450, 60, 30, 44),
    "SVK": ("small", 13000, 30, 250, 40, 10, 10, 24),
    "SVN": ("small", 7000, 14, 80, 18, 0, 0, 16),
    "SWE": ("mid", 20000, 120, 500, 48, 96, 0, 40),
    "TJK": ("small", 9000, 40, 70, 40, 0, 4, 18),
    "TKM": ("small", 36000, 600, 1500, 500, 90, 10, 40),
    "TUR": ("large", 355000, 2400, 3500, 2800, 300, 60, 200),
    "UKR": ("large", 150000, 1000, 2500, 1500, 200, 60, 120),
    "USA": ("large", 65000, 40, 1100, 100, 170, 60, 40),
    "UZB": ("mid", 48000, 340, 400, 200, 130, 30, 50),
    "VAT": ("nil", 0, 0, 0, 0, 0, 0, 0),
}
CATEGORIES = (
    "personnel",
    "battle_tanks",
    "acv",
    "artillery",
    "combat_aircraft",
    "attack_helicopters",
)
TLE = CATEGORIES[1:]
# Global (GEMI) holdings where they differ in kind from the forces in the zone.
GEMI_ABSOLUTE = {
    "USA": (1350000, 2450, 4800, 2500, 3400, 740),
    "CAN": (68000, 82, 1200, 150, 80, 0),
}
GEMI_FACTOR = {"RUS": 1.15, "FRA": 1.1, "GBR": 1.05, "ARM": 1.0, "AZE": 1.0, "GEO": 1.0}
CFE_FACTOR = {"KAZ": 0.1, "TUR": 0.93}
CFE_NIL = frozenset({"CAN", "ISL", "LUX"})  # no TLE in the CFE area of application

# CFE maximum levels for holdings given in csbm-rules.md §6.2 (tanks, ACV, artillery,
# combat aircraft, attack helicopters); the others are derived demo values.
TASHKENT = {
    "ARM": (220, 220, 285, 100, 50),
    "AZE": (220, 220, 285, 100, 50),
    "GEO": (220, 220, 285, 100, 50),
    "MDA": (210, 210, 250, 50, 50),
    "UKR": (4080, 5050, 4040, 1090, 330),
    "BLR": (1800, 2600, 1615, 260, 80),
}
US_ENTITLEMENT = {"battle_tanks": 4006, "acv": 5152, "artillery": 2742}
CFE_VALID_FROM = dt.date(1995, 11, 17)  # end of the 40-month reduction period

# Planted holdings (all sources): above the Tashkent ceilings.
PLANTED_HOLDINGS = {
    ("AZE", 2018, "battle_tanks"): 462,
    ("AZE", 2019, "battle_tanks"): 570,
    ("AZE", 2020, "battle_tanks"): 590,
    ("ARM", 2019, "acv"): 246,
    ("ARM", 2020, "acv"): 236,
}

NATO_CFE = frozenset(
    _codes(
        "BEL BGR CAN CZE DEU DNK ESP FRA GBR GRC HUN ISL ITA LUX NLD NOR POL PRT ROU SVK TUR USA"
    )
)
INSPECTOR_WEIGHTS = {
    "USA": 3,
    "DEU": 3,
    "GBR": 2,
    "FRA": 2,
    "POL": 2,
    "LTU": 2,
    "LVA": 2,
    "EST": 2,
    "UKR": 2,
    "SWE": 1,
    "FIN": 1,
    "NOR": 1,
    "DNK": 1,
    "NLD": 1,
    "BEL": 1,
    "CAN": 1,
    "CZE": 1,
    "HUN": 1,
    "ROU": 1,
    "BGR": 1,
    "ITA": 1,
    "ESP": 1,
    "AUT": 1,
    "CHE": 1,
    "TUR": 1,
    "GRC": 1,
    "SVK": 1,
    "GEO": 1,
}

AREAS = {
    "RUS": (
        "Mulino training ground (Nizhny Novgorod region)",
        "Luga training ground (Leningrad region)",
        "Pogonovo training ground (Voronezh region)",
        "Prudboi training ground (Volgograd region)",
        "Kaliningrad region",
        "Pskov region",
    ),
    "BLR": (
        "Borisov training ground",
        "Obuz-Lesnovsky training ground",
        "Brest region",
        "Gozhsky training ground (Grodno region)",
    ),
    "UKR": (
        "Yavoriv training area (Lviv region)",
        "Shyrokyi Lan training area (Mykolaiv region)",
        "Desna training area (Chernihiv region)",
    ),
    "POL": (
        "Drawsko Pomorskie training area",
        "Orzysz training area",
        "Nowa Dęba training area",
        "Wędrzyn training area",
    ),
    "DEU": (
        "Bergen-Hohne training area",
        "Grafenwöhr training area",
        "Munster training area",
        "Altmark combat training centre",
    ),
    "FRA": ("Camp de Mailly", "Camp de Canjuers", "Champagne training areas"),
    "GBR": ("Salisbury Plain Training Area", "Otterburn Training Area", "Castlemartin ranges"),
    "USA": (
        "Grafenwöhr and Hohenfels training areas (Germany)",
        "Drawsko Pomorskie training area (Poland)",
        "Ādaži training area (Latvia)",
        "Cincu training area (Romania)",
    ),
    "TUR": ("Seferihisar-Doğanbey (İzmir)", "Thrace region", "Eastern Anatolia"),
    "NOR": ("Troms and Finnmark", "Trøndelag"),
    "SWE": ("Gotland", "Skövde training area", "Boden training area"),
    "FIN": ("Rovajärvi training area", "Niinisalo training area"),
    "GRC": ("Thrace", "Evros region", "Central Macedonia"),
    "ROU": ("Cincu training area", "Smârdan training area", "Capu Midia"),
    "ITA": ("Capo Teulada", "Monte Romano training area"),
    "ESP": ("San Gregorio training area (Zaragoza)", "Chinchilla training area"),
    "KAZ": ("Otar training area", "Matybulak training area"),
    "AZE": ("Ganja region", "Nakhchivan", "Absheron peninsula"),
    "ARM": ("Baghramyan training area", "Armavir region"),
    "GEO": ("Vaziani training area", "Krtsanisi training area"),
}

ADJECTIVES = (
    "Iron",
    "Steel",
    "Northern",
    "Southern",
    "Eastern",
    "Western",
    "Swift",
    "Silver",
    "Winter",
    "Spring",
    "Summer",
    "Autumn",
    "Brave",
    "Noble",
    "Vigilant",
    "Resolute",
    "Rapid",
    "Black",
    "Golden",
    "Steadfast",
    "Stone",
    "Blue",
    "Crimson",
    "Green",
)
NOUNS = (
    "Shield",
    "Strike",
    "Response",
    "Guardian",
    "Sword",
    "Lance",
    "Thunder",
    "Storm",
    "Arrow",
    "Falcon",
    "Bridge",
    "Horizon",
    "Endeavour",
    "Resolve",
    "Partner",
    "Challenge",
    "Dawn",
    "Wind",
    "Gate",
    "Eagle",
    "Wolf",
    "Bear",
    "Lynx",
    "Sentinel",
)
UNIT_TYPES = (
    "Mechanised Brigade",
    "Armoured Brigade",
    "Infantry Brigade",
    "Artillery Regiment",
    "Air Defence Regiment",
    "Engineer Regiment",
    "Air Assault Brigade",
    "Logistic Regiment",
    "Signal Regiment",
    "Reconnaissance Battalion",
)

# --- Open Skies -------------------------------------------------------------------------

# Passive quotas not in Annex A (demo values) and the CSFR quota split (an assumption).
OS_EXTRA_PASSIVE = {
    "FIN": 4,
    "SWE": 4,
    "EST": 2,
    "LVA": 2,
    "LTU": 2,
    "HRV": 2,
    "SVN": 2,
    "BIH": 2,
    "GEO": 2,
    "CZE": 2,
    "SVK": 2,
}
OS_EXTRA_AIRFIELDS = {
    "FIN": (("Tampere-Pirkkala", 1500),),
    "SWE": (("Linköping-Malmen", 1900),),
    "EST": (("Tallinn", 600),),
    "LVA": (("Riga", 650),),
    "LTU": (("Šiauliai", 650),),
    "HRV": (("Zagreb", 900),),
    "SVN": (("Ljubljana", 450),),
    "BIH": (("Sarajevo", 700),),
    "GEO": (("Tbilisi", 900),),
    "BLR": (("Minsk-Machulishchi", 1500),),
    "CZE": (("Praha", 600),),
    "SVK": (("Bratislava", 700), ("Kosice", 400)),
    "DNK": (("Metropolitan", 800),),
}
OS_SKIP_AIRFIELDS = ("with ",)
# Share of a group's common quota used as the member's own active total (OS-Q2).
OS_ACTIVE_SHARE = {"RUS": 36, "BLR": 6, "BEL": 2, "NLD": 3, "LUX": 1}
OS_BUDGET = {
    "RUS": 18,
    "USA": 10,
    "DEU": 6,
    "FRA": 4,
    "GBR": 4,
    "CAN": 3,
    "TUR": 3,
    "ITA": 3,
    "UKR": 3,
    "BLR": 3,
    "NOR": 2,
    "POL": 2,
    "ROU": 2,
    "SWE": 2,
    "FIN": 2,
    "DNK": 1,
    "BEL": 1,
    "NLD": 1,
    "CZE": 1,
    "HUN": 1,
    "BGR": 1,
    "GRC": 1,
    "ESP": 1,
    "PRT": 1,
    "EST": 1,
    "LVA": 1,
    "LTU": 1,
    "GEO": 1,
    "HRV": 1,
    "SVN": 1,
    "SVK": 1,
}
OS_EAST_TARGETS = {
    "USA": 6,
    "DEU": 4,
    "GBR": 3,
    "FRA": 3,
    "ITA": 3,
    "TUR": 3,
    "CAN": 2,
    "NOR": 2,
    "POL": 2,
    "ROU": 2,
    "DNK": 1,
    "BEL": 1,
    "NLD": 1,
    "CZE": 1,
    "HUN": 1,
    "BGR": 1,
    "GRC": 1,
    "ESP": 1,
    "PRT": 1,
    "SWE": 1,
    "FIN": 1,
    "EST": 1,
    "LVA": 1,
    "LTU": 1,
    "HRV": 1,
    "SVN": 1,
    "SVK": 1,
    "BIH": 1,
}
OS_LATE_TARGETS = _codes(
    "BIH GEO HRV SVN BGR ROU GRC TUR FIN SWE EST LVA LTU POL CZE SVK HUN NOR DNK DEU ITA ESP "
    "PRT FRA GBR CAN BEL NLD"
)


def _os_window(year: int) -> tuple[dt.date, dt.date]:
    if year == 2020:  # COVID-19: flights stopped in March 2020
        return dt.date(2020, 1, 13), dt.date(2020, 3, 6)
    if year == 2021:
        return dt.date(2021, 6, 7), dt.date(2021, 10, 22)
    if year >= 2022:
        return dt.date(year, 4, 4), dt.date(year, 10, 28)
    return dt.date(year, 1, 16), dt.date(year, 12, 4)


# --- helpers ------------------------------------------------------------------------------


def at(day: dt.date, hour: int = 9, minute: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def add_working_days(day: dt.date, n: int) -> dt.date:
    while n > 0:
        day += DAY
        if day.weekday() < 5:
            n -= 1
    return day


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    parts = "".join(c if c.isalnum() else " " for c in ascii_text).upper().split()
    return "-".join(parts)


def _random_day(rng: random.Random, first: dt.date, last: dt.date) -> dt.date:
    return first + dt.timedelta(days=rng.randint(0, (last - first).days))


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _upto(rng: random.Random, low: int, high: int) -> int | None:
    """A random whole number from ``low`` to ``high``, or None when ``high`` is below ``low``."""
    return rng.randint(low, high) if high >= low else None


def evaluation_quota(units: int) -> int:
    return min(15, math.ceil(units / 60))


# --- activities ---------------------------------------------------------------------------


@dataclass
class _Activity:
    activity_id: str
    state: str
    name: str
    kind: str
    start: dt.date
    end: dt.date
    declared: dict[str, int | None]
    host: str | None = None
    area: str | None = None
    notified: bool = True
    lead_days: int | None = 60  # None: alert, notified at its start
    calendar: bool = False
    invite: bool = False
    forecast_on: dt.date | None = None
    extra: list[tuple[str, dict[str, int | None]]] = field(default_factory=list)
    remarks: str | None = None


def _fig(
    troops: int | None = None,
    tanks: int | None = None,
    acv: int | None = None,
    artillery: int | None = None,
    sorties: int | None = None,
    airborne: int | None = None,
) -> dict[str, int | None]:
    return {
        "troops": troops,
        "battle_tanks": tanks,
        "acv": acv,
        "artillery": artillery,
        "air_sorties": sorties,
        "airborne_troops": airborne,
    }


def _d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def _hardcoded_activities() -> list[_Activity]:
    """Well-known compliant activities and the planted activity cases."""
    a = _Activity
    return [
        # --- compliant large activities --------------------------------------------------
        a(
            "NOR-2018-TRIDENT-JUNCTURE",
            "NOR",
            "Trident Juncture 18",
            "exercise",
            _d("2018-10-25"),
            _d("2018-11-07"),
            _fig(50000, 150, 1500, 120),
            area="Trøndelag, Hedmark and Oppland",
            lead_days=75,
            calendar=True,
            invite=True,
            forecast_on=_d("2016-11-08"),
            remarks="NATO high-visibility exercise hosted by Norway.",
        ),
        a(
            "POL-2016-ANAKONDA",
            "POL",
            "Anakonda-16",
            "exercise",
            _d("2016-06-07"),
            _d("2016-06-17"),
            _fig(31000, 180, 800, 150),
            area="Drawsko Pomorskie, Orzysz and Nowa Dęba training areas",
            lead_days=70,
            calendar=True,
            invite=True,
        ),
        a(
            "SWE-2017-AURORA",
            "SWE",
            "Aurora 17",
            "exercise",
            _d("2017-09-11"),
            _d("2017-09-29"),
            _fig(19000, 60, 300, 40),
            area="Gotland, Stockholm and Gothenburg areas",
            lead_days=80,
            calendar=True,
            invite=True,
        ),
        a(
            "USA-2021-DEFENDER-EUROPE",
            "USA",
            "Defender-Europe 21",
            "exercise",
            _d("2021-05-03"),
            _d("2021-06-14"),
            _fig(28000, 120, 700, 150),
            host="ROU",
            area="Training areas in Romania, Bulgaria and the Western Balkans",
            lead_days=65,
            calendar=True,
            invite=True,
        ),
        a(
            "NOR-2022-COLD-RESPONSE",
            "NOR",
            "Cold Response 2022",
            "exercise",
            _d("2022-03-14"),
            _d("2022-04-01"),
            _fig(30000, 40, 600, 60),
            area="Nordland and Troms",
            lead_days=90,
            calendar=True,
            invite=True,
        ),
        a(
            "SWE-2023-AURORA",
            "SWE",
            "Aurora 23",
            "exercise",
            _d("2023-04-17"),
            _d("2023-05-11"),
            _fig(26000, 80, 600, 70),
            area="Southern Sweden and Gotland",
            lead_days=70,
            calendar=True,
            invite=True,
        ),
        a(
            "EST-2015-SIIL",
            "EST",
            "Siil-2015 (Hedgehog)",
            "exercise",
            _d("2015-05-04"),
            _d("2015-05-15"),
            _fig(13500, 0, 200, 60),
            area="Eastern and southern Estonia",
            lead_days=60,
            calendar=True,
            invite=True,
        ),
        a(
            "BLR-2013-ZAPAD",
            "BLR",
            "Zapad-2013",
            "exercise",
            _d("2013-09-20"),
            _d("2013-09-26"),
            _fig(11500, 150, 400, 180),
            area="Gozhsky and Osipovichi training grounds",
            lead_days=55,
            calendar=True,
        ),
        a(
            "RUS-2016-KAVKAZ",
            "RUS",
            "Kavkaz-2016",
            "exercise",
            _d("2016-09-05"),
            _d("2016-09-10"),
            _fig(15000, 200, 420, 200),
            area="Southern Military District",
            lead_days=50,
            calendar=True,
            invite=True,
        ),
        a(
            "RUS-2020-KAVKAZ",
            "RUS",
            "Kavkaz-2020",
            "exercise",
            _d("2020-09-21"),
            _d("2020-09-26"),
            _fig(80000, 470, 1500, 600),
            area="Southern Military District (Prudboi, Kapustin Yar, Ashuluk)",
            lead_days=56,
            calendar=True,
            invite=True,
            forecast_on=_d("2018-11-09"),
        ),
        # --- alert activities: notified at their start (non-findings) ---------------------
        a(
            "RUS-2013-SNAP-CENTRAL",
            "RUS",
            "Snap combat-readiness check, Central Military District",
            "alert",
            _d("2013-07-16"),
            _d("2013-07-20"),
            _fig(10500, 100, 300, 120),
            area="Central Military District (Chebarkul training ground)",
            lead_days=None,
            remarks="Alert activity carried out without advance notice to the troops.",
        ),
        a(
            "BLR-2016-ALERT",
            "BLR",
            "Combat-readiness check of the Western Operational Command",
            "alert",
            _d("2016-03-15"),
            _d("2016-03-18"),
            _fig(9600, 90, 250, 100),
            area="Brest and Grodno regions",
            lead_days=None,
            remarks="Alert activity carried out without advance notice to the troops.",
        ),
        # --- planted cases ---------------------------------------------------------------
        a(
            "RUS-2021-ZAPAD",
            "RUS",
            "Zapad-2021",
            "exercise",
            _d("2021-09-10"),
            _d("2021-09-16"),
            _fig(12800, 140, 380, 200),
            area="Western Military District (Mulino, Pogonovo, Kaliningrad region)",
            lead_days=46,
            calendar=True,
            extra=[("open_source", _fig(200000, 290, 380, 240))],
            remarks="Joint strategic exercise with Belarus.",
        ),
        a(
            "BLR-2017-ZAPAD",
            "BLR",
            "Zapad-2017",
            "exercise",
            _d("2017-09-14"),
            _d("2017-09-20"),
            _fig(12700, 140, 400, 200),
            area="Borisov, Lepelsky and Osipovichi training grounds",
            lead_days=60,
            calendar=True,
            invite=True,
            remarks="Joint strategic exercise with the Russian Federation.",
        ),
        a(
            "RUS-2015-UNION-SHIELD",
            "RUS",
            "Union Shield-2015",
            "exercise",
            _d("2015-09-10"),
            _d("2015-09-16"),
            _fig(14000, 120, 300, 150),
            area="Mulino training ground (Nizhny Novgorod region)",
            lead_days=60,
            calendar=True,
            invite=True,
        ),
        a(
            "RUS-2015-TSENTR",
            "RUS",
            "Tsentr-2015",
            "exercise",
            _d("2015-09-14"),
            _d("2015-09-20"),
            _fig(19500, 150, 400, 200),
            area="Central Military District (Donguz training ground)",
            lead_days=62,
            calendar=True,
            invite=True,
        ),
        a(
            "RUS-2015-LADOGA",
            "RUS",
            "Ladoga-2015",
            "exercise",
            _d("2015-09-15"),
            _d("2015-09-21"),
            _fig(15800, 200, 420, 180),
            area="Luga training ground (Leningrad region)",
            lead_days=58,
            calendar=True,
            invite=True,
        ),
        a(
            "RUS-2015-BALTIC-GUARD",
            "RUS",
            "Baltic Guard-2015",
            "exercise",
            _d("2015-09-16"),
            _d("2015-09-22"),
            _fig(13800, 110, 380, 120),
            area="Kaliningrad region",
            lead_days=57,
            calendar=True,
            invite=True,
        ),
        a(
            "KAZ-2016-STEPPE-THUNDER",
            "KAZ",
            "Steppe Thunder 2016",
            "exercise",
            _d("2016-08-22"),
            _d("2016-08-30"),
            _fig(14200, 120, 300, 150),
            area="Otar training area",
            lead_days=55,
            calendar=True,
        ),
        a(
            "TUR-2016-EFES",
            "TUR",
            "Efes-2016",
            "exercise",
            _d("2016-05-16"),
            _d("2016-05-26"),
            _fig(10200, 80, 300, 120),
            area="Seferihisar-Doğanbey (İzmir)",
            lead_days=30,
            calendar=True,
        ),
        a(
            "AZE-2019-MAY-EXERCISE",
            "AZE",
            "Large-scale operational-tactical exercise (May 2019)",
            "exercise",
            _d("2019-05-13"),
            _d("2019-05-17"),
            _fig(10000, 180, 300, 200),
            area="Ganja region",
            notified=False,
            lead_days=None,
            extra=[("open_source", _fig(10000, 180, 300, 200))],
            remarks="Reported by the Azerbaijani Ministry of Defence press service.",
        ),
        a(
            "BLR-2018-NEMAN",
            "BLR",
            "Neman-2018",
            "exercise",
            _d("2018-06-04"),
            _d("2018-06-09"),
            _fig(8700, 120, 300, 150),
            area="Grodno region",
            lead_days=14,
            calendar=True,
            extra=[("open_source", _fig(12100, 120, 300, 150))],
            remarks="Voluntary notification (FSC.DEC/9/12).",
        ),
        a(
            "GRC-2016-PARMENION",
            "GRC",
            "Parmenion 2016",
            "exercise",
            _d("2016-10-03"),
            _d("2016-10-12"),
            _fig(10500, 200, 400, 150),
            area="Thrace and Central Macedonia",
            lead_days=50,
        ),
        a(
            "SRB-2014-SLOGA",
            "SRB",
            "Sloga 2014",
            "exercise",
            _d("2014-10-13"),
            _d("2014-10-17"),
            _fig(8950, 60, 120, 80),
            area="Pasuljanske livade training area",
            lead_days=50,
            remarks="Voluntary notification (FSC.DEC/9/12).",
        ),
        a(
            "POL-2014-DRAGON",
            "POL",
            "Dragon-14",
            "exercise",
            _d("2014-09-22"),
            _d("2014-09-30"),
            _fig(6000, 246, 300, 100),
            area="Drawsko Pomorskie training area",
            lead_days=60,
            remarks="Voluntary notification (FSC.DEC/9/12).",
        ),
        a(
            "KAZ-2019-BATYS",
            "KAZ",
            "Batys-2019",
            "exercise",
            _d("2019-09-09"),
            _d("2019-09-14"),
            _fig(8990, 100, 250, 120),
            area="Western Kazakhstan",
            lead_days=48,
            remarks="Voluntary notification (FSC.DEC/9/12).",
        ),
        a(
            "GRC-2019-PARMENION",
            "GRC",
            "Parmenion 2019",
            "exercise",
            _d("2019-10-07"),
            _d("2019-10-15"),
            _fig(7500, 242, 300, 120),
            area="Evros region",
            lead_days=52,
            remarks="Voluntary notification (FSC.DEC/9/12).",
        ),
    ]


# State-years where random activities must not add notifiable activities (planted stories).
NO_RANDOM_NOTIFIABLE = frozenset({("GRC", 2016), ("TKM", 2020)})
# State-years whose large activities are all hardcoded.
NO_RANDOM_LARGE = frozenset({("RUS", 2015), ("NOR", 2018), ("NOR", 2022)})
RANDOM_LARGE_P = {
    "RUS": 0.9,
    "UKR": 0.35,
    "POL": 0.3,
    "TUR": 0.3,
    "BLR": 0.3,
    "USA": 0.25,
    "DEU": 0.15,
    "GBR": 0.15,
    "FRA": 0.15,
    "ITA": 0.1,
}


# --- the builder --------------------------------------------------------------------------


class _Builder:
    def __init__(self, reference: Reference, seed: int) -> None:
        self.ref = reference
        self.seed = seed
        self.data = DemoData()
        self.activity_ids: set[str] = set()
        self.calendar_years: set[tuple[str, int]] = set()
        self.aemi: dict[tuple[str, int], bool] = {}  # (state, year) -> nil
        self.cfe_exchange: dict[tuple[str, int], bool] = {}
        self.gemi: dict[tuple[str, int], bool] = {}
        self.quota_units: dict[tuple[str, int], int] = {}
        self._inspection_ids: set[str] = set()
        missing = sorted(set(PROFILES) ^ set(reference.states))
        if missing:
            raise ValueError(f"demo profiles and reference States differ: {', '.join(missing)}")

    def rng(self, *parts: object) -> random.Random:
        return random.Random(f"{self.seed}|" + "|".join(str(p) for p in parts))

    def states(self) -> list[str]:
        return sorted(self.ref.states)

    def cls(self, state: str) -> str:
        return PROFILES[state][0]

    def area(self, state: str, rng: random.Random) -> str:
        choices = AREAS.get(state)
        if choices:
            return rng.choice(choices)
        return f"Training areas in {self.ref.name(state)}"

    # -- entry point ----------------------------------------------------------------------

    def build(self) -> DemoData:
        self.activities()
        self.annual_submissions()
        self.holdings()
        self.vd_quotas()
        self.vd_inspections()
        self.vd_evaluations()
        self.unusual_activities()
        self.open_skies()
        self.cfe_inspections()
        self.ceilings()
        self.reductions()
        self._check_unique()
        return self.data

    def note(self, **values: Any) -> Row:
        row = _row("notifications", **values)
        if row["received_at"] is None:
            row["received_at"] = row["sent_at"] + dt.timedelta(minutes=4)
        self.data.notifications.append(row)
        return row

    # -- activities -----------------------------------------------------------------------

    def activities(self) -> list[_Activity]:
        acts = _hardcoded_activities()
        for act in acts:
            self.activity_ids.add(act.activity_id)
        large_busy: dict[str, list[tuple[dt.date, dt.date]]] = defaultdict(list)
        for act in acts:
            if act.calendar or act.notified:
                figures = largest([act.declared, *(f for _s, f in act.extra)])
                if reaches(figures, SIMULTANEOUS, True):
                    large_busy[act.state].append((act.start, act.end))
        for state in self.states():
            if self.cls(state) == "nil":
                continue
            for year in YEARS:
                if not self.ref.is_party(state, "VD", dt.date(year, 1, 1)):
                    continue
                acts.extend(self.random_activities(state, year, large_busy))
        for act in sorted(acts, key=lambda a: (a.start, a.activity_id)):
            self.emit_activity(act)
        return acts

    def new_activity_id(self, state: str, year: int, name: str) -> str:
        base = f"{state}-{year}-{_slug(name.removesuffix(f' {year}'))}"
        candidate, n = base, 2
        while candidate in self.activity_ids:
            candidate = f"{base}-{n}"
            n += 1
        self.activity_ids.add(candidate)
        return candidate

    def random_name(self, rng: random.Random, year: int) -> str:
        return f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {year}"

    def random_activities(
        self,
        state: str,
        year: int,
        large_busy: dict[str, list[tuple[dt.date, dt.date]]],
    ) -> list[_Activity]:
        rng = self.rng("activities", state, year)
        _cls, personnel, tanks, acv, artillery, *_rest = PROFILES[state]
        cls = self.cls(state)
        out: list[_Activity] = []
        n_small = {"small": rng.randint(1, 2), "mid": rng.randint(2, 3), "large": rng.randint(2, 4)}
        n_medium = 0
        if (
            cls in ("mid", "large")
            and personnel >= 25000
            and (state, year) not in (NO_RANDOM_NOTIFIABLE)
        ):
            n_medium = rng.choice((0, 0, 1) if cls == "mid" else (0, 1, 1, 2))
        if year == 2020:  # COVID-19
            n_small[cls] = max(1, n_small[cls] - 1)
            n_medium = min(n_medium, 1)
        for i in range(n_small[cls]):
            force = i == 0 and cls in ("mid", "large")
            out.append(
                self.small_activity(state, year, rng, personnel, tanks, acv, artillery, force)
            )
        for _ in range(n_medium):
            out.append(self.medium_activity(state, year, rng, tanks, acv, artillery))
        p_large = RANDOM_LARGE_P.get(state, 0.0)
        if state == "UKR" and year >= 2022:
            p_large = 0.0
        if (
            (state, year) not in NO_RANDOM_LARGE
            and (state, year) not in NO_RANDOM_NOTIFIABLE
            and rng.random() < p_large
        ):
            act = self.large_activity(state, year, rng, tanks, acv, artillery, large_busy)
            if act is not None:
                out.append(act)
        return out

    def small_activity(
        self,
        state: str,
        year: int,
        rng: random.Random,
        personnel: int,
        tanks: int,
        acv: int,
        artillery: int,
        force_notify: bool,
    ) -> _Activity:
        kind = rng.choices(
            ("exercise", "air", "amphibious", "airborne", "transfer", "concentration"),
            weights=(75, 8, 5, 5, 4, 3),
        )[0]
        top = max(300, min(7500, int(personnel * 0.4)))
        troops = rng.randint(300, top) // 50 * 50 or 300
        figures = _fig(troops)
        if kind == "air":
            figures = _fig(rng.randint(300, 1500) // 50 * 50, sorties=rng.randint(40, 170))
        elif kind in ("amphibious", "airborne"):
            troops = rng.randint(500, 2500) // 50 * 50
            airborne = troops if kind == "airborne" else None
            figures = _fig(troops, acv=rng.randint(0, min(acv, 60)) or None, airborne=airborne)
        else:
            if rng.random() < 0.6:
                figures["battle_tanks"] = _upto(rng, 4, min(tanks, 120))
            if rng.random() < 0.8:
                figures["acv"] = _upto(rng, 6, min(acv, 350))
            if rng.random() < 0.6:
                figures["artillery"] = _upto(rng, 4, min(artillery, 150))
        start = _random_day(rng, dt.date(year, 1, 20), dt.date(year, 11, 25))
        end = start + dt.timedelta(days=rng.randint(2, 10))
        name = self.random_name(rng, year)
        notified = force_notify or rng.random() < (0.5 if self.cls(state) == "small" else 0.3)
        act = _Activity(
            self.new_activity_id(state, year, name),
            state,
            name,
            kind,
            start,
            end,
            figures,
            area=self.area(state, rng),
            notified=notified,
            lead_days=rng.randint(45, 110) if notified else None,
            remarks="Voluntary notification (FSC.DEC/9/12)." if notified else None,
        )
        if notified and rng.random() < 0.1:
            act.extra.append(("open_source", self.bump(figures, rng)))
        if not notified:
            act.extra.append(("open_source" if rng.random() < 0.8 else "analyst", figures))
        self.place_abroad(act, rng)
        return act

    def place_abroad(self, act: _Activity, rng: random.Random) -> None:
        """US and Canadian activities in the zone take place in Europe; some British ones."""
        hosts = {
            "USA": ("POL", "DEU", "LTU", "LVA", "EST", "ROU", "BGR"),
            "CAN": ("LVA", "POL", "ROU"),
            "GBR": ("EST", "POL", "NOR"),
        }.get(act.state)
        if not hosts or (act.state == "GBR" and rng.random() < 0.7):
            return
        act.host = rng.choice(hosts)
        act.area = AREAS["USA"][0] if act.host == "DEU" else self.area(act.host, rng)

    def medium_activity(
        self, state: str, year: int, rng: random.Random, tanks: int, acv: int, artillery: int
    ) -> _Activity:
        figures = _fig(
            rng.randint(9200, 11500) // 100 * 100,
            _upto(rng, 20, min(tanks, 200)),
            _upto(rng, 50, min(acv, 420)),
            _upto(rng, 20, min(artillery, 200)),
        )
        start = _random_day(rng, dt.date(year, 3, 1), dt.date(year, 11, 1))
        end = start + dt.timedelta(days=rng.randint(5, 12))
        name = self.random_name(rng, year)
        act = _Activity(
            self.new_activity_id(state, year, name),
            state,
            name,
            "exercise",
            start,
            end,
            figures,
            area=self.area(state, rng),
            lead_days=rng.randint(45, 110),
            calendar=True,
        )
        if rng.random() < 0.2:
            act.extra.append((rng.choice(("open_source", "inspection")), self.bump(figures, rng)))
        self.place_abroad(act, rng)
        return act

    def large_activity(
        self,
        state: str,
        year: int,
        rng: random.Random,
        tanks: int,
        acv: int,
        artillery: int,
        busy: dict[str, list[tuple[dt.date, dt.date]]],
    ) -> _Activity | None:
        very = rng.random() < 0.2
        troops = rng.randint(25500, 35000) if very else rng.randint(13500, 22000)
        figures = _fig(
            troops // 100 * 100,
            self.pick(rng, tanks, ((50, 220), (310, 355)) + (((410, 700),) if very else ())),
            self.pick(rng, acv, ((200, 440), (520, 1600))),
            self.pick(rng, artillery, ((60, 220), (310, 780))),
        )
        duration = dt.timedelta(days=rng.randint(7, 14))
        months = [4, 5, 6, 9, 10]
        rng.shuffle(months)
        for month in months:
            start = dt.date(year, month, rng.randint(1, 14))
            end = start + duration
            if all(end < b[0] or start > b[1] for b in busy[state]):
                break
        else:
            return None
        busy[state].append((start, end))
        name = self.random_name(rng, year)
        act = _Activity(
            self.new_activity_id(state, year, name),
            state,
            name,
            "exercise",
            start,
            end,
            figures,
            area=self.area(state, rng),
            lead_days=rng.randint(50, 120),
            calendar=True,
            invite=True,
        )
        self.place_abroad(act, rng)
        if rng.random() < 0.25:
            act.extra.append(("open_source", self.bump(figures, rng)))
        return act

    @staticmethod
    def pick(rng: random.Random, holding: int, ranges: tuple[tuple[int, int], ...]) -> int | None:
        options = [(lo, min(hi, holding)) for lo, hi in ranges if holding >= lo]
        if not options:
            return None
        lo, hi = rng.choice(options)
        return rng.randint(lo, hi)

    @staticmethod
    def bump(figures: dict[str, int | None], rng: random.Random) -> dict[str, int | None]:
        """Somewhat larger figures from another source, never crossing a threshold."""
        for _ in range(8):
            factor = rng.uniform(1.02, 1.2)
            out = {k: (round(v * factor) if v else v) for k, v in figures.items()}
            if level_of(out) == level_of(figures) and not near_thresholds(out):
                return out
        return dict(figures)

    def emit_activity(self, act: _Activity) -> None:
        sources: list[tuple[str, dict[str, int | None]]] = []
        if act.notified:
            sources.append(("notification", act.declared))
        if act.calendar:
            sources.append(("calendar", act.declared))
            self.calendar_years.add((act.state, act.start.year))
        sources.extend(act.extra)
        if not sources:
            sources.append(("open_source", act.declared))
        for source, figures in sources:
            self.data.activities.append(
                _row(
                    "activities",
                    activity_id=act.activity_id,
                    source=source,
                    state=act.state,
                    host_state=act.host or act.state,
                    name=act.name,
                    kind=act.kind,
                    start_date=act.start,
                    end_date=act.end,
                    area=act.area,
                    remarks=act.remarks if source == "notification" else None,
                    **figures,
                )
            )
        if act.notified:
            if act.lead_days is None:
                sent = at(act.start, 4, 30)
            else:
                hour = 8 + sum(map(ord, act.activity_id)) % 8
                sent = at(act.start - dt.timedelta(days=act.lead_days), hour, 15)
            self.note(
                reference=f"VD-PN-{act.activity_id}",
                regime="VD",
                kind="prior_notification",
                sender=act.state,
                recipients="ALL",
                sent_at=sent,
                activity_id=act.activity_id,
                remarks=act.remarks,
            )
            if act.invite:
                self.note(
                    reference=f"VD-OI-{act.activity_id}",
                    regime="VD",
                    kind="observation_invitation",
                    sender=act.state,
                    recipients="ALL",
                    sent_at=sent + HOUR,
                    activity_id=act.activity_id,
                    remarks="Invitation to observe the activity (Chapter VI).",
                )
        if act.forecast_on:
            self.note(
                reference=f"VD-FC-{act.activity_id}",
                regime="VD",
                kind="forecast_two_year",
                sender=act.state,
                recipients="ALL",
                sent_at=at(act.forecast_on, 10),
                activity_id=act.activity_id,
                remarks=f"Activity planned for {act.start.year} (paragraph 68).",
            )

    # -- annual submissions ---------------------------------------------------------------

    def annual_submissions(self) -> None:
        for state in self.states():
            nil = self.cls(state) == "nil"
            for year in SUBMISSION_YEARS:
                self.vd_aemi(state, year, nil)
                self.vd_calendar(state, year)
                self.cfe_annual(state, year, nil or state in CFE_NIL)
                if year <= LAST_YEAR:
                    self.gemi_annual(state, year, nil)

    def vd_aemi(self, state: str, year: int, nil: bool) -> None:
        due = dt.date(year - 1, 12, 15)
        if not self.ref.is_party(state, "VD", due):
            return
        if state == "ARM" and year >= 2021:  # planted: missing from 2021 on
            return
        rng = self.rng("aemi", state, year)
        sent = at(dt.date(year - 1, 12, rng.randint(1, 12)), rng.randint(8, 15), rng.randint(0, 59))
        if (state, year) == ("AZE", 2019):
            sent = at(dt.date(2018, 12, 20), 10, 15)
        elif (state, year) == ("TKM", 2017):
            sent = at(dt.date(2017, 1, 12), 9, 40)
        self.aemi[(state, year)] = nil
        self.note(
            reference=f"VD-{state}-{year}-AEMI",
            regime="VD",
            kind="annual_exchange",
            sender=state,
            recipients="ALL",
            sent_at=sent,
            received_at=sent + dt.timedelta(minutes=rng.randint(3, 40)),
            covers_year=year,
            nil_report=nil,
            remarks=(
                "Nil report: no military forces to report."
                if nil
                else f"Information valid as of 1 January {year}."
            ),
        )

    def vd_calendar(self, state: str, year: int) -> None:
        due = dt.date(year - 1, 11, 15)
        if not self.ref.is_party(state, "VD", due):
            return
        if (state, year) == ("TKM", 2020):  # planted: missing
            return
        rng = self.rng("calendar", state, year)
        sent = at(dt.date(year - 1, 11, rng.randint(1, 12)), rng.randint(8, 15), rng.randint(0, 59))
        if (state, year) == ("AZE", 2023):
            sent = at(dt.date(2022, 11, 17), 11, 5)
        nil = (state, year) not in self.calendar_years
        self.note(
            reference=f"VD-{state}-{year}-CAL",
            regime="VD",
            kind="annual_calendar",
            sender=state,
            recipients="ALL",
            sent_at=sent,
            received_at=sent + dt.timedelta(minutes=rng.randint(3, 40)),
            covers_year=year,
            nil_report=nil,
            remarks=(
                f"No military activity subject to prior notification planned for {year}."
                if nil
                else f"Calendar of military activities subject to prior notification, {year}."
            ),
        )

    def cfe_annual(self, state: str, year: int, nil: bool) -> None:
        rng = self.rng("cfe-exchange", state, year)
        sent_day = dt.date(year - 1, 12, rng.randint(1, 5))
        if not (
            self.ref.is_party(state, "CFE", sent_day)
            and self.ref.is_party(state, "CFE", dt.date(year - 1, 12, 15))
        ):
            return
        sent = at(sent_day, rng.randint(8, 15), rng.randint(0, 59))
        if (state, year) == ("MDA", 2016):
            sent = at(dt.date(2015, 12, 22), 12, 30)
        elif (state, year) == ("UKR", 2023):
            sent = at(dt.date(2022, 12, 28), 9, 20)
        self.cfe_exchange[(state, year)] = nil
        self.note(
            reference=f"CFE-{state}-{year}-AEX",
            regime="CFE",
            kind="annual_exchange",
            sender=state,
            recipients="ALL",
            sent_at=sent,
            received_at=sent + dt.timedelta(minutes=rng.randint(3, 40)),
            covers_year=year,
            nil_report=nil,
            remarks=(
                "No conventional armaments and equipment limited by the Treaty in the area "
                "of application."
                if nil
                else f"Information effective as of 1 January {year}."
            ),
        )

    def gemi_annual(self, state: str, year: int, nil: bool) -> None:
        due = dt.date(year, 4, 30)
        if not self.ref.is_party(state, "GEMI", due):
            return
        if (state, year) == ("TKM", 2021):  # planted: missing
            return
        rng = self.rng("gemi", state, year)
        sent = at(
            _random_day(rng, dt.date(year, 3, 10), dt.date(year, 4, 24)),
            rng.randint(8, 15),
            rng.randint(0, 59),
        )
        if (state, year) == ("TJK", 2017):
            sent = at(dt.date(2017, 5, 22), 8, 45)
        self.gemi[(state, year)] = nil
        self.note(
            reference=f"GEMI-{state}-{year}",
            regime="GEMI",
            kind="annual_exchange",
            sender=state,
            recipients="ALL",
            sent_at=sent,
            received_at=sent + dt.timedelta(minutes=rng.randint(3, 40)),
            covers_year=year,
            nil_report=nil,
            remarks=(
                "Nil report: no military forces."
                if nil
                else f"Global holdings as of 1 January {year}."
            ),
        )

    # -- holdings -------------------------------------------------------------------------

    @staticmethod
    def trend(state: str, year: int, category: str) -> float:
        if state == "POL":
            return {2023: 1.12, 2024: 1.22, 2025: 1.3}.get(year, 1.0)
        if state == "UKR":
            return 0.9 if year <= 2014 else (1.0 if year <= 2021 else 1.25)
        if state == "RUS":
            return 1.05 if year >= 2017 else 1.0
        if state == "USA":
            if category == "battle_tanks":
                return 0.0 if 2013 <= year <= 2016 else (1.0 if year == 2012 else 2.2)
            if category == "personnel" and year >= 2022:
                return 1.5
            return 1.0
        if state in ("FIN", "SWE", "EST", "LVA", "LTU", "NOR", "DNK", "DEU") and year >= 2023:
            return 1.08
        return 1.0

    def holding_value(self, state: str, year: int, category: str, source: str) -> int:
        planted = PLANTED_HOLDINGS.get((state, year, category))
        if planted is not None:
            return planted
        index = CATEGORIES.index(category)
        base = PROFILES[state][1 + index]
        noise = self.rng("holding", state, year, category, source).uniform(-0.02, 0.02)
        trend = self.trend(state, year, category)
        if source == "gemi":
            if state in GEMI_ABSOLUTE:
                base = GEMI_ABSOLUTE[state][index]
                trend = 1.0 if category != "personnel" else min(trend, 1.0)
            else:
                factor = GEMI_FACTOR.get(state, 1.05 if category == "personnel" else 1.03)
                base = base * factor
        value = base * trend * (1 + noise)
        if source == "cfe":
            value *= CFE_FACTOR.get(state, 1.0)
        return round(value)

    def holdings(self) -> None:
        for state in self.states():
            for year in YEARS:
                as_of = dt.date(year, 1, 1)
                for source, table, categories in (
                    ("vd_aemi", self.aemi, CATEGORIES),
                    ("cfe", self.cfe_exchange, TLE),
                    ("gemi", self.gemi, CATEGORIES),
                ):
                    if table.get((state, year), True):  # missing or nil
                        continue
                    for category in categories:
                        count = self.holding_value(state, year, category, source)
                        if count <= 0:
                            continue
                        self.data.holdings.append(
                            _row(
                                "holdings",
                                state=state,
                                as_of=as_of,
                                category=category,
                                source=source,
                                unit="",
                                count=count,
                                zone="ATTU" if source == "cfe" else None,
                            )
                        )
        self.unit_holdings()

    UNITS_CFE = (
        ("DEU", "Panzerlehrbrigade 9", {"battle_tanks": 88, "acv": 170, "artillery": 24}),
        (
            "POL",
            "10th Armoured Cavalry Brigade",
            {"battle_tanks": 116, "acv": 120, "artillery": 24},
        ),
        ("ROU", "282nd Mechanised Brigade", {"battle_tanks": 58, "acv": 110, "artillery": 18}),
        ("UKR", "92nd Mechanised Brigade", {"battle_tanks": 93, "acv": 150, "artillery": 54}),
        ("BLR", "120th Mechanised Brigade", {"battle_tanks": 94, "acv": 160, "artillery": 54}),
        ("GEO", "4th Mechanised Brigade", {"battle_tanks": 40, "acv": 60, "artillery": 18}),
        ("GRC", "21st Armoured Brigade", {"battle_tanks": 90, "acv": 80, "artillery": 18}),
        ("TUR", "2nd Armoured Brigade", {"battle_tanks": 100, "acv": 90, "artillery": 24}),
        ("CZE", "7th Mechanised Brigade", {"battle_tanks": 30, "acv": 90}),
    )
    # (state, unit, category, date of the change, new count, working days to the F21 notice)
    UNIT_CHANGES = (
        ("GRC", "21st Armoured Brigade", "battle_tanks", dt.date(2013, 4, 8), 72, 1),
        ("DEU", "Panzerlehrbrigade 9", "battle_tanks", dt.date(2015, 6, 15), 44, 2),
        ("BLR", "120th Mechanised Brigade", "acv", dt.date(2016, 5, 16), 200, None),
        ("GEO", "4th Mechanised Brigade", "acv", dt.date(2017, 9, 4), 75, 2),
        ("ROU", "282nd Mechanised Brigade", "battle_tanks", dt.date(2017, 6, 12), 70, 10),
        ("POL", "10th Armoured Cavalry Brigade", "acv", dt.date(2019, 2, 11), 150, 1),
    )

    def unit_holdings(self) -> None:
        changes = defaultdict(list)
        for state, unit, category, day, new, notice in self.UNIT_CHANGES:
            if day.weekday() != 0:
                raise ValueError(f"unit change {unit} {day} is not a Monday")
            changes[(state, unit, category)].append((day, new, notice))
        labels = {"battle_tanks": "battle tanks", "acv": "ACV", "artillery": "artillery"}
        for state, unit, bases in self.UNITS_CFE:
            for category, base in bases.items():
                current = base
                events = sorted(changes.get((state, unit, category), []))
                for year in YEARS:
                    for _day, new, _notice in [e for e in events if e[0].year == year - 1]:
                        current = new
                    if self.cfe_exchange.get((state, year), True):
                        continue
                    exact = any(e[0].year == year for e in events)
                    spread = max(0, round(current * 0.02))
                    noise = self.rng("unit", state, unit, category, year).randint(-spread, spread)
                    count = current if exact else current + noise
                    self.data.holdings.append(
                        _row(
                            "holdings",
                            state=state,
                            as_of=dt.date(year, 1, 1),
                            category=category,
                            source="cfe",
                            unit=unit,
                            count=count,
                            zone="ATTU",
                        )
                    )
                    for day, new, notice in [e for e in events if e[0].year == year]:
                        self.data.holdings.append(
                            _row(
                                "holdings",
                                state=state,
                                as_of=day,
                                category=category,
                                source="cfe",
                                unit=unit,
                                count=new,
                                zone="ATTU",
                            )
                        )
                        if notice is not None:
                            pct = round((new - current) / current * 100)
                            self.note(
                                reference=f"CFE-{state}-{day:%Y%m%d}-F21",
                                regime="CFE",
                                kind="holdings_change",
                                sender=state,
                                recipients="ALL",
                                sent_at=at(add_working_days(day, notice), 10, 0),
                                remarks=(
                                    f"F21: {unit}: {labels[category]} {current} -> {new} "
                                    f"({pct:+d} %), change of 10 % or more since the last "
                                    "annual exchange."
                                ),
                            )
                        current = new

    # -- VD quotas, inspections, evaluation visits ----------------------------------------

    def vd_quotas(self) -> None:
        for state in self.states():
            units = PROFILES[state][7]
            for year in YEARS:
                if self.aemi.get((state, year), True) or units <= 0:
                    continue
                quota = evaluation_quota(units)
                self.quota_units[(state, year)] = quota
                self.data.quotas.append(
                    _row("quotas", regime="VD", state=state, year=year, kind="passive", quota=quota)
                )

    def inspector_pool(self, receiver: str, year: int) -> dict[str, int]:
        east = ("RUS", "BLR")
        if receiver in east:
            pool = {s: w for s, w in INSPECTOR_WEIGHTS.items()}
        else:
            pool = {s: 1 for s in INSPECTOR_WEIGHTS}
            if year < 2022:
                pool.update({"RUS": 4, "BLR": 2})
        pool.pop(receiver, None)
        if receiver == "ARM":
            pool.pop("TUR", None)
        if receiver in ("UKR", "GEO") and year >= 2014:
            pool.pop("RUS", None)
            pool.pop("BLR", None)
        jan = dt.date(year, 1, 1)
        return {s: w for s, w in sorted(pool.items()) if self.ref.is_party(s, "VD", jan)}

    def vd_inspection_count(self, receiver: str, year: int, rng: random.Random) -> int:
        cls = self.cls(receiver)
        if cls == "nil":
            return 0
        if receiver in ("RUS", "BLR", "UKR"):
            n = 3 if year < 2022 else 0
        elif receiver in ("GEO", "MDA", "ARM", "AZE", "KAZ"):
            n = rng.randint(1, 3)
        elif cls == "small":
            n = rng.choice((0, 0, 1))
        else:
            n = rng.choice((0, 1, 1, 2, 2, 3))
        if year in (2020, 2021):
            n = min(n, 1)
        return n

    def vd_inspection_window(self, receiver: str, year: int) -> tuple[dt.date, dt.date]:
        if year == 2020:
            return dt.date(2020, 1, 13), dt.date(2020, 3, 6)
        if year == 2021:
            return dt.date(2021, 6, 7), dt.date(2021, 11, 19)
        if receiver == "RUS":
            return dt.date(year, 1, 12), dt.date(year, 3, 27)
        return dt.date(year, 2, 2), dt.date(year, 11, 27)

    def inspection_id(self, prefix: str, year: int, inspecting: str, inspected: str) -> str:
        n = 1
        while f"{prefix}-{year}-{inspecting}-{inspected}-{n:02d}" in self._inspection_ids:
            n += 1
        ident = f"{prefix}-{year}-{inspecting}-{inspected}-{n:02d}"
        self._inspection_ids.add(ident)
        return ident

    def vd_inspections(self) -> None:
        planted = self.planted_vd_inspections()
        used: dict[tuple[str, int], set[str]] = defaultdict(set)
        accepted: dict[tuple[str, int], int] = defaultdict(int)
        days: dict[tuple[str, int], list[dt.date]] = defaultdict(list)
        for spec in planted:
            key = (spec["inspected"], spec["requested"].year)
            used[key].add(spec["inspecting"])
            accepted[key] += spec["reply"] == "accepted"
            days[key].append(spec["requested"].date())
        reserved = {("ARM", 2020), ("RUS", 2014), ("BLR", 2022), ("GEO", 2020)}
        specs = list(planted)
        for year in YEARS:
            for receiver in self.states():
                if not self.ref.is_party(receiver, "VD", dt.date(year, 1, 1)):
                    continue
                if (receiver, year) in reserved:
                    continue
                rng = self.rng("vd-inspection", receiver, year)
                n = self.vd_inspection_count(receiver, year, rng) - accepted[(receiver, year)]
                pool = self.inspector_pool(receiver, year)
                first, last = self.vd_inspection_window(receiver, year)
                for _ in range(max(0, n)):
                    options = [s for s in pool if s not in used[(receiver, year)]]
                    if not options:
                        break
                    inspecting = rng.choices(options, weights=[pool[s] for s in options])[0]
                    for _attempt in range(20):
                        day = _random_day(rng, first, last)
                        if all(abs((day - d).days) >= 10 for d in days[(receiver, year)]):
                            break
                    else:
                        continue
                    used[(receiver, year)].add(inspecting)
                    days[(receiver, year)].append(day)
                    requested = at(day, rng.randint(7, 14), rng.choice((0, 15, 30, 45)))
                    specs.append(
                        {
                            "inspecting": inspecting,
                            "inspected": receiver,
                            "requested": requested,
                            "reply_after": dt.timedelta(minutes=rng.randint(120, 1200)),
                            "reply": "accepted",
                        }
                    )
        for spec in sorted(specs, key=lambda s: (s["requested"], s["inspecting"])):
            self.emit_vd_inspection(spec)

    def planted_vd_inspections(self) -> list[dict[str, Any]]:
        def spec(
            inspecting: str,
            inspected: str,
            requested: str,
            reply_hours: float,
            reply: str = "accepted",
            **extra: Any,
        ) -> dict[str, Any]:
            return {
                "inspecting": inspecting,
                "inspected": inspected,
                "requested": dt.datetime.fromisoformat(requested),
                "reply_after": dt.timedelta(hours=reply_hours),
                "reply": reply,
                **extra,
            }

        return [
            spec("USA", "RUS", "2014-01-21T09:00:00+00:00", 6),
            spec("DEU", "RUS", "2014-02-11T08:30:00+00:00", 8),
            spec("UKR", "RUS", "2014-03-20T10:00:00+00:00", 5, quota_filled=True),
            spec(
                "LTU",
                "RUS",
                "2014-04-08T09:00:00+00:00",
                6,
                "refused",
                findings="Refused: the passive inspection quota for 2014 has been filled.",
            ),
            spec(
                "TUR",
                "ARM",
                "2020-08-10T09:00:00+00:00",
                10,
                "refused",
                findings="Refused: Armenia declared on 29 July 2020 that it cannot accept "
                "inspections by Türkiye or with Turkish guest inspectors.",
            ),
            spec(
                "FRA",
                "GEO",
                "2020-03-16T10:00:00+00:00",
                12,
                "force_majeure",
                findings="Not carried out: COVID-19 restrictions (force majeure).",
            ),
            spec("LTU", "BLR", "2022-01-18T09:00:00+00:00", 7),
            spec(
                "POL",
                "BLR",
                "2022-02-02T10:00:00+00:00",
                8,
                "refused",
                findings="Refused without explanation.",
            ),
            spec("DEU", "KAZ", "2017-05-16T08:00:00+00:00", 30),
            spec("FRA", "SRB", "2018-04-17T09:00:00+00:00", 5, report_days=20),
        ]

    def emit_vd_inspection(self, spec: dict[str, Any]) -> None:
        inspecting, inspected = spec["inspecting"], spec["inspected"]
        requested: dt.datetime = spec["requested"]
        rng = self.rng("vd-inspection-detail", inspecting, inspected, requested.isoformat())
        ident = self.inspection_id("VDI", requested.year, inspecting, inspected)
        replied = requested + spec["reply_after"]
        reply = spec["reply"]
        guests = None
        if reply == "accepted" and rng.random() < 0.3:
            options = [s for s in sorted(INSPECTOR_WEIGHTS) if s not in (inspecting, inspected)]
            guests = rng.choice(options)
        row = _row(
            "inspections",
            inspection_id=ident,
            regime="VD",
            kind="vd_inspection",
            inspecting_state=inspecting,
            guest_states=guests,
            inspected_state=inspected,
            requested_at=requested,
            replied_at=replied,
            reply=reply,
            area=(
                f"Specified area of about {rng.randint(8, 40) * 1000:,} km² in "
                f"{self.ref.name(inspected)}"
            ),
        )
        if reply == "accepted":
            reply_hours = spec["reply_after"].total_seconds() / 3600
            start = requested + dt.timedelta(hours=min(max(reply_hours + 6, 30), 36))
            end = start + dt.timedelta(hours=rng.randint(40, 48))
            report = at(
                (end + dt.timedelta(days=spec.get("report_days", rng.randint(3, 10)))).date(),
                10,
            )
            row.update(
                start_at=start,
                end_at=end,
                outcome="completed",
                counts_against_quota=True,
                team_size=4 if guests else rng.choice((3, 4)),
                report_at=report,
                concerns_raised=False,
                findings="No notifiable military activity observed in the specified area.",
            )
        else:
            row.update(
                outcome="not_carried_out" if reply == "force_majeure" else "refused",
                counts_against_quota=False,
                findings=spec.get("findings"),
            )
        self.data.inspections.append(row)
        self.note(
            reference=f"{ident}-REQ",
            regime="VD",
            kind="inspection_request",
            sender=inspecting,
            recipients=inspected,
            sent_at=requested,
            event_id=ident,
        )
        self.note(
            reference=f"{ident}-REPLY",
            regime="VD",
            kind="inspection_reply",
            sender=inspected,
            recipients=inspecting,
            sent_at=replied,
            event_id=ident,
            in_reply_to=f"{ident}-REQ",
            remarks=spec.get("findings") if reply != "accepted" else "Request accepted.",
        )
        if row["report_at"] is not None:
            self.note(
                reference=f"{ident}-REPORT",
                regime="VD",
                kind="inspection_report",
                sender=inspecting,
                recipients="ALL",
                sent_at=row["report_at"],
                event_id=ident,
            )
        if spec.get("quota_filled"):
            self.note(
                reference=f"VD-{inspected}-{requested.year}-QF",
                regime="VD",
                kind="quota_filled",
                sender=inspected,
                recipients="ALL",
                sent_at=replied + HOUR,
                covers_year=requested.year,
                remarks=f"Passive inspection quota for {requested.year} filled.",
            )

    def unit_names(self, state: str) -> list[str]:
        rng = self.rng("units", state)
        types = list(UNIT_TYPES)
        rng.shuffle(types)
        return [f"{_ordinal(rng.randint(1, 60))} {t}" for t in types[:8]]

    def vd_evaluations(self) -> None:
        planted = [
            ("GBR", "RUS", "2019-02-12T09:00:00+00:00", 20, "accepted", 0),
            ("USA", "RUS", "2019-04-09T09:00:00+00:00", 22, "refused", 1),
            ("DEU", "UKR", "2020-03-17T09:00:00+00:00", 18, "force_majeure", 0),
            ("NLD", "SRB", "2016-03-08T09:00:00+00:00", 20, "accepted", 0),
            ("HUN", "SRB", "2016-06-14T09:00:00+00:00", 16, "accepted", 1),
            ("GBR", "SRB", "2016-09-13T09:00:00+00:00", 20, "refused", 2),
        ]
        specs: list[tuple[str, str, dt.datetime, int, str, str]] = []
        for inspecting, inspected, requested, hours, reply, unit in planted:
            when = dt.datetime.fromisoformat(requested)
            name = self.unit_names(inspected)[unit]
            specs.append((inspecting, inspected, when, hours, reply, name))
        reserved = {("RUS", 2019), ("UKR", 2020), ("SRB", 2016)}
        for year in YEARS:
            for receiver in self.states():
                quota = self.quota_units.get((receiver, year), 0)
                if quota == 0 or (receiver, year) in reserved:
                    continue
                if year >= 2022 and receiver in ("RUS", "BLR", "UKR"):
                    continue
                rng = self.rng("vd-evaluation", receiver, year)
                if receiver == "RUS":
                    n = rng.randint(2, 4)
                elif quota == 1:
                    n = rng.choice((0, 1))
                else:
                    n = rng.randint(0, quota)
                if year in (2020, 2021):
                    n = min(n, 1)
                pool = self.inspector_pool(receiver, year)
                units = self.unit_names(receiver)
                rng.shuffle(units)
                first, last = self.vd_inspection_window("", year)
                months = sorted(rng.sample(range(12), k=min(n, 12)))
                chosen: set[str] = set()
                for i, month in enumerate(months):
                    options = [s for s in pool if s not in chosen]
                    if not options:
                        break
                    inspecting = rng.choices(options, weights=[pool[s] for s in options])[0]
                    chosen.add(inspecting)
                    day = first + (last - first) * (month * 2 + 1) // 24
                    requested = at(day, 9, rng.choice((0, 30)))
                    specs.append(
                        (inspecting, receiver, requested, rng.randint(4, 30), "accepted", units[i])
                    )
        for inspecting, inspected, requested, hours, reply, unit in sorted(
            specs, key=lambda s: (s[2], s[0])
        ):
            self.emit_evaluation(inspecting, inspected, requested, hours, reply, unit)

    def emit_evaluation(
        self,
        inspecting: str,
        inspected: str,
        requested: dt.datetime,
        hours: int,
        reply: str,
        unit: str,
    ) -> None:
        rng = self.rng("vd-evaluation-detail", inspecting, inspected, requested.isoformat())
        ident = self.inspection_id("VDE", requested.year, inspecting, inspected)
        replied = requested + dt.timedelta(hours=hours)
        row = _row(
            "inspections",
            inspection_id=ident,
            regime="VD",
            kind="vd_evaluation",
            inspecting_state=inspecting,
            inspected_state=inspected,
            requested_at=requested,
            replied_at=replied,
            reply=reply,
            unit=unit,
        )
        if reply == "accepted":
            start = at((requested + dt.timedelta(days=rng.randint(7, 14))).date(), 7)
            end = start + dt.timedelta(hours=rng.randint(9, 11))
            report = at((end + dt.timedelta(days=rng.randint(3, 10))).date(), 10)
            row.update(
                start_at=start,
                end_at=end,
                outcome="completed",
                counts_against_quota=True,
                team_size=rng.choice((2, 3)),
                report_at=report,
                concerns_raised=False,
                findings="Information on the unit corresponds to the AEMI data.",
            )
        elif reply == "force_majeure":
            row.update(
                outcome="not_carried_out",
                counts_against_quota=False,
                findings="Not carried out: COVID-19 restrictions (force majeure).",
            )
        else:
            row.update(outcome="refused", counts_against_quota=False, findings="Request refused.")
        self.data.inspections.append(row)
        self.note(
            reference=f"{ident}-REQ",
            regime="VD",
            kind="evaluation_request",
            sender=inspecting,
            recipients=inspected,
            sent_at=requested,
            event_id=ident,
        )
        self.note(
            reference=f"{ident}-REPLY",
            regime="VD",
            kind="evaluation_reply",
            sender=inspected,
            recipients=inspecting,
            sent_at=replied,
            event_id=ident,
            in_reply_to=f"{ident}-REQ",
            remarks={
                "accepted": "Request accepted.",
                "refused": "Request refused.",
                "force_majeure": "Visit cannot take place: force majeure (COVID-19).",
            }[reply],
        )
        if row["report_at"] is not None:
            self.note(
                reference=f"{ident}-REPORT",
                regime="VD",
                kind="evaluation_report",
                sender=inspecting,
                recipients="ALL",
                sent_at=row["report_at"],
                event_id=ident,
            )

    # -- Chapter III --------------------------------------------------------------------------

    def unusual_activities(self) -> None:
        requests = (
            (
                "VD-UA-LVA-20170905",
                "LVA",
                "BLR",
                at(_d("2017-09-05"), 9),
                30,
                "Request for an explanation of military activities near the border with "
                "Latvia ahead of Zapad-2017.",
            ),
            (
                "VD-UA-LTU-20220210",
                "LTU",
                "BLR",
                at(_d("2022-02-10"), 9),
                60,
                "Request, also on behalf of Estonia and Latvia, for information on the forces "
                "taking part in Allied Resolve 2022.",
            ),
            (
                "VD-UA-UKR-20220211",
                "UKR",
                "RUS",
                at(_d("2022-02-11"), 10),
                None,
                "Request under Chapter III for an explanation of military activities near the "
                "border with Ukraine and in temporarily occupied Crimea.",
            ),
        )
        for ref, sender, requested_state, sent, reply_hours, remarks in requests:
            self.note(
                reference=f"{ref}-REQ",
                regime="VD",
                kind="unusual_activity_request",
                sender=sender,
                recipients=requested_state,
                sent_at=sent,
                remarks=remarks,
            )
            if reply_hours is not None:
                self.note(
                    reference=f"{ref}-REPLY",
                    regime="VD",
                    kind="unusual_activity_reply",
                    sender=requested_state,
                    recipients=sender if sender != "LTU" else "LTU EST LVA",
                    sent_at=sent + dt.timedelta(hours=reply_hours),
                    in_reply_to=f"{ref}-REQ",
                    remarks="Reply with objectives, location, dates and forces involved.",
                )

    # -- Open Skies -----------------------------------------------------------------------------

    def os_passive(self, state: str) -> tuple[str, int] | None:
        """The passive quota that counts flights over ``state``: (holder key, quota)."""
        if state in OS_EXTRA_PASSIVE:
            return state, OS_EXTRA_PASSIVE[state]
        holder = self.ref.holder_of(state)
        if holder is None:
            return None
        if len(holder.members) == 1:
            return state, holder.passive_quota
        return holder.holder, holder.passive_quota

    def os_active_limit(self, state: str) -> int:
        if state in OS_ACTIVE_SHARE:
            return OS_ACTIVE_SHARE[state]
        passive = self.os_passive(state)
        return passive[1] if passive else 0

    def os_airfields(self, state: str) -> list[tuple[str, int]]:
        if state in OS_EXTRA_AIRFIELDS:
            return list(OS_EXTRA_AIRFIELDS[state])
        holder = self.ref.holder_of(state)
        if holder is None:
            return []
        return [
            (a, km)
            for a, km in self.ref.airfields_of(holder.holder)
            if not a.startswith(OS_SKIP_AIRFIELDS)
        ]

    def os_targets(self, observer: str, year: int) -> dict[str, int]:
        if year >= 2022:
            return {s: 1 for s in OS_LATE_TARGETS if s != observer}
        if observer in ("RUS", "BLR"):
            targets = dict(OS_EAST_TARGETS)
            if year <= 2013:
                targets["UKR"] = 1
            if year <= 2017:
                targets["GEO"] = 1
            return targets
        if observer == "UKR":
            return {"RUS": 6, "BLR": 2, "POL": 1, "ROU": 1, "HUN": 1, "SVK": 1}
        if observer == "GEO":
            return {"RUS": 4} if year <= 2017 else {"TUR": 1, "BGR": 1, "ROU": 1}
        targets = {"RUS": 14, "BLR": 2, "UKR": 2, "GEO": 1, "BIH": 1}
        targets.pop(observer, None)
        return targets

    def open_skies(self) -> None:
        planted = self.planted_flights()
        by_year: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for spec in planted:
            by_year[spec["eta"].year].append(spec)
        for year in YEARS:
            self.os_year(year, by_year[year])

    def planted_flights(self) -> list[dict[str, Any]]:
        def spec(observer: str, observed: str, eta: str, **extra: Any) -> dict[str, Any]:
            when = dt.datetime.fromisoformat(eta)
            number = extra.pop("number", 1)
            return {
                "observer": observer,
                "observed": observed,
                "eta": when,
                "flight_id": f"OS-{when.year}-{observer}-{observed}-{number:02d}",
                **extra,
            }

        return [
            spec("GBR", "RUS", "2013-09-10T10:00:00+00:00", report_days=10),
            spec("RUS", "USA", "2015-08-11T14:00:00+00:00", window_hours=108),
            spec("RUS", "PRT", "2015-04-14T10:00:00+00:00"),
            spec("RUS", "PRT", "2015-10-06T10:00:00+00:00", number=2),
            spec("USA", "RUS", "2016-06-07T09:00:00+00:00", ack_hours=31),
            spec("DEU", "RUS", "2017-05-16T10:00:00+00:00", notice_hours=48),
            spec(
                "ROU",
                "RUS",
                "2017-08-15T10:00:00+00:00",
                outcome="prohibited",
                late_arrival_hours=27,
                cause="Prohibited: the observing Party arrived 27 hours after the notified "
                "ETA (Art. VIII Sec. I ¶2).",
            ),
            spec("RUS", "DEU", "2018-04-17T10:00:00+00:00", distance=1350, airfield="Wunstorf"),
            spec("RUS", "PRT", "2018-03-13T10:00:00+00:00"),
            spec("BLR", "PRT", "2018-06-19T10:00:00+00:00"),
            spec("UKR", "PRT", "2018-09-18T10:00:00+00:00"),
            spec("UKR", "RUS", "2019-10-08T10:00:00+00:00", outcome="prohibited", cause=None),
        ]

    def os_year(self, year: int, planted: list[dict[str, Any]]) -> None:
        rng = self.rng("open-skies", year)
        first, last = _os_window(year)

        def party(state: str) -> bool:
            return self.ref.party_throughout(state, "OST", first - dt.timedelta(days=7), last)

        parties = [s for s in self.states() if party(s)]
        if year >= 2022:
            parties = [s for s in parties if s not in ("RUS", "BLR")]
        # Passive quota rows (single holders, Czechia and Slovakia, later accessions).
        for state in parties:
            passive = self.os_passive(state)
            if passive and passive[0] == state:
                self.data.quotas.append(
                    _row(
                        "quotas",
                        regime="OST",
                        state=state,
                        year=year,
                        kind="passive",
                        quota=passive[1],
                    )
                )
        budget: dict[str, int] = {}
        brng = self.rng("open-skies-budget", year)
        late_observers = set(brng.sample(sorted(set(parties) & set(OS_BUDGET)), k=6))
        for state in parties:
            base = OS_BUDGET.get(state, 0)
            if year >= 2022:
                base = 1 if state in late_observers else 0
            elif year == 2020:
                base = round(base * 0.2)
            elif year == 2021:
                base = round(base * 0.35)
            elif base:
                base = max(1, base + brng.choice((-1, 0, 0, 1)))
            budget[state] = min(base, self.os_active_limit(state))
        pair: dict[tuple[str, str], int] = defaultdict(int)
        over: dict[str, int] = defaultdict(int)
        observer_count: dict[str, int] = defaultdict(int)
        weeks_used: dict[str, set[int]] = defaultdict(set)

        def week(day: dt.date) -> int:
            return (day - dt.date(year, 1, 1)).days // 7

        flights: list[dict[str, Any]] = []
        for spec in sorted(planted, key=lambda s: s["eta"]):
            observer, observed = spec["observer"], spec["observed"]
            key = self.os_passive(observed)[0]
            pair[(observer, observed)] += 1
            observer_count[observer] += 1
            if spec.get("outcome") != "prohibited":
                over[key] += 1
            budget[observer] = max(budget.get(observer, 0), observer_count[observer])
            w = week(spec["eta"].date())
            weeks_used[observer].update((w, w + 1))
            weeks_used[key].update((w, w + 1))
            flights.append(spec)

        def cap(observer: str, observed: str) -> int:
            passive = self.os_passive(observed)[1]
            return math.ceil(0.5 * min(budget[observer], passive))

        def limit(observed: str) -> int:
            if observed in ("CZE", "SVK"):
                return 1
            return self.os_passive(observed)[1] - 1

        # Slots start on week boundaries counted from 1 January; a random flight's ETA is
        # on one of the first three days of its slot, so 96-hour windows never overlap.
        slots = [
            w
            for w in range(week(first), week(last) + 1)
            if first <= dt.date(year, 1, 1) + dt.timedelta(days=7 * w)
            and dt.date(year, 1, 1) + dt.timedelta(days=7 * w + 2) <= last
        ]
        queue = [s for s in parties for _ in range(budget[s] - observer_count[s])]
        rng.shuffle(queue)
        for observer in queue:
            targets = self.os_targets(observer, year)
            options = []
            for observed, weight in sorted(targets.items()):
                if observed not in parties or observed == observer:
                    continue
                key = self.os_passive(observed)
                if key is None or not self.os_airfields(observed):
                    continue
                if over[key[0]] >= limit(observed):
                    continue
                if pair[(observer, observed)] >= cap(observer, observed):
                    continue
                options.append((observed, weight))
            if not options:
                continue
            observed = rng.choices([o for o, _w in options], weights=[w for _o, w in options])[0]
            key = self.os_passive(observed)[0]
            free = [w for w in slots if w not in weeks_used[observer] and w not in weeks_used[key]]
            if not free:
                continue
            w = rng.choice(free)
            day = dt.date(year, 1, 1) + dt.timedelta(days=7 * w + rng.randint(0, 2))
            weeks_used[observer].add(w)
            weeks_used[key].add(w)
            pair[(observer, observed)] += 1
            over[key] += 1
            observer_count[observer] += 1
            flights.append(
                {
                    "observer": observer,
                    "observed": observed,
                    "eta": at(day, rng.randint(8, 14), rng.choice((0, 30))),
                    "random": True,
                }
            )
        # Active quota rows: the flights per counterpart, and the rest of the budget on
        # the observer's main counterpart.
        for observer in sorted(budget):
            if budget[observer] <= 0:
                continue
            per: dict[str, int] = defaultdict(int)
            for (a, b), n in pair.items():
                if a == observer and n > 0:
                    per[b] += n
            rest = budget[observer] - sum(per.values())
            if rest > 0:
                targets = self.os_targets(observer, year)
                main = max(
                    (t for t in sorted(targets) if t in parties and t != observer),
                    key=lambda t: targets[t],
                    default=None,
                )
                if main is not None:
                    per[main] += rest
            for counterpart, quota in sorted(per.items()):
                self.data.quotas.append(
                    _row(
                        "quotas",
                        regime="OST",
                        state=observer,
                        year=year,
                        kind="active",
                        counterpart=counterpart,
                        quota=quota,
                    )
                )
        # Odd outcomes among the random flights (compliant, ground recorded).
        randoms = [f for f in flights if f.get("random")]
        randoms.sort(key=lambda f: f["eta"])
        if year <= 2019 and len(randoms) > 10:
            for f in rng.sample(randoms, k=2):
                f["outcome"] = "curtailed"
                f["cause"] = rng.choice(
                    (
                        "Sensor malfunction of the observing Party's aircraft after the second "
                        "leg; counted against both quotas (Art. VIII Sec. II ¶5).",
                        "Weather below the minima for the remaining legs; counted against both "
                        "quotas (Art. VIII Sec. II ¶5).",
                    )
                )
        if year == 2014 and randoms:
            f = next(f for f in randoms if f.get("outcome") is None)
            f["outcome"] = "declined"
            f["cause"] = (
                "Declined by the observing Party: no agreement on the mission plan within "
                "8 hours (Art. VIII Sec. I ¶5)."
            )
        reserved = {f["flight_id"] for f in flights if "flight_id" in f}
        for spec in sorted(flights, key=lambda f: (f["eta"], f["observer"])):
            if "flight_id" not in spec:
                number = 1
                while (
                    ident := f"OS-{year}-{spec['observer']}-{spec['observed']}-{number:02d}"
                ) in reserved:
                    number += 1
                spec["flight_id"] = ident
                reserved.add(ident)
            self.emit_flight(spec)

    def emit_flight(self, spec: dict[str, Any]) -> None:
        observer, observed, eta = spec["observer"], spec["observed"], spec["eta"]
        flight_id = spec["flight_id"]
        rng = self.rng("flight", flight_id)
        airfields = self.os_airfields(observed)
        airfield, max_km = airfields[rng.randrange(len(airfields))]
        if spec.get("airfield"):
            airfield, max_km = next(a for a in airfields if a[0] == spec["airfield"])
        if spec.get("notice_hours"):
            notified = eta - dt.timedelta(hours=spec["notice_hours"])
        else:  # four or five days ahead, in office hours
            notified = at(eta.date() - dt.timedelta(days=rng.choice((4, 5))), rng.randint(8, 15))
        ack = notified + dt.timedelta(hours=spec.get("ack_hours") or rng.randint(2, 18))
        arrived = eta + dt.timedelta(minutes=rng.randint(0, 90))
        if spec.get("late_arrival_hours"):
            arrived = eta + dt.timedelta(hours=spec["late_arrival_hours"])
        outcome = spec.get("outcome", "completed")
        restrictions = None
        if outcome not in ("completed", "curtailed"):
            pass
        elif observed == "RUS" and eta.year >= 2015 and rng.random() < 0.3:
            restrictions = "Flight distance over the Kaliningrad region limited to 500 km."
        elif observed == "RUS" and eta.year <= 2017 and rng.random() < 0.1:
            restrictions = (
                "Flight path kept at least 10 km from the borders of Abkhazia and South "
                "Ossetia (Georgia)."
            )
        row = _row(
            "observation_flights",
            flight_id=flight_id,
            observing_state=observer,
            observed_state=observed,
            notified_at=notified,
            eta_poe=eta,
            arrived_at=arrived,
            point_of_entry=airfield,
            os_airfield=airfield,
            max_distance_km=max_km,
            outcome=outcome,
            curtailment_cause=spec.get("cause"),
            restrictions=restrictions,
        )
        if outcome in ("completed", "curtailed"):
            plan = arrived + dt.timedelta(hours=rng.randint(3, 8))
            # The flight starts in the morning, at least 24 hours after the mission plan.
            earliest = plan + dt.timedelta(hours=24)
            start = at(earliest.date(), rng.randint(6, 9), rng.choice((0, 30)))
            if start < earliest:
                start += DAY
            if spec.get("window_hours"):
                end = eta + dt.timedelta(hours=spec["window_hours"])
                start = end - dt.timedelta(hours=8)
                plan = start - dt.timedelta(hours=26)
            else:
                end = start + dt.timedelta(hours=rng.randint(4, 9))
            share = rng.uniform(0.55, 0.95) if outcome == "completed" else rng.uniform(0.3, 0.5)
            distance = spec.get("distance") or round(max_km * share / 10) * 10
            departed = end + dt.timedelta(hours=rng.randint(12, 22))
            row.update(
                mission_plan_at=plan,
                flight_start_at=start,
                flight_end_at=end,
                departed_at=departed,
                distance_km=distance,
                counts_against_quota=True,
            )
        else:
            departed = arrived + dt.timedelta(hours=rng.randint(10, 30))
            if outcome == "declined":
                row.update(mission_plan_at=arrived + dt.timedelta(hours=4))
            row.update(departed_at=departed, counts_against_quota=False)
        report = departed + dt.timedelta(days=spec.get("report_days") or rng.randint(2, 5))
        row["report_at"] = report
        self.data.observation_flights.append(row)
        self.note(
            reference=f"{flight_id}-NOT",
            regime="OST",
            kind="flight_notification",
            sender=observer,
            recipients="ALL",
            sent_at=notified,
            event_id=flight_id,
            remarks=f"Notification of intent to conduct an observation flight over "
            f"{self.ref.name(observed)}; point of entry {airfield}.",
        )
        self.note(
            reference=f"{flight_id}-ACK",
            regime="OST",
            kind="flight_acknowledgement",
            sender=observed,
            recipients=observer,
            sent_at=ack,
            event_id=flight_id,
            in_reply_to=f"{flight_id}-NOT",
        )
        self.note(
            reference=f"{flight_id}-MR",
            regime="OST",
            kind="mission_report",
            sender=observer,
            recipients="ALL",
            sent_at=report,
            event_id=flight_id,
            remarks=(
                "Mission report."
                if outcome in ("completed", "curtailed")
                else "Report on the mission that did not take place."
            ),
        )

    # -- CFE inspections --------------------------------------------------------------------------

    def cfe_inspections(self) -> None:
        ex_soviet = ("BLR", "UKR", "ARM", "AZE", "GEO", "KAZ", "MDA")
        specs: list[dict[str, Any]] = [
            {
                "inspecting": "DEU",
                "inspected": "BLR",
                "start": at(_d("2016-04-12"), 14),
                "notice_hours": 30,
                "kind": "cfe_declared_site",
            },
            {
                "inspecting": "FRA",
                "inspected": "ARM",
                "start": at(_d("2020-05-18"), 11),
                "notice_hours": 120,
                "kind": "cfe_reduction",
            },
        ]
        taken = {("BLR", 2016, "DEU")}
        for year in YEARS:
            if year > 2023:
                break
            for receiver in self.states():
                units = PROFILES[receiver][7]
                if self.cfe_exchange.get((receiver, year), True):
                    continue
                jan, dec = dt.date(year, 1, 1), dt.date(year, 11, 30)
                if not self.ref.party_throughout(receiver, "CFE", jan, dec):
                    continue
                oov = max(4, units // 2)
                quota = max(1, math.floor(0.15 * oov))
                self.data.quotas.append(
                    _row("quotas", regime="CFE", state=receiver, year=year, kind="passive")
                    | {"quota": quota}
                )
                rng = self.rng("cfe-inspection", receiver, year)
                n = min(quota, rng.choice((1, 1, 2)) if units < 60 else rng.randint(1, 3))
                if year in (2020, 2021):
                    n = min(n, 1)
                if receiver in ex_soviet:
                    pool = [s for s in sorted(NATO_CFE) if s not in CFE_NIL]
                else:
                    pool = ["BLR", "BLR", "UKR", "UKR", "KAZ", "GEO", "ARM", "AZE"]
                pool = [
                    s
                    for s in pool
                    if s != receiver and self.ref.party_throughout(s, "CFE", jan, dec)
                ]
                months = sorted(rng.sample(range(2, 11), k=n))
                for month in months:
                    options = sorted({s for s in pool if (receiver, year, s) not in taken})
                    if not options:
                        break
                    inspecting = rng.choice(options)
                    taken.add((receiver, year, inspecting))
                    day = dt.date(year, month, rng.randint(3, 26))
                    specs.append(
                        {
                            "inspecting": inspecting,
                            "inspected": receiver,
                            "start": at(day, rng.randint(9, 15)),
                            "notice_hours": rng.randint(40, 70),
                            "kind": "cfe_declared_site",
                        }
                    )
        unit_of = {state: unit for state, unit, _b in self.UNITS_CFE}
        for spec in sorted(specs, key=lambda s: (s["start"], s["inspecting"])):
            inspecting, inspected, start = spec["inspecting"], spec["inspected"], spec["start"]
            rng = self.rng("cfe-detail", inspecting, inspected, start.isoformat())
            suffix = "RED" if spec["kind"] == "cfe_reduction" else None
            if suffix:
                ident = f"CFE-{start.year}-{inspecting}-{inspected}-{suffix}"
                self._inspection_ids.add(ident)
            else:
                ident = self.inspection_id("CFE", start.year, inspecting, inspected)
            requested = start - dt.timedelta(hours=spec["notice_hours"])
            if spec["kind"] == "cfe_declared_site" and spec["notice_hours"] >= 36:
                # Sent in office hours, never later than the drawn notice.
                office = at(requested.date(), rng.randint(8, 16))
                requested = office if office <= requested else office - DAY
            end = start + dt.timedelta(hours=rng.randint(40, 84))
            site = unit_of.get(inspected) or self.unit_names(inspected)[0]
            self.data.inspections.append(
                _row(
                    "inspections",
                    inspection_id=ident,
                    regime="CFE",
                    kind=spec["kind"],
                    inspecting_state=inspecting,
                    inspected_state=inspected,
                    requested_at=requested,
                    replied_at=requested + dt.timedelta(minutes=rng.randint(30, 150)),
                    reply="accepted",
                    unit=site,
                    area=(
                        "Reduction site: ACV conversion facility"
                        if suffix
                        else f"Declared site of the {site}"
                    ),
                    start_at=start,
                    end_at=end,
                    outcome="completed",
                    counts_against_quota=not suffix,
                    team_size=rng.randint(4, 9),
                    report_at=end,
                    concerns_raised=False,
                    findings=(
                        "Reduction of 30 ACV verified."
                        if suffix
                        else "Holdings at the declared site correspond to the notified data."
                    ),
                )
            )
            self.note(
                reference=f"{ident}-NOT",
                regime="CFE",
                kind="inspection_notification",
                sender=inspecting,
                recipients=inspected,
                sent_at=requested,
                event_id=ident,
                remarks="Notification of intent to inspect (Protocol on Inspection, Sec. IV).",
            )

    # -- ceilings and reductions ------------------------------------------------------------------

    def ceilings(self) -> None:
        maxima: dict[tuple[str, str], int] = defaultdict(int)
        for h in self.data.holdings:
            if h["unit"] or (h["state"], h["as_of"].year, h["category"]) in PLANTED_HOLDINGS:
                continue
            key = (h["state"], h["category"])
            maxima[key] = max(maxima[key], h["count"])
        for state in self.states():
            intervals = [
                p for p in self.ref.participation if p.state == state and p.regime == "CFE"
            ]
            if not any(
                p.status == "party" and (p.valid_to is None or p.valid_to.year >= FIRST_YEAR)
                for p in intervals
            ):
                continue
            for i, category in enumerate(TLE):
                if state in TASHKENT:
                    value = TASHKENT[state][i]
                    basis = (
                        "CFE maximum level for holdings: Tashkent Agreement 1992, commonly "
                        "cited value (unverified; csbm-rules.md §6.2)"
                    )
                elif state == "USA":
                    if category not in US_ENTITLEMENT:
                        continue
                    value = US_ENTITLEMENT[category]
                    basis = (
                        "CFE maximum level for holdings: US original entitlement "
                        "(csbm-rules.md §6.2)"
                    )
                else:
                    factor = self.rng("ceiling", state, category).uniform(1.8, 3.2)
                    value = max(20, math.ceil(maxima[(state, category)] * factor / 10) * 10)
                    if state in CFE_NIL or state == "ISL":
                        value = 0 if maxima[(state, category)] == 0 else value
                    basis = (
                        "CFE maximum level for holdings: demo value (plausible, not notified data)"
                    )
                if maxima[(state, category)] > value:
                    raise ValueError(f"demo holdings of {state} {category} exceed the ceiling")
                self.data.ceilings.append(
                    _row(
                        "ceilings",
                        regime="CFE",
                        state=state,
                        category=category,
                        valid_from=CFE_VALID_FROM,
                        ceiling=value,
                        basis=basis,
                    )
                )

    def reductions(self) -> None:
        def red(**values: Any) -> None:
            self.data.reductions.append(_row("reductions", **values))

        treaty_end = _d("1995-11-16")
        for state, category, quantity, method in (
            ("UKR", "battle_tanks", 2200, "destruction"),
            ("BLR", "battle_tanks", 1770, "destruction"),
            ("POL", "artillery", 560, "destruction"),
            ("DEU", "acv", 2700, "conversion"),
        ):
            red(
                reduction_id=f"{state}-1992-CFE-{_slug(category)}",
                state=state,
                kind="treaty",
                category=category,
                quantity=quantity,
                announced_at=_d("1992-08-16"),
                deadline=treaty_end,
                reduced=quantity,
                completed_at=treaty_end,
                method=method,
                remarks="Reduction liability under CFE Art. VIII, met by the end of the "
                "40-month reduction period.",
            )
        red(
            reduction_id="RUS-1991-URALS-TANKS",
            state="RUS",
            kind="treaty",
            category="battle_tanks",
            quantity=6000,
            announced_at=_d("1991-06-14"),
            deadline=_d("1995-12-31"),
            reduced=6000,
            completed_at=_d("2003-06-07"),
            method="destruction",
            region_from="East of the Urals",
            remarks="Commitment of June 1991 to destroy or convert battle tanks moved east of "
            "the Urals; completion announced on 7 June 2003.",
        )
        red(
            reduction_id="ARM-2019-CFE-ACV",
            state="ARM",
            kind="treaty",
            category="acv",
            quantity=30,
            announced_at=_d("2019-04-15"),
            deadline=_d("2019-12-31"),
            reduced=30,
            completed_at=_d("2020-05-20"),
            method="conversion",
            verified_by="CFE-2020-FRA-ARM-RED",
            remarks="Reduction of ACV holdings back to the maximum level for holdings.",
        )
        red(
            reduction_id="DEU-2011-UNI-TANKS",
            state="DEU",
            kind="unilateral",
            category="battle_tanks",
            quantity=125,
            announced_at=_d("2011-10-21"),
            deadline=_d("2017-12-31"),
            reduced=125,
            completed_at=_d("2015-06-30"),
            method="destruction",
            remarks="Bundeswehr reorientation: Leopard 2 fleet reduced (sold or scrapped).",
        )
        red(
            reduction_id="BGR-2013-UNI-TANKS",
            state="BGR",
            kind="unilateral",
            category="battle_tanks",
            quantity=100,
            announced_at=_d("2013-03-01"),
            deadline=_d("2015-12-31"),
            reduced=100,
            completed_at=_d("2016-09-30"),
            method="destruction",
            remarks="Reduction of T-72 tanks under the armed forces development programme.",
        )
        red(
            reduction_id="NLD-2011-UNI-TANKS",
            state="NLD",
            kind="unilateral",
            category="battle_tanks",
            quantity=60,
            announced_at=_d("2011-04-08"),
            deadline=_d("2012-12-31"),
            reduced=60,
            completed_at=_d("2012-12-31"),
            method="other",
            remarks="Tank battalions disbanded; Leopard 2A6 tanks sold.",
        )
        red(
            reduction_id="USA-2012-WDR-TANKS",
            state="USA",
            kind="withdrawal",
            category="battle_tanks",
            quantity=40,
            announced_at=_d("2012-01-26"),
            deadline=_d("2013-03-31"),
            reduced=40,
            completed_at=_d("2013-03-31"),
            method="withdrawal",
            region_from="DEU",
            remarks="Withdrawal of the last US battle tanks permanently stationed in Europe.",
        )
        red(
            reduction_id="CZE-2024-UNI-T72",
            state="CZE",
            kind="unilateral",
            category="battle_tanks",
            quantity=30,
            announced_at=_d("2024-03-01"),
            deadline=_d("2028-12-31"),
            reduced=10,
            method="other",
            remarks="Retirement of T-72M4CZ tanks as Leopard 2A8 deliveries begin (in progress).",
        )

    # -- checks ------------------------------------------------------------------------------------

    def _check_unique(self) -> None:
        for kind in contract.LOAD_ORDER:
            keys = contract.get(kind).key
            seen: set[tuple] = set()
            for row in self.data.rows(kind):
                key = tuple(row[k] if row[k] is not None else "" for k in keys)
                if key in seen:
                    raise ValueError(f"duplicate demo {kind} key {key}")
                seen.add(key)


def generate(reference: Reference, seed: int = 2012) -> DemoData:
    """The demo data set for ``reference`` and ``seed`` (identical on every call)."""
    return _Builder(reference, seed).build()
