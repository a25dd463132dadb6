"""Portraits for SPECIMEN documents: a picture file, or a public-domain sample portrait
that an installed package ships (the `dev` extra installs both):

- `astronaut`: Eileen Collins, NASA (public domain), bundled with scikit-image
  (`skimage.data.astronaut`);
- `hopper`: Rear Admiral Grace Hopper, U.S. Navy (public domain), in matplotlib's sample
  data (`grace_hopper.jpg`).

They are not runtime dependencies of the portal (scikit-image alone pulls SciPy): a
deployment that makes specimens passes `--portrait FILE`.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageOps

# Each sample's head and shoulders (left, top, right, bottom, in pixels): the face
# about half the photo's width, as on a document (ICAO 9303-3 §3.9).
SAMPLES = {"astronaut": (135, 24, 309, 251), "hopper": (53, 0, 483, 562)}


class PortraitUnavailable(ValueError):
    """The portrait cannot be loaded (a missing file or package, not a picture)."""


def sample(name: str) -> Image.Image:
    """A sample portrait by name (see SAMPLES), head and shoulders, from the package
    that ships it."""
    try:
        if name == "astronaut":
            from skimage import data  # scikit-image: the dev extra

            pixels = data.astronaut()  # type: ignore[no-untyped-call]
            return Image.fromarray(pixels).convert("RGB").crop(SAMPLES[name])
        if name == "hopper":
            from matplotlib import cbook  # matplotlib: the dev extra

            path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
            with Image.open(path) as picture:
                return picture.convert("RGB").crop(SAMPLES[name])
    except ImportError as exc:
        raise PortraitUnavailable(f"the sample portrait {name!r} comes with "
                                  f"{exc.name}: install qsign[dev] or give a picture "
                                  "file") from exc
    raise PortraitUnavailable(f"no sample portrait {name!r}: one of {sorted(SAMPLES)}")


def load(spec: str | Path) -> Image.Image:
    """A sample's name or a PNG/JPEG file."""
    if isinstance(spec, str) and spec in SAMPLES:
        return sample(spec)
    try:
        with Image.open(spec) as picture:
            return picture.convert("RGB")
    except (OSError, ValueError) as exc:
        raise PortraitUnavailable(f"{spec}: not a picture ({exc})") from exc


def fitted(picture: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`picture` cropped to the photo box's aspect ratio (a little above its middle,
    where a head is) and scaled to it."""
    return ImageOps.fit(picture, size, Image.Resampling.LANCZOS, centering=(0.5, 0.4))
