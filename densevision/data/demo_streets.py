"""Procedural street scenes in the CamVid layout: a dataset to try the whole pipeline without downloading anything.

Each scene has a sky, buildings with windows, a road in perspective with lane marks, sidewalks, trees, poles
with signs, a fence, cars, pedestrians and bicyclists, drawn as shapes with class-typical colours and textures,
under random lighting, shadows, blur and sensor noise. Labels follow CamVid (11 classes, void 11, on a few
boundary pixels), so every CamVid recipe runs on it with ``data.root`` pointed at the generated folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from densevision.data.camvid import CAMVID_CLASSES, CAMVID_IGNORE_LABEL
from densevision.data.generated import is_complete, mark_complete

SKY, BUILDING, POLE, ROAD, SIDEWALK, TREE, SIGN, FENCE, CAR, PEDESTRIAN, BICYCLIST = range(len(CAMVID_CLASSES))
VOID = CAMVID_IGNORE_LABEL
MARKER = ".densevision_demo.json"
_SPLIT_DIRS = ("train", "trainannot", "val", "valannot", "test", "testannot")

# Texture fields mixed into each part's colour (weights per part): see _Canvas.render.
_FINE, _STRIPES_V, _GRID, _LEAVES, _GRADIENT = range(5)

_BUILDING_COLORS = [(150, 80, 60), (196, 178, 148), (128, 128, 136), (210, 204, 192), (170, 120, 90)]
_CAR_COLORS = [(180, 30, 30), (40, 60, 160), (225, 225, 225), (35, 35, 40), (160, 165, 170), (40, 110, 60),
               (230, 190, 40)]
_CLOTHES_COLORS = [(40, 40, 60), (120, 30, 30), (30, 70, 120), (90, 90, 90), (200, 180, 140), (60, 100, 50)]
_SKIN_COLORS = [(224, 180, 150), (170, 120, 90), (110, 75, 55)]
_SIGN_COLORS = [(200, 30, 30), (30, 70, 190), (225, 195, 30)]


class _Canvas:
    """Draws parts (class, colour, texture) into an instance map; renders image and labels at the end."""

    def __init__(self, height: int, width: int, rng: np.random.Generator):
        self.height, self.width, self.rng = height, width, rng
        self.instances = np.zeros((height, width), np.uint16)
        self.classes: list[int] = []
        self.colors: list[tuple[float, float, float]] = []
        self.textures: list[np.ndarray] = []

    def part(self, cls: int, color, jitter: float = 12.0, **texture: float) -> int:
        """A new part id of class ``cls`` with a jittered colour and texture weights (fine, stripes, ...)."""
        weights = np.zeros(5, np.float32)
        for key, value in texture.items():
            weights[{"fine": _FINE, "stripes": _STRIPES_V, "grid": _GRID, "leaves": _LEAVES,
                     "gradient": _GRADIENT}[key]] = value
        self.classes.append(cls)
        self.colors.append(tuple(np.clip(np.asarray(color, np.float32) + self.rng.normal(0, jitter, 3), 0, 255)))
        self.textures.append(weights)
        return len(self.classes) - 1

    def poly(self, part: int, points) -> None:
        cv2.fillPoly(self.instances, [np.round(np.asarray(points)).astype(np.int32)], part)

    def rect(self, part: int, x0, y0, x1, y1) -> None:
        cv2.rectangle(self.instances, (int(round(x0)), int(round(y0))), (int(round(x1)), int(round(y1))), part, -1)

    def circle(self, part: int, x, y, radius, thickness: int = -1) -> None:
        cv2.circle(self.instances, (int(round(x)), int(round(y))), max(1, int(round(radius))), part, thickness)

    def line(self, part: int, x0, y0, x1, y1, thickness: int = 1) -> None:
        cv2.line(self.instances, (int(round(x0)), int(round(y0))), (int(round(x1)), int(round(y1))), part,
                 max(1, thickness))

    def render(self) -> tuple[np.ndarray, np.ndarray]:
        """``(image uint8 (H, W, 3) RGB, labels uint8 (H, W))``."""
        rng, h, w = self.rng, self.height, self.width
        ys, xs = np.ogrid[0:h, 0:w]
        ys, xs = ys.astype(np.float32), xs.astype(np.float32)
        fields = (
            rng.standard_normal((h, w), np.float32),                                      # fine grain
            np.sign(np.sin(xs * np.float32(2 * np.pi / rng.uniform(3, 5)))),              # vertical slats
            ((ys % 6 < 1) | (xs % 8 < 1)).astype(np.float32) * 2 - 1,                     # tiles / mortar
            cv2.GaussianBlur(rng.standard_normal((h, w), np.float32), (0, 0), 1.2) * 2.5,  # foliage
            1 - 2 * ys / h,                                                               # top-bright gradient
        )
        weights = np.asarray(self.textures, np.float32)
        # Textures shift brightness: weight 1 is about +-4 grey levels per unit of the field.
        shift = np.zeros((h, w), np.float32)
        for k, field in enumerate(fields):
            if weights[:, k].any():
                shift += weights[:, k][self.instances] * field
        image = np.asarray(self.colors, np.float32)[self.instances] + 4 * shift[..., None]
        # Lighting: exposure, colour cast, a soft illumination gradient and sometimes a cast shadow.
        gain = rng.uniform(0.7, 1.25) * rng.uniform(0.95, 1.05, 3)
        direction = rng.uniform(-1, 1, 2)
        illumination = 1 + 0.15 * (direction[0] * (xs / w - 0.5) + direction[1] * (ys / h - 0.5))
        image *= gain * illumination[..., None]
        if rng.random() < 0.5:
            shadow = np.zeros((h, w), np.uint8)
            x0 = rng.uniform(0, w)
            cv2.fillPoly(shadow, [np.int32([[x0, h * 0.45], [x0 + w * 0.3, h * 0.45], [x0 + w * 0.6, h],
                                            [x0 - w * 0.1, h]])], 1)
            image *= np.where(shadow[..., None] > 0, rng.uniform(0.55, 0.8), 1.0)
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.4, 0.8))
        image += rng.standard_normal(image.shape, np.float32) * 3
        labels = np.asarray(self.classes, np.uint8)[self.instances]
        return np.clip(image, 0, 255).astype(np.uint8), _void_some_boundaries(labels, rng)


def _void_some_boundaries(labels: np.ndarray, rng: np.random.Generator, fraction: float = 0.2) -> np.ndarray:
    """Mark a random ``fraction`` of class-boundary pixels as void, as annotators leave doubtful edges."""
    boundary = np.zeros(labels.shape, bool)
    boundary[1:] |= labels[1:] != labels[:-1]
    boundary[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    labels = labels.copy()
    labels[boundary & (rng.random(labels.shape) < fraction)] = VOID
    return labels


def render_street_scene(rng: np.random.Generator, height: int = 96, width: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """One procedural street scene.

    Args:
        rng: the scene's random generator (same state, same scene).
        height, width: image size in pixels.

    Returns:
        ``(image uint8 (H, W, 3) RGB, labels uint8 (H, W))`` with CamVid labels 0..10 and void 11.
    """
    h, w = height, width
    canvas = _Canvas(h, w, rng)
    u = rng.uniform
    horizon = h * u(0.38, 0.5)
    vx = w * u(0.35, 0.65)  # vanishing point

    # Sky: clear blue or overcast, brighter near the horizon.
    sky_color = (135, 180, 232) if rng.random() < 0.6 else (198, 204, 212)
    canvas.rect(canvas.part(SKY, sky_color, gradient=-8, fine=0.3), 0, 0, w, h)

    # Ground lines from the vanishing point: road edges and the outer edges of the sidewalks.
    road_left, road_right = w * u(-0.25, 0.2), w * u(0.8, 1.25)
    walk_left, walk_right = road_left - w * u(0.3, 0.6), road_right + w * u(0.3, 0.6)

    def ground_x(bottom_x: float, y: float) -> float:  # x on the line from the vanishing point to (bottom_x, h)
        return vx + (bottom_x - vx) * (y - horizon) / (h - horizon)

    def ground_y(bottom_x: float, x: float) -> float:  # y where that line passes x (clipped to the image)
        t = (x - vx) / (bottom_x - vx) if bottom_x != vx else 1.0
        return float(np.clip(horizon + t * (h - horizon), horizon, h))

    # Buildings on both sides, standing on the sidewalks' outer edges, with window grids.
    for side, outer in ((-1, walk_left), (1, walk_right)):
        x = 0.0 if side < 0 else w
        limit = vx - w * u(0.04, 0.1) if side < 0 else vx + w * u(0.04, 0.1)
        while (x < limit) if side < 0 else (x > limit):
            span = w * u(0.12, 0.3)
            x_next = min(x + span, limit) if side < 0 else max(x - span, limit)
            near, far = (x, x_next) if side < 0 else (x, x_next)
            top = u(0.0, 0.8) * horizon
            top_far = top + (horizon - top) * 0.25 * abs(far - near) / w
            part = canvas.part(BUILDING, _BUILDING_COLORS[rng.integers(len(_BUILDING_COLORS))], jitter=15,
                               grid=3, fine=0.8)
            canvas.poly(part, [(near, top), (far, top_far), (far, ground_y(outer, far) + 1),
                               (near, ground_y(outer, near) + 1)])
            window = canvas.part(BUILDING, (45, 55, 75) if rng.random() < 0.7 else (200, 215, 225), jitter=10,
                                 fine=0.5)
            lo, hi = sorted((near, far))
            bottom = min(ground_y(outer, near), ground_y(outer, far)) - 4
            for wy in np.arange(top + 4, bottom - 3, u(7, 10)):
                for wx in np.arange(lo + 3, hi - 4, u(6, 9)):
                    canvas.rect(window, wx, wy, wx + 2, wy + 3)
            x = x_next

    # Sidewalks (tiled), then the road (fine grain) with dashed centre marks.
    sidewalk = canvas.part(SIDEWALK, (172, 166, 152), jitter=12, grid=4, fine=0.6)
    canvas.poly(sidewalk, [(vx, horizon), (walk_left, h), (walk_right, h)])
    road = canvas.part(ROAD, (88, 86, 92), jitter=6, fine=1.2)
    canvas.poly(road, [(vx - 1, horizon), (vx + 1, horizon), (road_right, h), (road_left, h)])
    marks = canvas.part(ROAD, (225, 225, 215), jitter=6)
    centre = (road_left + road_right) / 2
    for y0 in np.arange(horizon + 4, h, u(8, 12)):
        y1 = min(y0 + (y0 - horizon) * 0.35 + 1, h)
        half0, half1 = 0.2 + (y0 - horizon) * 0.02, 0.2 + (y1 - horizon) * 0.02
        canvas.poly(marks, [(ground_x(centre, y0) - half0, y0), (ground_x(centre, y0) + half0, y0),
                            (ground_x(centre, y1) + half1, y1), (ground_x(centre, y1) - half1, y1)])

    def depth(y: float) -> float:  # apparent size at ground row y, relative to the bottom row
        return max((y - horizon) / (h - horizon), 0.05)

    def on_sidewalk(side: int) -> tuple[float, float]:
        y = u(horizon + 0.2 * (h - horizon), h)
        inner, outer = (road_left, walk_left) if side < 0 else (road_right, walk_right)
        return ground_x(inner + (outer - inner) * u(0.2, 0.8), y), y

    # Fence along a sidewalk's outer edge: vertical slats.
    if rng.random() < 0.7:
        side = -1 if rng.random() < 0.5 else 1
        outer = walk_left if side < 0 else walk_right
        t0, t1 = sorted(u(0.1, 1.0, 2))
        ya, yb = horizon + t0 * (h - horizon), horizon + t1 * (h - horizon)
        xa, xb = ground_x(outer, ya), ground_x(outer, yb)
        ha, hb = 0.18 * h * depth(ya) + 1, 0.18 * h * depth(yb) + 1
        fence = canvas.part(FENCE, (125, 100, 70) if rng.random() < 0.6 else (105, 110, 112), stripes=12, fine=0.5)
        canvas.poly(fence, [(xa, ya - ha), (xb, yb - hb), (xb, yb), (xa, ya)])

    # Trees on the sidewalks: trunk and a leafy crown of overlapping blobs.
    for _ in range(rng.integers(0, 4)):
        x, y = on_sidewalk(-1 if rng.random() < 0.5 else 1)
        scale = depth(y) * h
        trunk = canvas.part(TREE, (95, 70, 45), fine=1.0)
        canvas.rect(trunk, x - 0.02 * scale, y - 0.55 * scale, x + 0.02 * scale, y)
        crown = canvas.part(TREE, (60, 115, 45), jitter=15, leaves=14, fine=1.0)
        for _ in range(5):
            canvas.circle(crown, x + u(-0.2, 0.2) * scale, y - 0.6 * scale + u(-0.15, 0.1) * scale,
                          u(0.12, 0.22) * scale)

    # Poles with signs.
    for _ in range(rng.integers(1, 4)):
        x, y = on_sidewalk(-1 if rng.random() < 0.5 else 1)
        scale = depth(y) * h
        pole = canvas.part(POLE, (100, 100, 104), jitter=10, fine=0.5)
        top = y - 0.9 * scale
        canvas.rect(pole, x, top, x + max(1.0, 0.02 * scale), y)
        if rng.random() < 0.7:
            sign = canvas.part(SIGN, _SIGN_COLORS[rng.integers(len(_SIGN_COLORS))], jitter=10)
            size = max(2.0, 0.08 * scale)
            if rng.random() < 0.5:
                canvas.circle(sign, x, top + size, size)
            else:
                canvas.rect(sign, x - size, top, x + size, top + 1.5 * size)

    # Road users, far to near so nearer ones are drawn on top.
    users: list[tuple[float, Callable[[], None]]] = []
    for _ in range(rng.integers(1, 5)):
        y = u(horizon + 0.1 * (h - horizon), h + 0.1 * h)
        x = ground_x(u(road_left, road_right), min(y, h))
        users.append((y, lambda x=x, y=y: _draw_car(canvas, x, y, depth(y) * h)))
    for _ in range(rng.integers(0, 4)):
        x, y = on_sidewalk(-1 if rng.random() < 0.5 else 1)
        users.append((y, lambda x=x, y=y: _draw_person(canvas, PEDESTRIAN, x, y, depth(y) * h)))
    for _ in range(rng.integers(0, 3)):
        y = u(horizon + 0.2 * (h - horizon), h)
        edge = road_left if rng.random() < 0.5 else road_right
        x = ground_x(centre + (edge - centre) * u(0.6, 0.9), y)
        users.append((y, lambda x=x, y=y: _draw_bicyclist(canvas, x, y, depth(y) * h)))
    for _, draw in sorted(users, key=lambda item: item[0]):
        draw()
    return canvas.render()


def _draw_car(canvas: _Canvas, x: float, y: float, scale: float) -> None:
    """A car seen from behind or in front: body, cabin, windows, wheels (all labelled car)."""
    rng = canvas.rng
    width, height = scale * rng.uniform(0.45, 0.6), scale * rng.uniform(0.28, 0.35)
    body = canvas.part(CAR, _CAR_COLORS[rng.integers(len(_CAR_COLORS))], jitter=12, fine=0.4, gradient=4)
    canvas.rect(body, x - width / 2, y - 0.6 * height, x + width / 2, y - 0.1 * height)
    canvas.poly(body, [(x - 0.4 * width, y - 0.6 * height), (x + 0.4 * width, y - 0.6 * height),
                       (x + 0.3 * width, y - height), (x - 0.3 * width, y - height)])
    glass = canvas.part(CAR, (40, 50, 62), jitter=6, gradient=8)
    canvas.poly(glass, [(x - 0.33 * width, y - 0.63 * height), (x + 0.33 * width, y - 0.63 * height),
                        (x + 0.25 * width, y - 0.93 * height), (x - 0.25 * width, y - 0.93 * height)])
    wheel = canvas.part(CAR, (22, 22, 24), jitter=4)
    for wx in (x - 0.35 * width, x + 0.35 * width):
        canvas.rect(wheel, wx - 0.09 * width, y - 0.15 * height, wx + 0.09 * width, y)
    lights = canvas.part(CAR, (220, 60, 40) if rng.random() < 0.5 else (235, 235, 200), jitter=8)
    for lx in (x - 0.42 * width, x + 0.34 * width):
        canvas.rect(lights, lx, y - 0.5 * height, lx + 0.08 * width, y - 0.4 * height)


def _draw_person(canvas: _Canvas, cls: int, x: float, y: float, scale: float) -> None:
    """A standing person: legs, torso, arms and head; ``cls`` is pedestrian or bicyclist."""
    rng = canvas.rng
    tall = scale * rng.uniform(0.55, 0.7)
    clothes = canvas.part(cls, _CLOTHES_COLORS[rng.integers(len(_CLOTHES_COLORS))], jitter=15, fine=0.6)
    trousers = canvas.part(cls, _CLOTHES_COLORS[rng.integers(len(_CLOTHES_COLORS))], jitter=15, fine=0.6)
    skin = canvas.part(cls, _SKIN_COLORS[rng.integers(len(_SKIN_COLORS))], jitter=8)
    limb = max(1, int(round(0.05 * tall)))
    canvas.line(trousers, x - 0.06 * tall, y, x - 0.02 * tall, y - 0.45 * tall, limb)
    canvas.line(trousers, x + 0.06 * tall, y, x + 0.02 * tall, y - 0.45 * tall, limb)
    canvas.rect(clothes, x - 0.09 * tall, y - 0.82 * tall, x + 0.09 * tall, y - 0.43 * tall)
    canvas.line(clothes, x - 0.1 * tall, y - 0.8 * tall, x - 0.14 * tall, y - 0.5 * tall, limb)
    canvas.line(clothes, x + 0.1 * tall, y - 0.8 * tall, x + 0.14 * tall, y - 0.5 * tall, limb)
    canvas.circle(skin, x, y - 0.9 * tall, 0.08 * tall)


def _draw_bicyclist(canvas: _Canvas, x: float, y: float, scale: float) -> None:
    """A rider on a bicycle seen from the side: two wheels, frame, rider (all labelled bicyclist)."""
    rng = canvas.rng
    radius = scale * rng.uniform(0.1, 0.13)
    metal = canvas.part(BICYCLIST, (30, 30, 34) if rng.random() < 0.6 else (170, 40, 40), jitter=8)
    ring = max(1, int(round(radius * 0.25)))
    for wx in (x - 1.2 * radius, x + 1.2 * radius):
        canvas.circle(metal, wx, y - radius, radius, thickness=ring)
    canvas.line(metal, x - 1.2 * radius, y - radius, x, y - 2 * radius, ring)
    canvas.line(metal, x + 1.2 * radius, y - radius, x, y - 2 * radius, ring)
    _draw_person(canvas, BICYCLIST, x, y - 1.4 * radius, scale * 0.8)


def _clear(directory: Path) -> None:
    for sub in _SPLIT_DIRS:
        folder = directory / sub
        if folder.is_dir():
            for path in folder.glob("street_*.png"):
                path.unlink()


def make_demo_camvid(directory: str | os.PathLike, num_train: int = 48, num_val: int = 12, num_test: int = 12,
                     height: int = 96, width: int = 128, seed: int = 0) -> Path:
    """Write a procedural street-scene dataset in the CamVid (SegNet) layout.

    ``directory/{train,val,test}/street_NNNN.png`` (RGB) with ``{split}annot/`` label PNGs (0..10, void 11).
    Deterministic for a seed; a second call with the same arguments returns at once (a marker file written last
    records a complete dataset).

    Args:
        directory: output folder (created).
        num_train, num_val, num_test: images per split.
        height, width: image size.
        seed: the dataset's seed.

    Returns:
        ``directory`` as a Path, ready for ``CamVid(directory, split)``.
    """
    directory = Path(directory)
    settings = {"generator": "demo_streets/1", "num_train": num_train, "num_val": num_val, "num_test": num_test,
                "height": height, "width": width, "seed": seed}
    marker = directory / MARKER
    if is_complete(marker, settings):
        return directory
    _clear(directory)
    for split_id, (split, count) in enumerate((("train", num_train), ("val", num_val), ("test", num_test))):
        (directory / split).mkdir(parents=True, exist_ok=True)
        (directory / f"{split}annot").mkdir(parents=True, exist_ok=True)
        for index in range(count):
            rng = np.random.default_rng([seed, split_id, index])
            image, labels = render_street_scene(rng, height, width)
            name = f"street_{index:04d}.png"
            cv2.imwrite(str(directory / split / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            cv2.imwrite(str(directory / f"{split}annot" / name), labels)
    mark_complete(marker, settings)
    return directory
