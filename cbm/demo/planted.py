"""The compliance cases planted in the demo data set, machine-readable.

Every rule of the compliance catalogue finds at least one case in the demo data; everything
not listed here with a severity other than ``none`` is compliant. Cases with severity
``none`` are *non-findings*: edge cases a correct rule must NOT report (force majeure, a
filled quota, a nil report, an alert activity ...).

``docs/demo-planted-cases.md`` is rendered from this module by :func:`render_planted_markdown`
(a test checks that the committed file is up to date).
"""

from __future__ import annotations

from dataclasses import dataclass

SEVERITIES = ("breach", "late", "warning", "info", "positive", "none")

# The rule catalogue the demo plants cases for: id -> short title.
RULES: dict[str, str] = {
    "VD-I-3": "AEMI (annual exchange of military information) by 15 December, valid 1 January",
    "VD-VII-1": "Annual calendar by 15 November",
    "VD-VII-3": "Notifiable activity included in the annual calendar",
    "VD-V-3": "Prior notification at least 42 days before the start",
    "VD-VI-1": "Observers invited to activities at or above the observation thresholds",
    "VD-VIII-1": "No more than three simultaneous activities above 13,000 troops / 300 tanks",
    "VD-VIII-4": "Activities above 40,000 troops / 900 tanks announced by 15 November of Y-2",
    "VD-VIII-5": "Frequency limits for activities above 13,000 / 25,000 / 40,000 troops",
    "VD-NEAR": "Declared figures within 10 % below a threshold (analytic)",
    "VD-IX-I2": "Inspection not refused while the receiving State is within its quota",
    "VD-IX-I4": "Inspection request answered within 24 hours",
    "VD-IX-I6": "Inspection report within 14 days",
    "VD-IX-E2": "Evaluation visit not refused within the passive evaluation quota",
    "VD-III-1": "Unusual military activity: reply within 48 hours",
    "OS-T1": "Observation flight notified at least 72 hours before the ETA",
    "OS-T2": "Flight notification acknowledged within 24 hours",
    "OS-T4": "ETA to end of the observation flight within 96 hours",
    "OS-T13": "Mission report within 7 days after departure",
    "OS-DIST": "Flight distance within the maximum for the Open Skies airfield",
    "OS-PROHIBIT": "Prohibited observation flight with a recorded ground",
    "OS-Q6": "Flights over one State within 50 % (rounded up) of the quotas",
    "OS-OVERQUOTA": "Observation flights accepted beyond the passive quota (positive)",
    "CFE-X1": "CFE annual exchange by 15 December",
    "CFE-X3": "Change of 10 % or more in a unit's holdings notified within 5 working days",
    "CFE-VII-1": "Holdings within the maximum levels for holdings",
    "CFE-R2": "Treaty reduction completed by its deadline",
    "CFE-I10": "CFE inspection notified at least 36 hours before arrival",
    "RED-1": "Unilateral reductions: late (warning) or completed early (positive)",
    "GEMI-3": "GEMI exchange by 30 April",
}


@dataclass(frozen=True)
class PlantedCase:
    """One planted case: what a rule should (or, with severity ``none``, should not) report.

    ``subject_id`` is the subject's natural key: a reference, an activity, inspection, flight
    or reduction id, or for holdings the key columns joined by ``/``
    (``state/as_of/category/source/unit``). It is empty for a missing annual submission.
    ``period`` is the year the case belongs to (see the conventions in the rendered doc).
    """

    rule_id: str
    state: str
    subject_type: str
    subject_id: str
    period: str
    severity: str
    description: str

    @property
    def is_finding(self) -> bool:
        return self.severity != "none"


def _c(
    rule_id: str,
    state: str,
    subject_type: str,
    subject_id: str,
    period: str,
    severity: str,
    description: str,
) -> PlantedCase:
    return PlantedCase(rule_id, state, subject_type, subject_id, period, severity, description)


PLANTED: list[PlantedCase] = [
    # --- VD Chapter I: annual exchange of military information -----------------------------
    _c(
        "VD-I-3",
        "AZE",
        "notification",
        "VD-AZE-2019-AEMI",
        "2019",
        "late",
        "AEMI for 2019 sent on 2018-12-20, after the 15 December deadline.",
    ),
    _c(
        "VD-I-3",
        "TKM",
        "notification",
        "VD-TKM-2017-AEMI",
        "2017",
        "late",
        "AEMI for 2017 sent on 2017-01-12, after the year it covers had begun.",
    ),
    *(
        _c(
            "VD-I-3",
            "ARM",
            "notification",
            "",
            str(year),
            "breach",
            f"No AEMI for {year}: Armenia's last data were valid as of 1 January 2020 "
            "(as in the 2024 US compliance report).",
        )
        for year in range(2021, 2027)
    ),
    _c(
        "VD-I-3",
        "VAT",
        "notification",
        "VD-VAT-2019-AEMI",
        "2019",
        "none",
        "Nil report (no military forces) sent on time: satisfies the obligation.",
    ),
    # --- VD Chapter VII: annual calendars ----------------------------------------------------
    _c(
        "VD-VII-1",
        "AZE",
        "notification",
        "VD-AZE-2023-CAL",
        "2023",
        "late",
        "Annual calendar for 2023 sent on 2022-11-17, after the 15 November deadline.",
    ),
    _c(
        "VD-VII-1",
        "TKM",
        "notification",
        "",
        "2020",
        "breach",
        "No annual calendar for 2020 (due 2019-11-15).",
    ),
    _c(
        "VD-VII-1",
        "MNG",
        "notification",
        "",
        "2013",
        "none",
        "Mongolia joined on 2012-11-21, after the deadline for the 2013 calendar: "
        "no calendar for 2013 is due.",
    ),
    _c(
        "VD-VII-3",
        "GRC",
        "activity",
        "GRC-2016-PARMENION",
        "2016",
        "warning",
        "Notifiable exercise (10,500 troops), notified on time but not in the annual "
        "calendar (Greece's calendar for 2016 was a nil report).",
    ),
    _c(
        "VD-VII-3",
        "AZE",
        "activity",
        "AZE-2019-MAY-EXERCISE",
        "2019",
        "warning",
        "Notifiable exercise known only from open sources: not in the annual calendar.",
    ),
    _c(
        "VD-VII-3",
        "RUS",
        "activity",
        "RUS-2013-SNAP-CENTRAL",
        "2013",
        "none",
        "Alert activity (10,500 troops): not plannable, so no calendar entry is expected.",
    ),
    _c(
        "VD-VII-3",
        "BLR",
        "activity",
        "BLR-2016-ALERT",
        "2016",
        "none",
        "Alert activity (9,600 troops): not plannable, so no calendar entry is expected.",
    ),
    # --- VD Chapter V: prior notification ----------------------------------------------------
    _c(
        "VD-V-3",
        "TUR",
        "activity",
        "TUR-2016-EFES",
        "2016",
        "late",
        "Prior notification sent 30 days before the start (at least 42 required).",
    ),
    _c(
        "VD-V-3",
        "AZE",
        "activity",
        "AZE-2019-MAY-EXERCISE",
        "2019",
        "breach",
        "Exercise of 10,000 troops (open sources) never notified.",
    ),
    _c(
        "VD-V-3",
        "BLR",
        "activity",
        "BLR-2018-NEMAN",
        "2018",
        "late",
        "Declared 8,700 troops (below the threshold) and notified 14 days ahead; open "
        "sources report 12,100 troops, so it was notifiable at least 42 days ahead.",
    ),
    _c(
        "VD-V-3",
        "RUS",
        "activity",
        "RUS-2013-SNAP-CENTRAL",
        "2013",
        "none",
        "Alert activity notified at its start: compliant.",
    ),
    _c(
        "VD-V-3",
        "BLR",
        "activity",
        "BLR-2016-ALERT",
        "2016",
        "none",
        "Alert activity notified at its start: compliant.",
    ),
    # --- VD Chapter VI: observation ----------------------------------------------------------
    _c(
        "VD-VI-1",
        "RUS",
        "activity",
        "RUS-2021-ZAPAD",
        "2021",
        "breach",
        "Zapad-2021: declared 12,800 troops, open sources (Russian MoD) 200,000; "
        "no observation invitation.",
    ),
    _c(
        "VD-VI-1",
        "KAZ",
        "activity",
        "KAZ-2016-STEPPE-THUNDER",
        "2016",
        "breach",
        "Declared 14,200 troops; no observation invitation.",
    ),
    # --- VD Chapter VIII: constraining provisions --------------------------------------------
    _c(
        "VD-VIII-1",
        "RUS",
        "activity",
        "RUS-2015-BALTIC-GUARD",
        "2015",
        "breach",
        "Fourth simultaneous activity above 13,000 troops on 16 September 2015 (with "
        "Union Shield-2015, Tsentr-2015 and Ladoga-2015).",
    ),
    _c(
        "VD-VIII-4",
        "RUS",
        "activity",
        "RUS-2021-ZAPAD",
        "2021",
        "breach",
        "More than 40,000 troops (open sources) without a forecast_two_year "
        "announcement by 15 November 2019.",
    ),
    _c(
        "VD-VIII-4",
        "NOR",
        "activity",
        "NOR-2018-TRIDENT-JUNCTURE",
        "2018",
        "none",
        "50,000 troops, announced by forecast_two_year on 2016-11-08: compliant.",
    ),
    _c(
        "VD-VIII-4",
        "RUS",
        "activity",
        "RUS-2020-KAVKAZ",
        "2020",
        "none",
        "80,000 troops, announced by forecast_two_year on 2018-11-09: compliant.",
    ),
    _c(
        "VD-VIII-5",
        "RUS",
        "activity",
        "RUS-2021-ZAPAD",
        "2021",
        "breach",
        "Second activity above 40,000 troops within three calendar years "
        "(Kavkaz-2020 with 80,000 troops, then Zapad-2021).",
    ),
    # --- Near-threshold declarations (analytic) ----------------------------------------------
    _c(
        "VD-NEAR",
        "RUS",
        "activity",
        "RUS-2021-ZAPAD",
        "2021",
        "info",
        "Declared 12,800 troops, just under the 13,000 observation threshold.",
    ),
    _c(
        "VD-NEAR",
        "BLR",
        "activity",
        "BLR-2017-ZAPAD",
        "2017",
        "info",
        "Zapad-2017: declared 12,700 troops, just under the 13,000 observation threshold.",
    ),
    _c(
        "VD-NEAR",
        "BLR",
        "activity",
        "BLR-2018-NEMAN",
        "2018",
        "info",
        "Declared 8,700 troops, just under the 9,000 notification threshold.",
    ),
    _c(
        "VD-NEAR",
        "SRB",
        "activity",
        "SRB-2014-SLOGA",
        "2014",
        "info",
        "Declared 8,950 troops, just under the 9,000 notification threshold.",
    ),
    _c(
        "VD-NEAR",
        "POL",
        "activity",
        "POL-2014-DRAGON",
        "2014",
        "info",
        "Declared 246 battle tanks, just under the 250 notification threshold.",
    ),
    _c(
        "VD-NEAR",
        "KAZ",
        "activity",
        "KAZ-2019-BATYS",
        "2019",
        "info",
        "Declared 8,990 troops, just under the 9,000 notification threshold.",
    ),
    _c(
        "VD-NEAR",
        "GRC",
        "activity",
        "GRC-2019-PARMENION",
        "2019",
        "info",
        "Declared 242 battle tanks, just under the 250 notification threshold.",
    ),
    # --- VD Chapter IX: inspections and evaluation visits ------------------------------------
    _c(
        "VD-IX-I2",
        "ARM",
        "inspection",
        "VDI-2020-TUR-ARM-01",
        "2020",
        "breach",
        "Inspection requested by Türkiye refused although Armenia had accepted none in "
        "2020 (declared non-acceptance of Turkish inspectors of 29 July 2020).",
    ),
    _c(
        "VD-IX-I2",
        "BLR",
        "inspection",
        "VDI-2022-POL-BLR-01",
        "2022",
        "breach",
        "Inspection requested by Poland refused with one inspection accepted in 2022.",
    ),
    _c(
        "VD-IX-I2",
        "GEO",
        "inspection",
        "VDI-2020-FRA-GEO-01",
        "2020",
        "none",
        "Not carried out because of COVID-19 restrictions (force majeure): not a refusal.",
    ),
    _c(
        "VD-IX-I2",
        "RUS",
        "inspection",
        "VDI-2014-LTU-RUS-01",
        "2014",
        "none",
        "Refused after Russia's quota of three inspections for 2014 was filled "
        "(quota_filled notice VD-RUS-2014-QF): not a finding.",
    ),
    _c(
        "VD-IX-I4",
        "KAZ",
        "inspection",
        "VDI-2017-DEU-KAZ-01",
        "2017",
        "late",
        "Reply sent 30 hours after the request (24 hours allowed).",
    ),
    _c(
        "VD-IX-I6",
        "FRA",
        "inspection",
        "VDI-2018-FRA-SRB-01",
        "2018",
        "late",
        "Inspection report circulated 20 days after the inspection ended (14 days allowed).",
    ),
    _c(
        "VD-IX-E2",
        "RUS",
        "inspection",
        "VDE-2019-USA-RUS-01",
        "2019",
        "breach",
        "Evaluation visit refused with one of Russia's six quota visits used in 2019.",
    ),
    _c(
        "VD-IX-E2",
        "UKR",
        "inspection",
        "VDE-2020-DEU-UKR-01",
        "2020",
        "none",
        "Not carried out because of COVID-19 restrictions (force majeure): not a refusal.",
    ),
    _c(
        "VD-IX-E2",
        "SRB",
        "inspection",
        "VDE-2016-HUN-SRB-01",
        "2016",
        "none",
        "Second visit accepted beyond Serbia's quota of one (voluntary): allowed.",
    ),
    _c(
        "VD-IX-E2",
        "SRB",
        "inspection",
        "VDE-2016-GBR-SRB-01",
        "2016",
        "none",
        "Refused after Serbia had accepted two visits against a quota of one: not a finding.",
    ),
    # --- VD Chapter III: unusual military activities -----------------------------------------
    _c(
        "VD-III-1",
        "RUS",
        "notification",
        "VD-UA-UKR-20220211-REQ",
        "2022",
        "breach",
        "Ukraine's request of 11 February 2022 for an explanation of unusual military "
        "activity was not answered.",
    ),
    _c(
        "VD-III-1",
        "BLR",
        "notification",
        "VD-UA-LTU-20220210-REQ",
        "2022",
        "late",
        "Reply to the Baltic States' request sent 60 hours after it (48 hours allowed).",
    ),
    _c(
        "VD-III-1",
        "BLR",
        "notification",
        "VD-UA-LVA-20170905-REQ",
        "2017",
        "none",
        "Answered within 30 hours: compliant.",
    ),
    # --- Open Skies ---------------------------------------------------------------------------
    _c(
        "OS-T1",
        "DEU",
        "observation_flight",
        "OS-2017-DEU-RUS-01",
        "2017",
        "late",
        "Flight notification sent 48 hours before the ETA at the point of entry "
        "(72 hours required).",
    ),
    _c(
        "OS-T2",
        "RUS",
        "observation_flight",
        "OS-2016-USA-RUS-01",
        "2016",
        "late",
        "Acknowledgement sent 31 hours after the flight notification (24 hours allowed).",
    ),
    _c(
        "OS-T4",
        "RUS",
        "observation_flight",
        "OS-2015-RUS-USA-01",
        "2015",
        "breach",
        "108 hours from the ETA at the point of entry to the end of the observation flight "
        "(96 hours allowed).",
    ),
    _c(
        "OS-T13",
        "GBR",
        "observation_flight",
        "OS-2013-GBR-RUS-01",
        "2013",
        "late",
        "Mission report circulated 10 days after departure (7 days allowed).",
    ),
    _c(
        "OS-DIST",
        "RUS",
        "observation_flight",
        "OS-2018-RUS-DEU-01",
        "2018",
        "breach",
        "1,350 km flown from Wunstorf (maximum 1,200 km).",
    ),
    _c(
        "OS-PROHIBIT",
        "RUS",
        "observation_flight",
        "OS-2019-UKR-RUS-01",
        "2019",
        "breach",
        "Flight prohibited by the observed State with no ground recorded.",
    ),
    _c(
        "OS-PROHIBIT",
        "RUS",
        "observation_flight",
        "OS-2017-ROU-RUS-01",
        "2017",
        "none",
        "Prohibited because the observing Party arrived 27 hours after the notified ETA "
        "(Art. VIII Sec. I ¶2), ground recorded: compliant.",
    ),
    _c(
        "OS-Q6",
        "RUS",
        "observation_flight",
        "OS-2015-RUS-PRT-02",
        "2015",
        "breach",
        "Second flight over Portugal in 2015: the cap is 50 % (rounded up) of Portugal's "
        "passive quota of 2, i.e. one flight.",
    ),
    _c(
        "OS-OVERQUOTA",
        "PRT",
        "observation_flight",
        "OS-2018-UKR-PRT-01",
        "2018",
        "positive",
        "Third observation flight accepted over Portugal in 2018, beyond its passive quota of 2.",
    ),
    # --- CFE ----------------------------------------------------------------------------------
    _c(
        "CFE-X1",
        "MDA",
        "notification",
        "CFE-MDA-2016-AEX",
        "2016",
        "late",
        "CFE annual exchange for 2016 sent on 2015-12-22.",
    ),
    _c(
        "CFE-X1",
        "UKR",
        "notification",
        "CFE-UKR-2023-AEX",
        "2023",
        "late",
        "CFE annual exchange for 2023 sent on 2022-12-28.",
    ),
    _c(
        "CFE-X3",
        "BLR",
        "holding",
        "BLR/2016-05-16/acv/cfe/120th Mechanised Brigade",
        "2016",
        "breach",
        "ACV of the unit rose from 160 to 200 (+25 %); no holdings_change notification.",
    ),
    _c(
        "CFE-X3",
        "ROU",
        "holding",
        "ROU/2017-06-12/battle_tanks/cfe/282nd Mechanised Brigade",
        "2017",
        "late",
        "Battle tanks of the unit rose from 58 to 70 (+21 %); notified on 2017-06-26, ten "
        "working days later (five allowed).",
    ),
    _c(
        "CFE-X3",
        "DEU",
        "holding",
        "DEU/2015-06-15/battle_tanks/cfe/Panzerlehrbrigade 9",
        "2015",
        "none",
        "Battle tanks of the unit fell from 88 to 44 (-50 %); notified two working days "
        "later: compliant.",
    ),
    *(
        _c(
            "CFE-VII-1",
            "AZE",
            "holding",
            f"AZE/{year}-01-01/battle_tanks/cfe/",
            str(year),
            "breach",
            f"{count} battle tanks declared as of 1 January {year}, above the maximum level "
            "for holdings of 220.",
        )
        for year, count in ((2018, 462), (2019, 570), (2020, 590))
    ),
    *(
        _c(
            "CFE-VII-1",
            "ARM",
            "holding",
            f"ARM/{year}-01-01/acv/cfe/",
            str(year),
            "breach",
            f"{count} ACV declared as of 1 January {year}, above the maximum level for "
            "holdings of 220.",
        )
        for year, count in ((2019, 246), (2020, 236))
    ),
    _c(
        "CFE-R2",
        "RUS",
        "reduction",
        "RUS-1991-URALS-TANKS",
        "1995",
        "breach",
        "Commitment to destroy or convert 6,000 battle tanks east of the Urals by the end "
        "of 1995, met only on 2003-06-07.",
    ),
    _c(
        "CFE-R2",
        "ARM",
        "reduction",
        "ARM-2019-CFE-ACV",
        "2019",
        "breach",
        "Reduction of 30 ACV back to the maximum level for holdings, due 2019-12-31, "
        "completed on 2020-05-20.",
    ),
    _c(
        "CFE-I10",
        "DEU",
        "inspection",
        "CFE-2016-DEU-BLR-01",
        "2016",
        "breach",
        "Notification of intent to inspect sent 30 hours before arrival (36 hours required).",
    ),
    # --- Reductions ---------------------------------------------------------------------------
    _c(
        "RED-1",
        "BGR",
        "reduction",
        "BGR-2013-UNI-TANKS",
        "2015",
        "warning",
        "Unilateral reduction of 100 T-72 tanks due by 2015-12-31, completed on 2016-09-30.",
    ),
    _c(
        "RED-1",
        "DEU",
        "reduction",
        "DEU-2011-UNI-TANKS",
        "2017",
        "positive",
        "Unilateral reduction of 125 battle tanks completed on 2015-06-30, two and a half "
        "years before its deadline of 2017-12-31.",
    ),
    # --- GEMI ---------------------------------------------------------------------------------
    _c(
        "GEMI-3",
        "TJK",
        "notification",
        "GEMI-TJK-2017",
        "2017",
        "late",
        "GEMI exchange for 2017 sent on 2017-05-22, after 30 April.",
    ),
    _c(
        "GEMI-3",
        "TKM",
        "notification",
        "",
        "2021",
        "breach",
        "No GEMI exchange for 2021.",
    ),
]


def findings() -> list[PlantedCase]:
    """The cases a correct rule reports."""
    return [c for c in PLANTED if c.is_finding]


def non_findings() -> list[PlantedCase]:
    """The edge cases a correct rule must not report."""
    return [c for c in PLANTED if not c.is_finding]


CONVENTIONS = """\
## Conventions

- **Horizon.** The demo covers 2012-2025: every obligation whose deadline falls in that
  span is in the data (so the annual submissions sent in late 2025 for 2026 are included);
  nothing later is. A rule run over later dates will find 2026 submissions missing.
  An annual submission is due from the States party to the regime on its deadline: no CFE
  exchange for 2024 from the States whose suspension took effect on 7 December 2023, none
  at all from Russia (suspended from 2007), no 2013 calendar from Mongolia (joined
  2012-11-21). Open Skies flights take place only while both States are parties (none
  with the USA after 2020, none with Russia or Belarus after 2021).
- **Period.** Annual submissions: the year covered (`covers_year`; the AEMI sent in
  December 2018 covers 2019). Activities: the year of the start date. Inspections and
  evaluation visits: the year of the request. Observation flights: the year of the ETA.
  Holdings: the year of `as_of`. Reductions: the year of the deadline. Chapter III
  requests: the year of the request.
- **State.** The State whose conduct the case is about: the sender of a submission; the
  conducting State of an activity; the receiving (inspected) State for refusals and late
  replies; the inspecting State for late VD reports and late CFE notifications; the observing
  State for late flight notifications, long missions, late mission reports, excess distance
  and the 50 % cap; the observed State for late acknowledgements, prohibitions and
  quotas accepted; the requested State for Chapter III.
- **Subject.** The natural key of the record that shows the case; empty for a missing
  annual submission. For rules about a set of activities or flights (VD-VIII-1, VD-VIII-5,
  OS-Q6, OS-OVERQUOTA) it is the activity or flight that took the count over the limit.
- **Largest figure.** Activity rules use, per parameter, the largest figure of any source
  row (`notification`, `calendar`, `open_source`, `inspection`, ...); VD-NEAR looks at the
  declared figures (`notification` and `calendar` rows). Outside the planted cases no figure
  of any source lies within 10 % below any VD threshold (9,000 / 13,000 / 25,000 / 40,000
  troops; 250 / 300 / 400 / 900 tanks; 500 / 2,000 ACV; 250 / 300 / 900 artillery;
  200 sorties; 3,000 / 3,500 airborne troops).
- **Timing.** A deadline day ends at 23:59:59 UTC; lead times in days are date
  differences (start date minus the date sent); hours are measured between UTC instants.
  Working days are Monday to Friday. A CFE inspection "arrives" at its `start_at`. Alert
  activities are notified at their start and are not in calendars.
- **Quotas.** VD passive quota rows hold the *evaluation* quota, `min(15, ceil(units/60))`
  (the contract's quota key has room for one VD passive quota per State and year; the
  inspection quota of three is the rule parameter). Open Skies passive quota rows are
  written for single-State Annex A holders, for Czechia and Slovakia (the CSFR quota of 4
  split 2 + 2, an assumption) and for later acceding States (demo values); the Belarus-Russia
  group (42) and Benelux (6) quotas come from the reference data. Active quota rows cover
  every counterpart actually overflown. Flights that count against quotas are those with
  `counts_against_quota` true (completed and curtailed ones). Every flight states its
  `max_distance_km`: the Annex A value for Annex A airfields, a demo value for the
  airfields of later acceding States and for Minsk-Machulishchi.
- **Grounds and ceilings.** The ground of a prohibited or declined flight is recorded in
  `curtailment_cause`. CFE-VII-1 compares `cfe` holdings with CFE ceilings (the planted
  States' `vd_aemi` and `gemi` totals show the same excess). Ceilings follow
  csbm-rules.md §6.2 where it gives values (USA; the Tashkent figures for ARM, AZE, BLR,
  GEO, MDA, UKR); the other values are plausible demo values, labelled so in `basis`.
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_planted_markdown() -> str:
    """The human-readable list of planted cases (``docs/demo-planted-cases.md``)."""
    lines = [
        "# Demo data: planted compliance cases",
        "",
        "<!-- Generated from cbm/demo/planted.py by render_planted_markdown(); "
        "do not edit by hand. -->",
        "",
        "`cbm demo load` writes a deterministic, realistic history for 2012-2025 (all 57 "
        "participating States, all regimes). Everything in it is compliant except the cases "
        "below, which are planted so that every rule of the compliance catalogue has "
        "something to find. Cases with severity **none** are edge cases a correct rule "
        "must *not* report.",
        "",
        f"{len(findings())} findings and {len(non_findings())} non-findings are planted.",
        "",
        CONVENTIONS.rstrip("\n"),
        "",
        "## Findings",
        "",
    ]
    header = [
        "| Rule | State | Severity | Period | Subject type | Subject | Description |",
        "|---|---|---|---|---|---|---|",
    ]

    def row(c: PlantedCase) -> str:
        subject = f"`{c.subject_id}`" if c.subject_id else "(missing)"
        return (
            f"| {c.rule_id} | {c.state} | {c.severity} | {c.period} | {c.subject_type} | "
            f"{_cell(subject)} | {_cell(c.description)} |"
        )

    for rule_id, title in RULES.items():
        cases = [c for c in findings() if c.rule_id == rule_id]
        lines.append(f"### {rule_id}: {title}")
        lines.append("")
        lines.extend(header)
        lines.extend(row(c) for c in cases)
        lines.append("")
    lines.extend(["## Non-findings (must not be reported)", "", *header])
    lines.extend(row(c) for c in non_findings())
    lines.append("")
    return "\n".join(lines)
