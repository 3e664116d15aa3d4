"""Pathfinder's generator: seeded numpy images of dashed paths and two dots.

An image holds two main paths and `num_distractors` shorter ones. A path is
a random walk of `contour_length` steps of length dash + gap (2 + 1 px at
32x32, scaled with the image), each turning by at most `max_turn` from the
last, drawn as its dash (the first 2/3 of the step) and a gap. Dots (discs of
radius 1.5 px at 32x32) sit on the start of main path 1 and either its end
(positive) or the start of main path 2 (negative). Path 2 starts exactly as
far from path 1's start as path 1's end is, so the distance between the dots
carries no information about the label; both dots are path ends in both
classes. Geometry is drawn without the label (markers' places are reserved on
all three candidate ends), then each split's labels are an exact 50/50
permutation.

Guarantees, checked by tests/test_data_pathfinder.py on the rendered pixels:
every drawn pixel of one path is at Chebyshev distance >= R + 1 from every
drawn pixel of any other path or dot, where R = round(gap) (1 at 32x32), and
the dashes of one path are within distance R of each other. So a flood fill
over nonzero pixels that jumps at most R pixels joins the dots of every
positive and never those of a negative. This is enforced while drawing: each
accepted path is marked on a 2x supersampled grid, dilated by the clearance
(a square of half-width 2R + 2 + 2e super-pixels, e = line thickening), and
later paths must avoid the dilated mask; each step tries `_CANDIDATES`
turning angles at once and takes the first that fits, a path that cannot
grow is redrawn (`_PATH_TRIES` times), and an image that still fails is
dropped and replaced. Steps also keep >= one step length from their own
path's older vertices, so paths do not loop over themselves.

Same as Linsley et al.'s generator: contour length counts dash segments
("paddles"; 6/9/14 are its easy/intermediate/hard settings, LRA's folders
curv_baseline / curv_contour_length_9 / curv_contour_length_14), dash 2 px
and gap 1 px at 32x32 (paddle_length=2, paddle_margin=1), 2x antialiasing
(antialias_scale=2), line width 0.5 px (paddle_thickness=0.5), dot radius
1.5 (marker_radius=1.5), distractors of contour_length // 3 dashes (its
distractor_length), paths that do not overlap, balanced labels.

Different, on purpose or for simplicity:
  * 2 distractors by default, not its 20 // distractor_length = 5: with the
    separation above, 5 rarely fit in 32x32 beside two 14-dash paths.
  * Paths are polylines of straight dashes rasterised on the 2x grid and
    box-filtered, not rotated paddle sprites; dashes are plain white (no
    contrast jitter).
  * Turning: each step turns by an angle in [-max_turn, max_turn], not its
    "continuity" parameter; the step is the first of `_CANDIDATES` uniform
    draws that fits, preferring one with free room up to `_LOOKAHEAD` steps
    ahead (this steers paths away from walls and other paths, which most
    random walks would otherwise run into).
  * The separation rule (which makes the label checkable from pixels) and
    the dot-distance matching are ours; its marker "seed distance" rule is
    not reproduced.
So accuracies on this data are not LRA's: use `source="original"` to compare
with LRA Table 1.

Determinism. A split is drawn from its own stream,
`np.random.default_rng([seed, split index, chunk index])`, in chunks of
`_CHUNK_PIXELS` pixels (1024 images at 32x32), so its content depends only
on (seed, split, its size, the geometry fields). Draws are
Generator.random() floats plus one `permutation` per split (its labels).
10k 32x32 images (contour length 14) take ~18 s of CPU time on one core;
128x128 images ~20 ms each.
"""

from __future__ import annotations

import math

import numpy as np

# generate_split's geometry arguments (the task config fields it reads).
GEOMETRY_KEYS = ("image_size", "contour_length", "num_distractors",
                 "distractor_length", "max_turn_degrees")

# ---- Constants: part of the generator's definition, so a change to any
# of them (or to the code) bumps `pathfinder.GENERATOR_VERSION`.
_AA = 2              # supersampling factor (Linsley et al.'s antialias_scale)
_CHUNK_PIXELS = 1024 * 32 * 32  # pixels per vectorised chunk (1024 32x32
                                # images, 64 128x128 ones): bounds memory
_CANDIDATES = 8      # turning angles tried at once per step
_START_CANDIDATES = 32  # directions tried for main path 2's start
_PATH_TRIES = 16     # redraws of a main path before its image is dropped
_DISTRACTOR_TRIES = 64  # the same for a distractor (short: cheap to redraw)
_LOOKAHEAD = 3       # steps looked ahead when choosing a turn
_SAMPLE = 0.25       # spacing (low-res px) of points sampled along a path


def geometry(image_size: int) -> dict[str, float]:
  """Drawing sizes in low-res pixels; Linsley et al.'s 32x32 values times
  image_size / 32 (their 64/128 settings differ a little, see module doc)."""
  s = image_size / 32
  dash, gap = 2.0 * s, 1.0 * s
  reach = int(round(gap))           # R: the jump a flood fill needs
  thick = max(1, int(round(s)))     # line width in super-pixels
  extra = thick - 1                 # how far thickening extends a line
  return dict(
      scale=s, dash=dash, gap=gap, step=dash + gap, reach=reach,
      thickness=thick, marker_radius=1.5 * s,
      # Square dilation (super-pixels) between different paths: drawn pixels
      # end >= 2R + 3 super-pixels apart, i.e. >= R + 1 low-res pixels.
      clearance=2 * reach + 2 + 2 * extra,
      margin=1.5 * s + 1.0,          # dots fit inside, plus 1 px padding
  )


def _disc_offsets(radius_hi: float) -> np.ndarray:
  """int[K, 2] super-pixel offsets whose centres lie within `radius_hi`."""
  r = int(math.ceil(radius_hi))
  yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
  keep = yy ** 2 + xx ** 2 <= radius_hi ** 2
  return np.stack([yy[keep], xx[keep]], axis=-1)


def _dilate(mask_BxHxW: np.ndarray, r: int,
            both_ways: bool = True) -> np.ndarray:
  """Square (Chebyshev) dilation by r pixels, separable, numpy only; with
  `both_ways=False` only towards larger indices (a square anchored at the
  pixel, which is how lines are thickened)."""
  out = mask_BxHxW.copy()
  for axis in (1, 2):
    src = out.copy()
    for k in range(1, r + 1):
      lo = [slice(None)] * 3
      hi = [slice(None)] * 3
      lo[axis], hi[axis] = slice(None, -k), slice(k, None)
      out[tuple(hi)] |= src[tuple(lo)]
      if both_ways:
        out[tuple(lo)] |= src[tuple(hi)]
  return out


def _super(points_x2: np.ndarray, size_hi: int) -> np.ndarray:
  """Low-res (y, x) float points -> int super-pixel indices, clipped."""
  return np.clip(np.floor(points_x2 * _AA), 0, size_hi - 1).astype(np.int64)


def _lookup(mask_BxHxW: np.ndarray, rows_B: np.ndarray,
            idx_Bx___x2: np.ndarray) -> np.ndarray:
  """mask[rows[b], y, x] for super-pixel indices idx[b, ..., (y, x)]."""
  b = rows_B.reshape((-1,) + (1,) * (idx_Bx___x2.ndim - 2))
  return mask_BxHxW[b, idx_Bx___x2[..., 0], idx_Bx___x2[..., 1]]


def _mark(mask_BxHxW: np.ndarray, idx_BxNx2: np.ndarray) -> None:
  """Sets mask[b, y, x] for every super-pixel index idx[b, n, (y, x)]."""
  b = np.arange(mask_BxHxW.shape[0])[:, None]
  mask_BxHxW[b, idx_BxNx2[..., 0], idx_BxNx2[..., 1]] = True


def _polyline_points(verts_BxVx2: np.ndarray, upto: float,
                     step: float) -> np.ndarray:
  """Points along each step from its vertex to `upto` of its length.

  upto = step gives the whole polyline (dashes and gaps: what other paths
  must avoid), upto = dash gives the drawn dashes. Returns float[B, N, 2].
  """
  n = int(math.ceil(upto / _SAMPLE)) + 1
  t_T = np.linspace(0.0, upto / step, n)
  a, b = verts_BxVx2[:, :-1], verts_BxVx2[:, 1:]
  pts = a[:, :, None] + t_T[None, None, :, None] * (b - a)[:, :, None]
  return pts.reshape(len(verts_BxVx2), (verts_BxVx2.shape[1] - 1) * n, 2)


class _Walker:
  """Draws non-overlapping dashed paths on a batch of images, vectorised."""

  def __init__(self, rng: np.random.Generator, batch: int, image_size: int,
               max_turn: float):
    self.rng, self.size, self.max_turn = rng, image_size, max_turn
    self.g = geometry(image_size)
    self.size_hi = image_size * _AA
    # Super-pixels other paths must avoid (already dilated).
    self.forbidden = np.zeros((batch, self.size_hi, self.size_hi), bool)
    self.alive = np.ones(batch, bool)
    self.marker_offsets = _disc_offsets(self.g["marker_radius"] * _AA)
    n = int(math.ceil(self.g["step"] / _SAMPLE))
    self.step_t = np.linspace(_SAMPLE, self.g["step"], n)  # excl. the vertex
    self.ahead_t = self.g["step"] * np.arange(1, _LOOKAHEAD + 1)

  def _inside(self, pts_x2: np.ndarray) -> np.ndarray:
    m = self.g["margin"]
    return ((pts_x2 >= m) & (pts_x2 <= self.size - m)).all(axis=-1)

  def _free(self, rows: np.ndarray, pts_x2: np.ndarray) -> np.ndarray:
    return self._inside(pts_x2) & ~_lookup(
        self.forbidden, rows, _super(pts_x2, self.size_hi))

  def _uniform(self, *shape) -> np.ndarray:
    return self.rng.random(shape)

  def _marker_free(self, rows: np.ndarray,
                   centre_Bx2: np.ndarray) -> np.ndarray:
    """Whether a dot's whole disc at each centre is inside and free."""
    c_hi = _super(centre_Bx2, self.size_hi)
    disc = c_hi[:, None, :] + self.marker_offsets[None]
    ok = ((disc >= 0) & (disc < self.size_hi)).all(axis=(1, 2))
    disc = np.clip(disc, 0, self.size_hi - 1)
    return ok & ~_lookup(self.forbidden, rows, disc).any(axis=1) & (
        self._inside(centre_Bx2))

  def _walk(self, rows: np.ndarray, start_Bx2: np.ndarray,
            length: int) -> tuple[np.ndarray, np.ndarray]:
    """One path per row from `start`; (vertices [B, length + 1, 2], ok[B]).

    Rows whose path cannot continue stop being computed (ok False).
    """
    b = len(rows)
    verts = np.zeros((b, length + 1, 2))
    verts[:, 0] = start_Bx2
    ok = np.ones(b, bool)
    angle = self._uniform(b) * 2 * np.pi
    step2 = (self.g["step"] - 1e-6) ** 2
    live = np.arange(b)
    for k in range(length):
      # Draws for every row, used or not, so a row's stream does not depend
      # on which other rows are still alive.
      turn = (2 * self._uniform(b, _CANDIDATES) - 1) * self.max_turn
      live = live[ok[live]]
      if not live.size:
        break
      cand = angle[live, None] + turn[live]                   # [B, C]
      dir_BxCx2 = np.stack([np.sin(cand), np.cos(cand)], axis=-1)
      pts = (verts[live, k, None, None, :]
             + self.step_t[None, None, :, None] * dir_BxCx2[:, :, None, :])
      free = self._free(rows[live], pts).all(axis=-1)         # [B, C]
      ends = pts[:, :, -1]                                    # [B, C, 2]
      if k >= 1:  # keep a step's length from older vertices of this path
        diff = ends[:, :, None] - verts[live, None, :k]
        free &= ((diff ** 2).sum(-1) >= step2).all(axis=-1)
      # Prefer (among free candidates, first in draw order) those with room
      # ahead: points 2 and 3 steps on in the same direction are free. This
      # avoids most dead ends, which would otherwise reject most paths.
      ahead = (ends[:, :, None, :] + self.ahead_t[None, None, :, None]
               * dir_BxCx2[:, :, None, :])
      room = self._free(rows[live], ahead).sum(axis=-1)
      pick = np.argmax(free * (1 + room), axis=1)
      at = np.arange(live.size)
      ok[live] = free[at, pick]
      angle[live] = cand[at, pick]
      verts[live, k + 1] = ends[at, pick]
    return verts, ok

  def _commit(self, rows: np.ndarray, verts_BxVx2: np.ndarray,
              marker_ends: tuple[int, ...] = ()) -> None:
    """Adds paths (and reserved dot discs) to the forbidden mask."""
    mask = np.zeros((len(rows),) + self.forbidden.shape[1:], bool)
    _mark(mask, _super(_polyline_points(verts_BxVx2, self.g["step"],
                                        self.g["step"]), self.size_hi))
    for end in marker_ends:
      disc = (_super(verts_BxVx2[:, end], self.size_hi)[:, None, :]
              + self.marker_offsets[None])
      _mark(mask, np.clip(disc, 0, self.size_hi - 1))
    self.forbidden[rows] |= _dilate(mask, self.g["clearance"])

  def path(self, length: int, start_fn, marker_ends: tuple[int, ...] = (),
           tries: int = _PATH_TRIES) -> np.ndarray:
    """Draws one path in every live image (redrawing failures); images that
    fail `tries` times die. Returns vertices [batch, length + 1, 2]."""
    out = np.zeros((len(self.alive), length + 1, 2))
    pending = np.flatnonzero(self.alive)
    for _ in range(tries):
      if not pending.size:
        break
      start, ok = start_fn(pending)
      verts, walked = self._walk(pending, start, length)
      ok &= walked
      done = pending[ok]
      out[done] = verts[ok]
      self._commit(done, verts[ok], marker_ends)
      pending = pending[~ok]
    self.alive[pending] = False
    return out

  def random_start(self, rows: np.ndarray):
    lo, hi = self.g["margin"], self.size - self.g["margin"]
    start = lo + (hi - lo) * self._uniform(len(rows), 2)
    return start, self._free(rows, start)

  def start_at_distance(self, centre_Bx2: np.ndarray, radius_B: np.ndarray):
    """Start points at `radius` from `centre` (per image) with a free disc."""

    def start_fn(rows):
      phi = self._uniform(len(rows), _START_CANDIDATES) * 2 * np.pi
      cand = (centre_Bx2[rows, None, :] + radius_B[rows, None, None]
              * np.stack([np.sin(phi), np.cos(phi)], axis=-1))
      free = np.stack([self._marker_free(rows, cand[:, c])
                       for c in range(_START_CANDIDATES)], axis=1)
      pick = np.argmax(free, axis=1)
      return cand[np.arange(len(rows)), pick], free[np.arange(len(rows)), pick]

    return start_fn


def draw_geometry(rng: np.random.Generator, batch: int, *, image_size: int,
                  contour_length: int, num_distractors: int,
                  distractor_length: int, max_turn_degrees: float):
  """Paths of `batch` candidate images; returns those that fit.

  Returns:
    (main float[A, 2, contour_length + 1, 2], distractors float[A,
    num_distractors, distractor_length + 1, 2]) vertices in (y, x) low-res
    pixel coordinates for the A <= batch images all of whose paths fit.
  """
  w = _Walker(rng, batch, image_size, math.radians(max_turn_degrees))
  # Path 1: dots may go on both of its ends.
  main1 = w.path(contour_length, w.random_start, marker_ends=(0, -1))
  # Path 2 starts as far from path 1's start as path 1's end is, so the
  # dots' distance is the same in both classes; its start may carry a dot.
  radius = np.linalg.norm(main1[:, -1] - main1[:, 0], axis=-1)
  main2 = w.path(contour_length, w.start_at_distance(main1[:, 0], radius),
                 marker_ends=(0,))
  distractors = [w.path(distractor_length, w.random_start,
                        tries=_DISTRACTOR_TRIES)
                 for _ in range(num_distractors)]
  keep = w.alive
  dis = (np.stack(distractors, axis=1) if distractors
         else np.zeros((batch, 0, distractor_length + 1, 2)))
  return np.stack([main1, main2], axis=1)[keep], dis[keep]


def dot_positions(main_Nx2xVx2: np.ndarray, labels_N: np.ndarray) -> np.ndarray:
  """float[N, 2, 2]: the two dots, path 1's start and either path 1's end
  (label 1) or path 2's start (label 0)."""
  second = np.where(labels_N[:, None] == 1, main_Nx2xVx2[:, 0, -1],
                    main_Nx2xVx2[:, 1, 0])
  return np.stack([main_Nx2xVx2[:, 0, 0], second], axis=1)


def render(main_Nx2xVx2: np.ndarray, distractors_NxDxWx2: np.ndarray,
           dots_Nx2x2: np.ndarray, image_size: int) -> np.ndarray:
  """uint8[N, H, W] images: dashes and dots drawn on a 2x grid, box-filtered.

  A low-res pixel's grey is 255 * min(1, 2 * covered fraction), so a line one
  super-pixel wide (0.5 px, Linsley et al.'s 32x32 width) is white where it
  crosses a pixel's middle and grey at its edges.
  """
  g = geometry(image_size)
  n, size_hi = len(main_Nx2xVx2), image_size * _AA
  canvas = np.zeros((n, size_hi, size_hi), bool)
  for paths in (main_Nx2xVx2, distractors_NxDxWx2):
    for p in range(paths.shape[1]):
      _mark(canvas, _super(_polyline_points(paths[:, p], g["dash"], g["step"]),
                           size_hi))
  if g["thickness"] > 1:  # thicker lines for larger images
    canvas = _dilate(canvas, g["thickness"] - 1, both_ways=False)
  offsets = _disc_offsets(g["marker_radius"] * _AA)
  for d in range(2):
    disc = _super(dots_Nx2x2[:, d], size_hi)[:, None, :] + offsets[None]
    _mark(canvas, np.clip(disc, 0, size_hi - 1))
  cover = canvas.reshape(n, image_size, _AA, image_size, _AA).mean(axis=(2, 4))
  return np.round(255 * np.minimum(1.0, 2 * cover)).astype(np.uint8)


def generate_split(*, num: int, split_index: int, seed: int, image_size: int,
                   contour_length: int, num_distractors: int,
                   distractor_length: int, max_turn_degrees: float,
                   return_dots: bool = False):
  """`num` images of one split with exactly balanced labels.

  Returns:
    (images uint8[num, H, W], labels int32[num]) and, if `return_dots`,
    dots float[num, 2, 2] ((y, x) centres, for tests and plots).
  """
  kw = dict(image_size=image_size, contour_length=contour_length,
            num_distractors=num_distractors,
            distractor_length=distractor_length,
            max_turn_degrees=max_turn_degrees)
  batch = max(1, _CHUNK_PIXELS // image_size ** 2)
  mains, dists, have, chunk = [], [], 0, 0
  while have < num:
    rng = np.random.default_rng([seed, split_index, chunk])
    m, d = draw_geometry(rng, batch, **kw)
    if chunk >= 8 and have == 0:
      raise RuntimeError(
          f"Pathfinder: no image fits in {8 * batch} tries ({kw}); use"
          " fewer or shorter paths, or a larger image_size")
    mains.append(m)
    dists.append(d)
    have += len(m)
    chunk += 1
  main = np.concatenate(mains)[:num] if mains else np.zeros(
      (0, 2, contour_length + 1, 2))
  dis = np.concatenate(dists)[:num] if dists else np.zeros(
      (0, num_distractors, distractor_length + 1, 2))
  label_rng = np.random.default_rng([seed, split_index, 2 ** 31])
  labels = (label_rng.permutation(num) % 2).astype(np.int32)
  dots = dot_positions(main, labels)
  images = np.zeros((num, image_size, image_size), np.uint8)
  for lo in range(0, num, batch):  # bounded memory for large images
    hi = min(num, lo + batch)
    images[lo:hi] = render(main[lo:hi], dis[lo:hi], dots[lo:hi], image_size)
  return (images, labels, dots) if return_dots else (images, labels)
