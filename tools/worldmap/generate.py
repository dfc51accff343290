#!/usr/bin/env python3
"""Writes src/web/world_map.txt, the country shapes of the dashboard's map.

Run once by hand when the shapes should change; the output is committed and
embedded by src/web/world_map.rs (nothing is downloaded at build or run time).

Inputs:
  - Natural Earth 1:110m countries (public domain) as TopoJSON, from the
    `world-atlas` npm package (countries-110m.json), plus its 1:50m file for
    the countries too small to appear at 1:110m (Singapore, Hong Kong,
    Malta, Bahrain, ...), which become dots at their centre;
  - ISO 3166-1 names and codes from the `pycountry` PyPI package (the
    TopoJSON ids are ISO numeric codes; dmarcd stores alpha-2 codes, as the
    .mmdb databases give them).

    cd /tmp && npm pack world-atlas@2.0.2 && tar xzf world-atlas-2.0.2.tgz
    pip install pycountry
    python3 tools/worldmap/generate.py /tmp/package > src/web/world_map.txt

Output, one line per country, tab-separated:
    CC <tab> name <tab> path data (an SVG `d`, integer units)
    CC <tab> name <tab> @x,y        (a dot: too small to draw as a shape)
    CC <tab> name <tab>             (named only: not on the map)
after `#` comment lines, the first of which gives the view box.
"""

import json
import math
import sys

import pycountry

# The view box: Equal Earth spans x in [-2.7066, 2.7066] and this map crops
# the latitudes below (Antarctica sends no mail and would take a fifth of
# the height).
WIDTH = 1000
SOUTH, NORTH = -58.0, 84.0
# Douglas-Peucker tolerance in view box units: half a unit keeps the coast
# recognisable at full width while removing most points.
TOLERANCE = 0.6
# Natural Earth shapes without an ISO id, and the code whose IPs they hold
# (DB-IP and MaxMind give XK for Kosovo; the others are within CY and SO).
UNNAMED = {"Kosovo": "XK", "N. Cyprus": "CY", "Somaliland": "SO"}
# Names shorter than ISO's formal ones ("Bolivia, Plurinational State of").
EXTRA_NAMES = {"XK": "Kosovo"}
SKIP = {"AQ"}  # Antarctica, cropped
# Countries smaller than this (view box units, largest side) become dots.
MIN_SHAPE = 5


def equal_earth(lon, lat):
    """The Equal Earth projection (Šavrič, Patterson, Jenny 2018)."""
    a1, a2, a3, a4 = 1.340264, -0.081106, 0.000893, 0.003796
    m = math.sqrt(3) / 2
    lam, phi = math.radians(lon), math.radians(lat)
    theta = math.asin(m * math.sin(phi))
    t2 = theta * theta
    t6 = t2 * t2 * t2
    x = lam * math.cos(theta) / (m * (a1 + 3 * a2 * t2 + t6 * (7 * a3 + 9 * a4 * t2)))
    y = theta * (a1 + a2 * t2 + t6 * (a3 + a4 * t2))
    return x, y


X_MAX = equal_earth(180, 0)[0]
Y_TOP = equal_earth(0, NORTH)[1]
Y_BOTTOM = equal_earth(0, SOUTH)[1]
SCALE = WIDTH / (2 * X_MAX)
HEIGHT = math.ceil((Y_TOP - Y_BOTTOM) * SCALE)


def project(lon, lat):
    lat = max(min(lat, NORTH), SOUTH)
    x, y = equal_earth(lon, lat)
    return (x + X_MAX) * SCALE, (Y_TOP - y) * SCALE


def decode_arcs(topology):
    """The arcs as (longitude, latitude) lists."""
    (sx, sy), (tx, ty) = topology["transform"]["scale"], topology["transform"]["translate"]
    arcs = []
    for arc in topology["arcs"]:
        x = y = 0
        points = []
        for dx, dy in arc:
            x += dx
            y += dy
            points.append((x * sx + tx, y * sy + ty))
        arcs.append(points)
    return arcs


def simplified_arcs(arcs):
    """Each arc simplified in view box units, kept as (longitude, latitude):
    simplifying arcs rather than rings keeps shared borders identical."""
    out = []
    for arc in arcs:
        projected = [project(*p) + (p,) for p in arc]
        out.append([p[2] for p in simplify(projected, TOLERANCE)])
    return out


def split_at_antimeridian(ring):
    """Natural Earth rings that cross 180° (Russia, Fiji) jump from +180 to
    -180; drawn as they are they would cross the whole map. The ring is
    unwrapped into one continuous run, then drawn twice, once clamped to
    each side (clamping fills the part beyond with zero-area edges along
    the meridian, which is the same as clipping for a filled shape)."""
    unwrapped, shift = [ring[0]], 0.0
    for (lon0, _), (lon1, lat1) in zip(ring, ring[1:]):
        if lon1 - lon0 > 180:
            shift -= 360
        elif lon0 - lon1 > 180:
            shift += 360
        unwrapped.append((lon1 + shift, lat1))
    if all(-180 <= lon <= 180 for lon, _ in unwrapped):
        return [ring]
    pieces = []
    for offset in (0, 360, -360):
        piece = [(lon + offset, lat) for lon, lat in unwrapped]
        if any(-180 < lon < 180 for lon, _ in piece):
            pieces.append(collapse_edge_runs([(max(-180, min(180, lon)), lat) for lon, lat in piece]))
    return pieces


def collapse_edge_runs(ring):
    """Keeps only the ends of each run of points clamped onto the meridian:
    the run between them is a zero-area spike that a stroke would draw."""
    on_edge = [abs(lon) == 180 for lon, _ in ring]
    kept = []
    for i, point in enumerate(ring):
        inner = on_edge[i] and on_edge[i - 1] and on_edge[(i + 1) % len(ring)]
        if not inner:
            kept.append(point)
    return kept


def simplify(points, tolerance):
    """Douglas-Peucker, iterative; the ends are kept so shared arcs still meet."""
    if len(points) < 3:
        return points
    keep = [False] * len(points)
    keep[0] = keep[-1] = True
    stack = [(0, len(points) - 1)]
    while stack:
        first, last = stack.pop()
        (x1, y1), (x2, y2) = points[first][:2], points[last][:2]
        dx, dy = x2 - x1, y2 - y1
        length = math.hypot(dx, dy)
        worst, worst_at = 0.0, None
        for i in range(first + 1, last):
            px, py = points[i][:2]
            if length == 0:
                d = math.hypot(px - x1, py - y1)
            else:
                d = abs(dy * px - dx * py + x2 * y1 - y2 * x1) / length
            if d > worst:
                worst, worst_at = d, i
        if worst_at is not None and worst > tolerance:
            keep[worst_at] = True
            stack.append((first, worst_at))
            stack.append((worst_at, last))
    return [p for p, k in zip(points, keep) if k]


def ring_points(ring, arcs):
    points = []
    for index in ring:
        arc = arcs[index] if index >= 0 else list(reversed(arcs[~index]))
        points.extend(arc if not points else arc[1:])
    return points


def polygons_of(geometry):
    if geometry["type"] == "Polygon":
        return [geometry["arcs"]]
    if geometry["type"] == "MultiPolygon":
        return geometry["arcs"]
    return []


def ring_path(ring):
    """`M x y` then relative steps, integers; None when nothing is left."""
    grid = []
    for x, y in (project(lon, lat) for lon, lat in ring):
        p = (round(x), round(y))
        if not grid or grid[-1] != p:
            grid.append(p)
    if len(grid) > 1 and grid[0] == grid[-1]:
        grid.pop()
    if len(set(grid)) < 3:
        return None
    out = [f"M{grid[0][0]} {grid[0][1]}l"]
    steps = []
    for (x0, y0), (x1, y1) in zip(grid, grid[1:]):
        steps.append(f"{x1 - x0} {y1 - y0}")
    out.append(" ".join(steps).replace(" -", "-"))
    out.append("z")
    return "".join(out)


def centre(geometry, arcs):
    """The centre of the largest ring's bounding box, in view box units."""
    best, best_area = None, -1.0
    for polygon in polygons_of(geometry):
        points = [project(*p) for p in ring_points(polygon[0], arcs)]
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        area = (max(xs) - min(xs)) * (max(ys) - min(ys))
        if area > best_area:
            best_area = area
            best = ((max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2)
    return best


def alpha2_of(geometry):
    numeric = geometry.get("id")
    if numeric is None:
        return UNNAMED.get(geometry["properties"]["name"])
    country = pycountry.countries.get(numeric=numeric)
    return country.alpha_2 if country else None


def name_of(code):
    if code in EXTRA_NAMES:
        return EXTRA_NAMES[code]
    country = pycountry.countries.get(alpha_2=code)
    return getattr(country, "common_name", None) or country.name


def main(package_dir):
    detail = json.load(open(f"{package_dir}/countries-110m.json"))
    coarse_arcs = simplified_arcs(decode_arcs(detail))
    shapes, extents = {}, {}
    for geometry in detail["objects"]["countries"]["geometries"]:
        code = alpha2_of(geometry)
        if code is None or code in SKIP:
            continue
        for polygon in polygons_of(geometry):
            for ring in polygon:
                for piece in split_at_antimeridian(ring_points(ring, coarse_arcs)):
                    path = ring_path(piece)
                    if path:
                        shapes.setdefault(code, []).append(path)
                        extents.setdefault(code, []).extend(project(*p) for p in piece)
    # A shape a few units across cannot be seen or pointed at: a dot instead.
    for code, points in extents.items():
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        if max(max(xs) - min(xs), max(ys) - min(ys)) < MIN_SHAPE:
            del shapes[code]

    fine = json.load(open(f"{package_dir}/countries-50m.json"))
    fine_arcs = decode_arcs(fine)
    dots = {}
    for geometry in fine["objects"]["countries"]["geometries"]:
        code = alpha2_of(geometry)
        if code is None or code in SKIP or code in shapes:
            continue
        point = centre(geometry, fine_arcs)
        if point:
            dots[code] = point

    codes = {c.alpha_2 for c in pycountry.countries} | set(EXTRA_NAMES)
    print(f"# viewBox 0 0 {WIDTH} {HEIGHT}")
    print("# Country shapes: Made with Natural Earth (public domain), 1:110m, via the")
    print("# world-atlas npm package 2.0.2; dots at the centre of 1:50m shapes for")
    print("# countries too small for 1:110m. Equal Earth projection, latitudes")
    print(f"# {SOUTH} to {NORTH}. Names: ISO 3166-1 via pycountry. Written by")
    print("# tools/worldmap/generate.py; do not edit by hand.")
    for code in sorted(codes - SKIP):
        if code in shapes:
            drawing = "".join(shapes[code])
        elif code in dots:
            x, y = dots[code]
            drawing = f"@{round(x)},{round(y)}"
        else:
            drawing = ""
        print(f"{code}\t{name_of(code)}\t{drawing}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "package")
