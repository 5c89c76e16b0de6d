"""Synthetic frontal (PA) chest-radiograph phantoms for the no-network demo.

The project cannot ship third-party radiographs, so `data.source: synthetic` generates images that look like
NIH ChestX-ray14 PNGs: NIH-style names `{patient:08d}_{follow_up:03d}.png`, 8-bit greyscale, plus a metadata
CSV with the `Data_Entry_2017` columns.

Each image is rendered analytically from a projected "attenuation" map in normalised coordinates
(x, y in [-1, 1], x to the viewer's right, y downwards), so the same phantom looks the same at any size and
needs no per-pixel Python loops:

* body outline with neck and shoulders (tissue thickness of an elliptic cylinder), abdomen below the diaphragm;
* two lung fields (air replaces tissue, deepest low and lateral), cut by the hemidiaphragm domes (the patient's
  right dome, on the viewer's left, a little higher) with a gastric air bubble under the left dome;
* mediastinum, trachea, aortic knob and the heart shadow, which bulges to the viewer's right (patient's left, as
  displayed on a PA film);
* spine with vertebral bodies and disc spaces, posterior and anterior ribs, clavicles, humeral heads;
* breast shadows for female patients; smooth low-frequency soft-tissue texture and fine lung markings (vessels
  radiating from the hila).

Anatomy, sex and age are drawn per patient from `SeedSequence([seed, patient, 0])`; each follow-up adds small
changes from `SeedSequence([seed, patient, 1, follow_up])` (shift, rotation, magnification, inspiration depth,
exposure) and, for some patients, a small nodule that appears from a drawn follow-up onwards (those images are
labelled "Nodule" in `Finding Labels`, all others "No Finding"). The number of follow-ups per patient comes from
`SeedSequence([seed, patient, 2])`. Same seed and arguments, byte-identical PNGs.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage
from tqdm import tqdm

from .atomic import write_bytes, write_text
from .errors import CxrError
from .naming import image_name

METADATA_NAME = "Data_Entry_synthetic.csv"
IMAGES_DIR = "images"
# Data_Entry_2017 column names; NIH splits "OriginalImage[Width,Height]" into two CSV columns.
METADATA_COLUMNS = [
    "Image Index",
    "Finding Labels",
    "Follow-up #",
    "Patient ID",
    "Patient Age",
    "Patient Gender",
    "View Position",
    "OriginalImage[Width",
    "Height]",
]

_STREAM_ANATOMY, _STREAM_FOLLOW_UP, _STREAM_COUNT = 0, 1, 2
_MAX_SIZE = 4096


# --------------------------------------------------------------------------------------------- validation
def _check_int(name: str, value, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise CxrError(f"{name}: expected an integer, got {value!r}")
    value = int(value)
    if value < minimum:
        raise CxrError(f"{name}: must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise CxrError(f"{name}: must be <= {maximum}, got {value}")
    return value


# ------------------------------------------------------------------------------------------- random draws
_TEX = 192            # texture grids cover the anatomical square [-_TEX_HALF, _TEX_HALF]^2 at _TEX x _TEX
_TEX_HALF = 1.2       # a margin beyond [-1, 1] so shifted / rotated follow-ups stay inside


@dataclass(frozen=True)
class _Anatomy:
    gender: str
    age: int
    visit_months: int          # months between follow-ups (for the age column)
    body_w: float              # body half-width at the chest
    shoulder_w: float          # half-width across the shoulders
    shoulder_y: float
    neck_w: float
    lung_top: tuple[float, float]      # apex height (viewer's left lung, viewer's right lung)
    lung_out: tuple[float, float]      # lateral lung edge
    lung_in: tuple[float, float]       # medial lung edge (mediastinum border)
    dome_y: tuple[float, float]        # hemidiaphragm dome height
    dome_x: tuple[float, float]
    dome_curv: tuple[float, float]
    right_heart: tuple[float, float, float]   # right atrial border: bulge, level of widest point, height
    left_heart: tuple[float, float, float, float]  # left ventricle: bulge, widest level, height above, below
    knob: float                # aortic knob bulge
    heart_density: float
    mediastinum_x: float
    spine_w: float
    vertebra_period: float
    vertebra_phase: float
    rib_top: float
    rib_spacing: float
    rib_growth: float
    rib_arc: float
    rib_halfwidth: float
    rib_density: float
    clavicle_y: float
    clavicle_slope: float
    bone_density: float
    lung_air: float
    soft_density: float
    response: float            # film response steepness
    gamma: float
    nodule: tuple[float, float, float, int] | None   # x, y, radius, first follow-up it shows on
    textures: np.ndarray       # (2, _TEX, _TEX): smooth soft-tissue variation (unit std); lung markings
                               # (vessels radiating from the hila, hilar shadows, parenchyma)


@dataclass(frozen=True)
class _Visit:
    shift: tuple[float, float]
    angle: float               # radians
    scale: float
    inspiration: float         # diaphragm shift (positive: deeper breath, domes lower)
    exposure: float
    gamma: float


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def _textures(rng: np.random.Generator) -> np.ndarray:
    """Per-patient texture grids in anatomical coordinates (sampled per image, moving with the anatomy)."""
    coarse = ndimage.gaussian_filter(rng.standard_normal((12, 12)), 0.7, mode="wrap")
    soft = ndimage.zoom(coarse, _TEX / 12, order=1, mode="grid-wrap", grid_mode=True)
    soft = (soft - soft.mean()) / (soft.std() + 1e-9)

    g = (np.arange(_TEX) + 0.5) * (2 * _TEX_HALF / _TEX) - _TEX_HALF
    gx, gy = np.meshgrid(g, g)
    n_theta, n_r = 200, 24
    polar = ndimage.gaussian_filter(rng.standard_normal((2, n_theta, n_r)), (0, 1.2, 1.6), mode="wrap")
    polar /= polar.std() + 1e-9
    lung = np.zeros((_TEX, _TEX))
    for k, side in enumerate((-1.0, 1.0)):
        hx, hy = side * 0.20, -0.06
        half = (gx * side) > 0
        dist = np.hypot(gx[half] - hx, gy[half] - hy)
        theta = np.arctan2(gy[half] - hy, side * (gx[half] - hx))
        rows = (theta + np.pi) * (n_theta / (2 * np.pi))
        ves = ndimage.map_coordinates(polar[k], [rows, dist * 28.0], order=1, mode="grid-wrap")
        lung[half] = (np.clip(ves - 0.2, 0.0, None) * 1.3 * np.exp(-dist / 0.35)
                      + 1.2 * np.exp(-(dist / 0.10) ** 2))       # hilar shadow
    fine = ndimage.gaussian_filter(rng.standard_normal((_TEX, _TEX)), 0.8, mode="wrap")
    lung += 0.22 * np.clip(fine / (fine.std() + 1e-9), -1.5, None)
    return np.stack([soft, lung]).astype(np.float32)


def _anatomy(patient: int, seed: int) -> _Anatomy:
    rng = _rng(seed, patient, _STREAM_ANATOMY)

    def u(low: float, high: float) -> float:  # Python floats keep the float32 arrays float32
        return float(rng.uniform(low, high))

    gender = "F" if rng.random() < 0.45 else "M"
    female = gender == "F"
    age = int(rng.integers(18, 86))
    body_w = u(0.88, 0.96) if female else u(0.92, 1.02)
    lung_out = u(0.66, 0.80)
    dome_r = u(0.18, 0.40)

    nodule = None
    if rng.random() < 0.35:
        side = -1.0 if rng.random() < 0.5 else 1.0
        nodule = (side * u(0.34, 0.50), u(-0.30, -0.10), u(0.025, 0.045), int(rng.integers(1, 4)))
    textures = _textures(rng)

    return _Anatomy(
        gender=gender,
        age=age,
        visit_months=int(rng.integers(1, 19)),
        body_w=body_w,
        shoulder_w=body_w + u(0.10, 0.18),
        shoulder_y=u(-0.88, -0.78),
        neck_w=u(0.19, 0.25),
        lung_top=(u(-0.80, -0.66), u(-0.80, -0.66)),
        lung_out=(lung_out + u(-0.02, 0.02), lung_out + u(-0.02, 0.02)),
        lung_in=(u(0.07, 0.10), u(0.09, 0.13)),
        dome_y=(dome_r, dome_r + u(0.03, 0.09)),
        dome_x=(u(0.30, 0.42), u(0.32, 0.45)),
        dome_curv=(u(0.7, 1.1), u(0.7, 1.1)),
        right_heart=(u(0.07, 0.13), dome_r - u(0.05, 0.12), u(0.30, 0.40)),
        left_heart=(u(0.28, 0.38), dome_r - u(0.10, 0.18), u(0.36, 0.46), u(0.28, 0.40)),
        knob=u(0.04, 0.08),
        heart_density=u(0.04, 0.08),
        mediastinum_x=u(-0.02, 0.02),
        spine_w=u(0.060, 0.080),
        vertebra_period=u(0.105, 0.125),
        vertebra_phase=u(0.0, 1.0),
        rib_top=u(-0.80, -0.74),
        rib_spacing=u(0.105, 0.12),
        rib_growth=u(0.12, 0.25),
        rib_arc=u(1.15, 1.5),
        rib_halfwidth=u(0.026, 0.032),
        rib_density=u(0.10, 0.15),
        clavicle_y=u(-0.70, -0.62),
        clavicle_slope=u(0.15, 0.30),
        bone_density=u(0.85, 1.15),
        lung_air=u(0.72, 0.92),
        soft_density=u(0.90, 1.10),
        response=u(1.0, 1.45),
        gamma=u(1.0, 1.2),
        nodule=nodule,
        textures=textures,
    )


def _visit(patient: int, follow_up: int, seed: int) -> _Visit:
    if follow_up == 0:  # the baseline image is the reference pose
        return _Visit((0.0, 0.0), 0.0, 1.0, 0.0, 1.0, 1.0)
    rng = _rng(seed, patient, _STREAM_FOLLOW_UP, follow_up)

    def u(low: float, high: float) -> float:
        return float(rng.uniform(low, high))

    return _Visit(
        shift=(u(-0.015, 0.015), u(-0.015, 0.015)),
        angle=float(np.deg2rad(u(-1.2, 1.2))),
        scale=u(0.985, 1.015),
        inspiration=u(-0.03, 0.03),
        exposure=u(0.94, 1.06),
        gamma=u(0.95, 1.05),
    )


def follow_up_count(patient: int, max_follow_ups: int, seed: int) -> int:
    """How many images (follow-ups 0..n-1) a synthetic patient has, drawn from 1..max_follow_ups."""
    return int(_rng(seed, patient, _STREAM_COUNT).integers(1, max_follow_ups + 1))


# ---------------------------------------------------------------------------------------------- rendering
def _sig(z: np.ndarray) -> np.ndarray:
    """Smooth step from 0 to 1 over z in [-1.5, 1.5] (z in units of the edge width; cubic, cheaper than tanh)."""
    t = z * (1.0 / 3.0)
    t += 0.5
    np.clip(t, 0.0, 1.0, out=t)
    out = t * t
    t *= -2.0
    t += 3.0
    out *= t
    return out


def _tube(d: np.ndarray, half: float) -> np.ndarray:
    """Projected thickness of a cylinder of radius `half` at distance d from its axis (0..1)."""
    q = d / half
    q *= q
    np.subtract(1.0, q, out=q)
    np.clip(q, 0.0, 1.0, out=q)
    return np.sqrt(q, out=q)


def _bulge(z: np.ndarray) -> np.ndarray:
    """Heart border profile: rises smoothly above its widest point (z < 0), rounds off below it (z > 0)."""
    zc = np.clip(z, -1.0, 1.0)
    return np.where(zc < 0, 0.5 + 0.5 * np.cos(np.pi * zc), np.sqrt(1.0 - zc * zc))


def _bilinear(grids: np.ndarray, x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    """Sample (n, _TEX, _TEX) texture grids at anatomical coordinates; returns n arrays shaped like x."""
    scale = _TEX / (2.0 * _TEX_HALF)
    col = np.clip((x + _TEX_HALF) * scale - 0.5, 0.0, _TEX - 1.001)
    row = np.clip((y + _TEX_HALF) * scale - 0.5, 0.0, _TEX - 1.001)
    c0, r0 = np.floor(col), np.floor(row)
    fc, fr = col - c0, row - r0
    i00 = (r0 * _TEX + c0).astype(np.intp)
    out = []
    for grid in grids.reshape(len(grids), -1):
        top = grid.take(i00) * (1.0 - fc) + grid.take(i00 + 1) * fc
        bottom = grid.take(i00 + _TEX) * (1.0 - fc) + grid.take(i00 + _TEX + 1) * fc
        out.append(top * (1.0 - fr) + bottom * fr)
    return out


def _render(a: _Anatomy, v: _Visit, follow_up: int, size: int) -> np.ndarray:
    f32 = np.float32
    h = 2.0 / size
    c = (np.arange(size, dtype=f32) + f32(0.5)) * f32(h) - f32(1.0)
    xi, yi = np.meshgrid(c, c)
    # Image -> anatomy coordinates: undo the follow-up's shift, rotation and magnification.
    ca, sa = float(np.cos(v.angle)), float(np.sin(v.angle))
    xs, ys = xi - v.shift[0], yi - v.shift[1]
    x = (ca * xs + sa * ys) / v.scale
    y = (-sa * xs + ca * ys) / v.scale
    ax = np.abs(x)
    e = max(0.012, 1.5 / size)  # edge width: at least about a pixel, so edges do not alias

    def box(x0: float, x1: float, y0: float, y1: float) -> tuple[slice, slice]:
        """Pixels that cover the anatomical box [x0, x1] x [y0, y1] (local structures are computed there only)."""
        corners = np.array([[x0, y0], [x0, y1], [x1, y0], [x1, y1]])
        cx = v.shift[0] + v.scale * (ca * corners[:, 0] - sa * corners[:, 1])
        cy = v.shift[1] + v.scale * (sa * corners[:, 0] + ca * corners[:, 1])
        cols = np.clip([int(np.floor((cx.min() + 1) / h)) - 1, int(np.ceil((cx.max() + 1) / h)) + 1], 0, size)
        rows = np.clip([int(np.floor((cy.min() + 1) / h)) - 1, int(np.ceil((cy.max() + 1) / h)) + 1], 0, size)
        return slice(rows[0], rows[1]), slice(cols[0], cols[1])

    # Body: neck widening into the shoulders, chest slightly wider towards the abdomen.
    w = (a.neck_w + (a.shoulder_w - a.neck_w) * _sig((y - a.shoulder_y) / 0.06)
         - (a.shoulder_w - a.body_w) * _sig((y - a.shoulder_y - 0.30) / 0.12)
         + 0.05 * np.clip(y, 0.0, None))
    body = np.sqrt(np.clip(1.0 - (x / w) ** 2, 0.0, 1.0))
    body *= 0.85 + 0.15 * _sig((y - a.shoulder_y + 0.05) / 0.08)   # neck is thinner front-to-back
    (soft_texture,) = _bilinear(a.textures[:1], x, y)
    atten = a.soft_density * body * (1.0 + 0.035 * soft_texture)
    for side in (-1.0, 1.0):  # breast shadows (female), pectoral soft tissue (male)
        if a.gender == "F":
            bx, by, rx, ry, amount = side * 0.46, 0.42, 0.34, 0.24, 0.14
        else:
            bx, by, rx, ry, amount = side * 0.50, -0.45, 0.30, 0.20, 0.05
        b = box(bx - rx, bx + rx, by - ry, by + ry)
        atten[b] += amount * _tube(np.sqrt(((x[b] - bx) / rx) ** 2 + ((y[b] - by) / ry) ** 2), 1.0) * body[b]

    # Mediastinum and heart: the lungs' medial borders bulge with the right atrium (viewer's left), the aortic
    # knob and the left ventricle (viewer's right); between them the heart adds a little density.
    ra_w, ra_y, ra_h = a.right_heart
    lv_w, lv_y, lv_up, lv_down = a.left_heart
    z_ra = np.minimum((y - ra_y) / ra_h, 0.0)
    z_lv = (y - lv_y) / np.where(y < lv_y, lv_up, lv_down)
    border = (a.lung_in[0] + ra_w * _bulge(z_ra),
              a.lung_in[1] + lv_w * _bulge(z_lv) + a.knob * np.exp(-((y + 0.33) / 0.06) ** 2))
    tm = x - a.mediastinum_x
    atten += a.heart_density * (_sig((border[1] - tm) / (e * 3)) * _sig((border[0] + tm) / (e * 3))
                                * _sig((y - lv_y + lv_up * 0.8) / 0.08))

    # Lungs, cut by the diaphragm domes; air replaces tissue. Abdomen below the domes.
    lungs = np.zeros_like(x)
    below = np.zeros_like(x)
    for k, side in enumerate((-1.0, 1.0)):
        top, out_ = a.lung_top[k], a.lung_out[k]
        dome, dome_x, curv = a.dome_y[k] + v.inspiration, a.dome_x[k], a.dome_curv[k]
        below += (side * tm > 0) * _sig((y - dome - curv * (side * tm - dome_x) ** 2) / 0.08)
        t0, t1 = a.lung_in[k] - 0.05, out_ + 0.05
        bottom = dome + curv * max(dome_x - t0, t1 - dome_x) ** 2 + 0.05
        b = box(*sorted((a.mediastinum_x + side * t0, a.mediastinum_x + side * t1)), top - 0.05, bottom)
        t, yb, in_ = side * tm[b], y[b], border[k][b]
        r = np.clip((yb - top) / (dome + 0.20 - top), 0.0, 1.0)
        outer = in_ + (out_ - in_) * np.sqrt(np.clip(1.0 - (1.0 - r) ** 2.4, 0.0, 1.0))
        lung = (_sig((t - in_) / e) * _sig((outer - t) / e) * _sig((yb - top) / (e * 2))
                * _sig((dome + curv * (t - dome_x) ** 2 - yb) / e))
        mid, half = 0.5 * (a.lung_in[k] + outer), np.maximum(0.5 * (outer - a.lung_in[k]), 1e-3)
        across = _tube(t - mid, half) ** 0.6
        (markings,) = _bilinear(a.textures[1:], x[b], yb)
        lungs[b] += lung
        atten[b] += lung * (0.10 * markings - a.lung_air * (0.25 + 0.75 * across) * (0.65 + 0.35 * r))
    atten += 0.10 * np.minimum(below, 1.0) * body

    # Gastric air bubble under the left hemidiaphragm (viewer's right).
    dome, gx, gy = a.dome_y[1] + v.inspiration, a.mediastinum_x + a.dome_x[1] + 0.05, 0.0
    gy = dome + 0.13
    b = box(gx - 0.17, gx + 0.17, gy - 0.10, gy + 0.10)
    y_d = dome + a.dome_curv[1] * (x[b] - a.mediastinum_x - a.dome_x[1]) ** 2
    atten[b] -= 0.12 * (_tube(np.sqrt(((x[b] - gx) / 0.16) ** 2 + ((y[b] - gy) / 0.09) ** 2), 1.0)
                        * _sig((y[b] - y_d - 0.02) / e))

    # Nodule (some patients, from a drawn follow-up on).
    if a.nodule is not None and follow_up >= a.nodule[3]:
        nx, ny, nr, onset = a.nodule
        nr *= 1.0 + 0.15 * (follow_up - onset)
        b = box(nx - nr, nx + nr, ny - nr, ny + nr)
        atten[b] += 0.35 * _tube(np.sqrt((x[b] - nx) ** 2 + (y[b] - ny) ** 2), nr) * lungs[b]

    # Trachea.
    sx = a.mediastinum_x
    b = box(sx - 0.04, sx + 0.04, -1.3, -0.25)
    atten[b] -= 0.16 * _tube(x[b] - sx, 0.035) * _sig((y[b] + 0.98) / 0.05) * _sig((-0.30 - y[b]) / 0.03)

    # Bones (none outside the body).
    bones = np.zeros_like(x)
    reach = max(a.lung_out) + 0.06 + 0.06 + 0.05                 # beyond it the rib cage fades to zero
    b = box(-reach, reach, a.rib_top - 0.2, 1.3)
    bones[b] = a.rib_density * _ribs(a, x[b], y[b], ax[b])
    b = box(sx - 0.12, sx + 0.12, -1.3, 1.3)            # spine: vertebral bodies, disc spaces, pedicles
    xb, yb = x[b], y[b]
    spine_half = a.spine_w * (0.85 + 0.25 * (yb + 1) / 2)
    phase = ((yb + 1.0) / a.vertebra_period + a.vertebra_phase) % 1.0
    disc = np.exp(-((phase - 0.5) * (a.vertebra_period / 0.012)) ** 2)
    ped_y = (phase - 0.35) * a.vertebra_period
    pedicle = (_tube(np.sqrt((xb - sx - spine_half * 0.6) ** 2 + ped_y ** 2), 0.018)
               + _tube(np.sqrt((xb - sx + spine_half * 0.6) ** 2 + ped_y ** 2), 0.018))
    bones[b] += 0.16 * ((_tube(xb - sx, spine_half) * (1.0 - 0.45 * disc) + 0.5 * pedicle)
                        * _sig((yb + 0.98) / 0.05))
    b = box(-0.7, 0.7, a.clavicle_y - 0.25, a.clavicle_y + 0.08)   # clavicles
    cl_t = ax[b] - 0.07
    cl_y = a.clavicle_y - a.clavicle_slope * cl_t + 0.35 * cl_t ** 2 * (cl_t - 0.25)
    cl_d = (y[b] - cl_y) / np.sqrt(1.0 + a.clavicle_slope ** 2)
    bones[b] += 0.30 * _tube(cl_d, 0.030) * _sig(cl_t / e) * _sig((0.55 - cl_t) / 0.04)
    for side in (-1.0, 1.0):                                        # humeral heads
        hx, hy = side * (a.shoulder_w + 0.02), a.shoulder_y + 0.10
        b = box(hx - 0.16, hx + 0.16, hy - 0.16, hy + 0.16)
        bones[b] += 0.32 * _tube(np.sqrt((x[b] - hx) ** 2 + (y[b] - hy) ** 2), 0.16)
    b = box(-1.3, 1.3, a.shoulder_y, a.shoulder_y + 0.65)          # medial borders of the scapulae
    bones[b] += 0.08 * (_tube(ax[b] - (a.lung_out[0] - 0.05 + 0.25 * (y[b] - a.shoulder_y)), 0.03)
                        * _sig((y[b] - a.shoulder_y - 0.05) / 0.03) * _sig((a.shoulder_y + 0.55 - y[b]) / 0.05))
    atten += a.bone_density * bones * (body > 0)

    atten = np.clip(atten, 0.0, None)
    k = a.response * v.exposure
    img = (1.0 - np.exp(-k * atten)) / (1.0 - np.exp(-k * 1.5))
    img = np.clip(img, 0.0, 1.0) ** (a.gamma * v.gamma)
    return np.round(img * 255.0).astype(np.uint8)


def _ribs(a: _Anatomy, x: np.ndarray, y: np.ndarray, ax: np.ndarray) -> np.ndarray:
    """Posterior ribs (arcing out from the spine, down at the chest wall) and fainter anterior ribs
    (down and inwards from the chest wall), each family the level sets of one warped coordinate."""
    t = np.clip(ax - 0.06, 0.0, None)
    cage = _sig((max(a.lung_out) + 0.06 - t) / 0.03) * _sig((ax - 0.05) / 0.02)
    n_ribs = 9

    def bands(q: np.ndarray, slope: np.ndarray | float, half: float, top: float) -> np.ndarray:
        s = (q - top) / a.rib_spacing
        s = np.where(s > 0, s / (1.0 + a.rib_growth * s / n_ribs), s)   # spacing grows downwards
        frac = (s % 1.0) - 0.5
        d = frac * a.rib_spacing * (1.0 + a.rib_growth * np.clip(s, 0, None) / n_ribs) / np.sqrt(1 + slope ** 2)
        inside = _sig(s / 0.3) * _sig((n_ribs - s) / 0.3)
        return _tube(d, half) * inside

    f = -0.30 * t + a.rib_arc * t ** 2.2
    df = -0.30 + 2.2 * a.rib_arc * t ** 1.2
    posterior = bands(y - f, df, a.rib_halfwidth, a.rib_top)
    g = 0.45 * (0.75 - t)
    anterior = bands(y - g, 0.45, a.rib_halfwidth * 1.3, a.rib_top + 0.12) * _sig((t - 0.22) / 0.06)
    low = _sig((max(a.dome_y) + 0.12 - y) / 0.12)   # fainter over the upper abdomen
    return (posterior + 0.3 * anterior) * cage * (0.4 + 0.6 * low)


# -------------------------------------------------------------------------------------------- public API
def phantom(patient: int, follow_up: int, size: int, seed: int) -> np.ndarray:
    """One synthetic PA chest radiograph as a (size, size) uint8 array (0 black/air, 255 bright/bone)."""
    patient = _check_int("patient", patient, 1, 99_999_999)
    follow_up = _check_int("follow_up", follow_up, 0, 999)
    size = _check_int("size", size, 32, _MAX_SIZE)
    seed = _check_int("seed", seed, 0)
    return _render(_anatomy(patient, seed), _visit(patient, follow_up, seed), follow_up, size)


def png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image, mode="L").save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def metadata_row(patient: int, follow_up: int, size: int, seed: int) -> dict:
    """The Data_Entry-style metadata of one phantom (what generate_phantoms writes for it)."""
    patient = _check_int("patient", patient, 1, 99_999_999)
    follow_up = _check_int("follow_up", follow_up, 0, 999)
    return _metadata(_anatomy(patient, _check_int("seed", seed, 0)), patient, follow_up, size)


def _metadata(a: _Anatomy, patient: int, follow_up: int, size: int) -> dict:
    has_nodule = a.nodule is not None and follow_up >= a.nodule[3]
    return {
        "Image Index": image_name(patient, follow_up),
        "Finding Labels": "Nodule" if has_nodule else "No Finding",
        "Follow-up #": follow_up,
        "Patient ID": patient,
        "Patient Age": a.age + (follow_up * a.visit_months) // 12,
        "Patient Gender": a.gender,
        "View Position": "PA",
        "OriginalImage[Width": size,
        "Height]": size,
    }


def generate_phantoms(out_dir: str | os.PathLike, patients: int, max_follow_ups: int, size: int,
                      seed: int, progress: bool = True) -> pd.DataFrame:
    """Write `{out_dir}/images/{patient:08d}_{follow_up:03d}.png` and `{out_dir}/Data_Entry_synthetic.csv`.

    Everything is written into a temporary folder inside `out_dir` and renamed into place at the end (images
    first, then the CSV), so a reader never sees a half-written set. Returns the metadata table.
    """
    patients = _check_int("data.synthetic.patients", patients, 1, 99_999_999)
    max_follow_ups = _check_int("data.synthetic.max_follow_ups", max_follow_ups, 1, 1000)
    size = _check_int("data.synthetic.size", size, 32, _MAX_SIZE)
    seed = _check_int("seed", seed, 0)

    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CxrError(f"{out_dir}: cannot create output folder ({err.strerror})") from err
    staging = Path(tempfile.mkdtemp(prefix=".synthetic-", dir=out_dir))
    try:
        images = staging / IMAGES_DIR
        images.mkdir()
        rows = []
        for patient in tqdm(range(1, patients + 1), desc="phantoms", unit="patient", disable=not progress,
                            mininterval=1.0):
            anat = _anatomy(patient, seed)
            for follow_up in range(follow_up_count(patient, max_follow_ups, seed)):
                img = _render(anat, _visit(patient, follow_up, seed), follow_up, size)
                write_bytes(images / image_name(patient, follow_up), png_bytes(img))
                rows.append(_metadata(anat, patient, follow_up, size))
        table = pd.DataFrame(rows, columns=METADATA_COLUMNS)
        write_text(staging / METADATA_NAME, table.to_csv(index=False, lineterminator="\n"))

        final_images = out_dir / IMAGES_DIR
        if final_images.exists():
            old = Path(tempfile.mkdtemp(prefix=".synthetic-old-", dir=out_dir))
            os.replace(final_images, old / IMAGES_DIR)
            shutil.rmtree(old)
        os.replace(images, final_images)
        os.replace(staging / METADATA_NAME, out_dir / METADATA_NAME)
    except OSError as err:
        raise CxrError(f"{out_dir}: cannot write phantoms ({err})") from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return table
