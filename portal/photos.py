"""Inspection photos: checked by their content, re-encoded, stored outside the web root.

A photo is accepted only when Pillow decodes it as JPEG, PNG or WebP (the name and the declared
type are not trusted) and it is at most ``MAX_PHOTO_BYTES``. It is re-encoded as JPEG at most
``MAX_PHOTO_SIDE`` pixels wide or high, which also drops its metadata (GPS position, device), and
stored under ``<var_dir>/photos/`` by its SHA-256; the portal serves it to signed-in staff only.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PHOTO_BYTES = 8 * 1024 * 1024
MAX_PHOTOS = 6
MAX_PHOTO_SIDE = 2048
MAX_PIXELS = 50_000_000  # a decompression bomb is refused before it is decoded
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP")
MEDIA_TYPE = "image/jpeg"


class PhotoError(ValueError):
    """A photo is refused; ``reason`` says why (too_large, not_image, too_many_pixels)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class StoredPhoto:
    """Where a re-encoded photo was written."""

    path: str  # relative to the photo folder
    size: int
    sha256: str


def photo_folder(var_dir: Path) -> Path:
    """The folder photos are kept in (never served as static files)."""
    return var_dir / "photos"


def reencode(data: bytes) -> bytes:
    """The photo checked by content and re-encoded as JPEG; PhotoError when refused."""
    if len(data) > MAX_PHOTO_BYTES:
        raise PhotoError("too_large")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                if probe.format not in ACCEPTED_FORMATS:
                    raise PhotoError("not_image")
                if probe.width * probe.height > MAX_PIXELS:
                    raise PhotoError("too_many_pixels")
                probe.verify()  # reads the whole file: truncated or corrupt data fails here
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                upright = ImageOps.exif_transpose(image)
                upright.thumbnail((MAX_PHOTO_SIDE, MAX_PHOTO_SIDE))
                out = io.BytesIO()
                upright.convert("RGB").save(out, "JPEG", quality=85, optimize=True)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombWarning, Image.DecompressionBombError) as error:
        if isinstance(error, PhotoError):
            raise
        raise PhotoError("not_image") from None
    return out.getvalue()


def store(data: bytes, folder: Path) -> StoredPhoto:
    """Check, re-encode and write a photo under folder (atomically); return where."""
    encoded = reencode(data)
    digest = hashlib.sha256(encoded).hexdigest()
    relative = f"{digest[:2]}/{digest}.jpg"
    target = folder / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        temporary = target.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_bytes(encoded)
        temporary.replace(target)
    return StoredPhoto(relative, len(encoded), digest)


def open_stored(folder: Path, relative: str) -> Path:
    """The file of a stored photo; ValueError when the path would leave the folder."""
    target = (folder / relative).resolve()
    if not target.is_relative_to(folder.resolve()):
        raise ValueError(f"photo path outside the photo folder: {relative!r}")
    return target
