#!/usr/bin/env python3
"""Fetch and derive the dashboards' vendored front-end files. Run from the repository root:

    python dashboards/tools/vendor.py            # fetches with `npm pack` into a temp folder
    python dashboards/tools/vendor.py --from DIR # uses tarballs already in DIR

What it does, and nothing else (no JS build step, no other network access):

1. ``npm pack echarts@5.6.0 world-atlas@2.0.2`` downloads the two packages' tarballs
   from the npm registry (the ordinary client; nothing is installed).
2. Apache ECharts: ``package/dist/echarts.min.js`` with its ``LICENSE`` (Apache-2.0) and
   ``NOTICE`` are copied, unchanged, to ``dashboards/static/dashboards/vendor/echarts/``.
3. Map geometry: ``package/countries-110m.json`` of world-atlas (TopoJSON of the Natural
   Earth 1:110m admin-0 countries; Natural Earth is public domain, world-atlas is ISC,
   ``LICENSE`` copied to ``vendor/world-atlas/``) is turned into one SVG shape per OSCE
   *region* of the reference data (``cbm/reference/data/states.csv`` maps each State to
   its region): the member countries' rings are projected (Lambert azimuthal equal-area,
   centred on the OSCE area so Vancouver and Vladivostok both fit), their coordinates
   rounded to 0.1 px, and written as SVG path data, together with the outline of each
   region (the arcs no two members share) and a grey background of the other countries
   in view. The result is ``vendor/world-atlas/osce-regions.json``, which the server
   inlines into the overview page (the map needs no script to draw or to be clicked).

Microstates (Andorra, Holy See, Liechtenstein, Malta, Monaco, San Marino) have no shape
at 1:110m; their regions are drawn by their other members. Rerun this script when the
regions of the reference data change.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import tarfile
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENDOR = ROOT / "dashboards" / "static" / "dashboards" / "vendor"
STATES_CSV = ROOT / "cbm" / "reference" / "data" / "states.csv"
PACKAGES = {"echarts": "echarts@5.6.0", "world-atlas": "world-atlas@2.0.2"}

#: ISO 3166-1 numeric (the ids of world-atlas) -> alpha-3 (the State codes of cbm).
ISO_NUMERIC = {
    "008": "ALB", "020": "AND", "051": "ARM", "040": "AUT", "031": "AZE", "112": "BLR",
    "056": "BEL", "070": "BIH", "100": "BGR", "124": "CAN", "191": "HRV", "196": "CYP",
    "203": "CZE", "208": "DNK", "233": "EST", "246": "FIN", "250": "FRA", "268": "GEO",
    "276": "DEU", "300": "GRC", "336": "VAT", "348": "HUN", "352": "ISL", "372": "IRL",
    "380": "ITA", "398": "KAZ", "417": "KGZ", "428": "LVA", "438": "LIE", "440": "LTU",
    "442": "LUX", "470": "MLT", "498": "MDA", "492": "MCO", "496": "MNG", "499": "MNE",
    "528": "NLD", "807": "MKD", "578": "NOR", "616": "POL", "620": "PRT", "642": "ROU",
    "643": "RUS", "674": "SMR", "688": "SRB", "703": "SVK", "705": "SVN", "724": "ESP",
    "752": "SWE", "756": "CHE", "762": "TJK", "792": "TUR", "795": "TKM", "804": "UKR",
    "826": "GBR", "840": "USA", "860": "UZB",
}  # fmt: skip

#: Projection centres (lon, lat in degrees) and the map's width in SVG units. Europe and
#: Asia fill the frame; North America sits in an inset box (x, y, width) top left.
MAIN_CENTRE = (52.0, 56.0)
INSET_CENTRE = (-100.0, 52.0)
INSET_REGIONS = ("north_america",)
INSET_BOX = (0.0, 0.0, 260.0)
WIDTH = 1000.0
#: Parts of members far from the OSCE area (French Guiana, Réunion…) are left out.
KEEP = {"lon": (-180.0, 180.0), "lat": (24.0, 90.0)}
#: Background countries whose points are all within this angle of the centre are drawn.
BACKGROUND_MAX_ANGLE = 95.0


def npm_pack(folder: Path) -> dict[str, Path]:
    out = {}
    for name, spec in PACKAGES.items():
        done = subprocess.run(
            ["npm", "pack", spec, "--silent"], cwd=folder, check=True, capture_output=True,
            text=True,
        )  # fmt: skip
        out[name] = folder / done.stdout.strip().splitlines()[-1]
    return out


def extract(tarball: Path, members: dict[str, Path]) -> None:
    with tarfile.open(tarball) as tar:
        for inner, target in members.items():
            source = tar.extractfile(f"package/{inner}")
            assert source is not None, inner
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read())


# --------------------------------------------------------------------------------------
# TopoJSON -> projected rings
# --------------------------------------------------------------------------------------


def decode_arcs(topo: dict) -> list[list[tuple[float, float]]]:
    (sx, sy), (tx, ty) = topo["transform"]["scale"], topo["transform"]["translate"]
    arcs = []
    for arc in topo["arcs"]:
        x = y = 0
        points = []
        for dx, dy in arc:
            x += dx
            y += dy
            points.append((x * sx + tx, y * sy + ty))
        arcs.append(points)
    return arcs


def ring_points(ring: list[int], arcs: list) -> list[tuple[float, float]]:
    points: list[tuple[float, float]] = []
    for index in ring:
        arc = arcs[index] if index >= 0 else list(reversed(arcs[~index]))
        points.extend(arc if not points else arc[1:])
    return points


def polygons_of(geometry: dict) -> list[list[list[int]]]:
    if geometry["type"] == "Polygon":
        return [geometry["arcs"]]
    if geometry["type"] == "MultiPolygon":
        return geometry["arcs"]
    return []


def project(lon: float, lat: float, centre: tuple[float, float]) -> tuple[float, float, float]:
    """Lambert azimuthal equal-area; returns x, y (unit sphere, y down) and the angle
    from the centre in degrees."""
    lam, phi = math.radians(lon - centre[0]), math.radians(lat)
    phi0 = math.radians(centre[1])
    cos_c = math.sin(phi0) * math.sin(phi) + math.cos(phi0) * math.cos(phi) * math.cos(lam)
    k = math.sqrt(2 / max(1e-9, 1 + cos_c))
    x = k * math.cos(phi) * math.sin(lam)
    y = k * (math.cos(phi0) * math.sin(phi) - math.sin(phi0) * math.cos(phi) * math.cos(lam))
    return x, -y, math.degrees(math.acos(max(-1.0, min(1.0, cos_c))))


def in_keep(points: list[tuple[float, float]]) -> bool:
    lon = sum(p[0] for p in points) / len(points)
    lat = sum(p[1] for p in points) / len(points)
    return KEEP["lon"][0] <= lon <= KEEP["lon"][1] and KEEP["lat"][0] <= lat <= KEEP["lat"][1]


def path_data(rings: list[list[tuple[float, float]]], close: bool = True) -> str:
    parts = []
    for ring in rings:
        cmds, last = [], None
        for x, y in ring:
            point = (round(x, 1), round(y, 1))
            if point == last:
                continue
            cmds.append(f"{point[0]:g},{point[1]:g}")
            last = point
        if len(cmds) >= (3 if close else 2):
            parts.append("M" + "L".join(cmds) + ("Z" if close else ""))
    return "".join(parts)


def ring_area_centroid(ring: list[tuple[float, float]]) -> tuple[float, float, float]:
    a = cx = cy = 0.0
    for (x0, y0), (x1, y1) in zip(ring, ring[1:] + ring[:1], strict=True):
        cross = x0 * y1 - x1 * y0
        a += cross
        cx += (x0 + x1) * cross
        cy += (y0 + y1) * cross
    if abs(a) < 1e-12:
        return 0.0, ring[0][0], ring[0][1]
    return abs(a) / 2, cx / (3 * a), cy / (3 * a)


class Frame:
    """Projected unit-sphere coordinates -> SVG units of one panel."""

    def __init__(self, centre, points, left, top, width, margin=0.02):
        xs = [x for x, _ in points]
        ys = [y for _, y in points]
        self.centre = centre
        self.x0, self.y0 = min(xs) - margin, min(ys) - margin
        self.scale = width / (max(xs) + margin - self.x0)
        self.left, self.top = left, top
        self.width = width
        self.height = (max(ys) + margin - self.y0) * self.scale

    def __call__(self, lonlat):
        out = []
        for lon, lat in lonlat:
            x, y, _ = project(lon, lat, self.centre)
            out.append(
                (self.left + (x - self.x0) * self.scale, self.top + (y - self.y0) * self.scale)
            )
        return out


def build_map(topo_path: Path, states_csv: Path) -> dict:
    topo = json.loads(topo_path.read_text())
    arcs = decode_arcs(topo)
    with states_csv.open(newline="", encoding="utf-8") as fh:
        region_of = {row["code"]: row["region"] for row in csv.DictReader(fh)}
    members: dict[str, list[tuple[str, list[list[int]]]]] = {}
    background: list[list[list[int]]] = []
    drawn_states = set()
    for geometry in topo["objects"]["countries"]["geometries"]:
        code = ISO_NUMERIC.get(str(geometry.get("id")))
        region = region_of.get(code or "")
        for polygon in polygons_of(geometry):
            outer = ring_points(polygon[0], arcs)
            if region:
                if in_keep(outer):
                    members.setdefault(region, []).append((code, polygon))
                    drawn_states.add(code)
            else:
                background.append(polygon)

    def outer_points(regions, centre):
        pts = []
        for region in regions:
            for _, polygon in members[region]:
                pts.extend(
                    project(lon, lat, centre)[:2] for lon, lat in ring_points(polygon[0], arcs)
                )
        return pts

    main_regions = [r for r in members if r not in INSET_REGIONS]
    main = Frame(MAIN_CENTRE, outer_points(main_regions, MAIN_CENTRE), 0.0, 0.0, WIDTH)
    inset_points = outer_points(INSET_REGIONS, INSET_CENTRE)
    inset = Frame(INSET_CENTRE, inset_points, INSET_BOX[0] + 4, INSET_BOX[1] + 4, INSET_BOX[2] - 8)
    frames = {r: (inset if r in INSET_REGIONS else main) for r in members}

    regions = {}
    for region, polys in sorted(members.items()):
        frame = frames[region]
        rings, best = [], (0.0, 0.0, 0.0)
        used: Counter[int] = Counter()
        for _, polygon in polys:
            for i, ring in enumerate(polygon):
                pts = frame(ring_points(ring, arcs))
                rings.append(pts)
                if i == 0:
                    best = max(best, ring_area_centroid(pts))
                for index in ring:
                    used[index if index >= 0 else ~index] += 1
        outline = [frame(arcs[i]) for i, n in used.items() if n == 1]
        regions[region] = {
            "d": path_data(rings),
            "outline": path_data(outline, close=False),
            "label": [round(best[1], 1), round(best[2], 1)],
            "states": sorted({code for code, _ in polys}),
        }
    back_rings = []
    for polygon in background:
        lonlat = ring_points(polygon[0], arcs)
        if max(project(lon, lat, MAIN_CENTRE)[2] for lon, lat in lonlat) > BACKGROUND_MAX_ANGLE:
            continue
        pts = main(lonlat)
        if any(-50 <= x <= WIDTH + 50 and -50 <= y <= main.height + 50 for x, y in pts):
            back_rings.append(pts)
    box = [INSET_BOX[0], INSET_BOX[1], INSET_BOX[2], round(inset.height + 8, 1)]
    return {
        "about": (
            "Derived by dashboards/tools/vendor.py from world-atlas 2.0.2 countries-110m.json "
            "(Natural Earth 1:110m admin-0 countries, public domain; world-atlas ISC licence)."
        ),
        "projection": (
            f"Lambert azimuthal equal-area centred on {MAIN_CENTRE}; North America in an "
            f"inset centred on {INSET_CENTRE} (lon, lat)"
        ),
        "width": WIDTH,
        "height": round(main.height, 1),
        "inset": box,
        "regions": regions,
        "background": path_data(back_rings),
        "states_without_shape": sorted(set(region_of) - drawn_states),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="source", type=Path, help="folder with the tarballs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.source:
            tarballs = {
                name: next(args.source.glob(f"{spec.replace('@', '-')}.tgz"))
                for name, spec in PACKAGES.items()
            }
        else:
            tarballs = npm_pack(Path(tmp))
        extract(
            tarballs["echarts"],
            {
                "dist/echarts.min.js": VENDOR / "echarts" / "echarts.min.js",
                "LICENSE": VENDOR / "echarts" / "LICENSE",
                "NOTICE": VENDOR / "echarts" / "NOTICE",
            },
        )
        topo = Path(tmp) / "countries-110m.json"
        extract(
            tarballs["world-atlas"],
            {"countries-110m.json": topo, "LICENSE": VENDOR / "world-atlas" / "LICENSE"},
        )
        data = build_map(topo, STATES_CSV)
    target = VENDOR / "world-atlas" / "osce-regions.json"
    target.write_text(json.dumps(data, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {target.relative_to(ROOT)} ({target.stat().st_size:,} bytes), "
          f"{len(data['regions'])} regions")  # fmt: skip


if __name__ == "__main__":
    main()
