"""Local weight files of the pretrained extractors (``dinov2``, ``clip``): found, hashed, recognised; never downloaded.

Each extractor reads the file the user names (``--weights FILE`` or its environment variable).  A missing
file is a one-line error naming the published file(s) to fetch, with their URL and sha256.  The file's
sha256 goes into the extractor's identity (feature-cache key, every stored row); a file whose hash is not
one of :data:`PUBLISHED` (a random-weight file made by the tests, a fine-tuned or converted copy) is
*unpublished*: its extractor id carries ``-unpublished`` and the page and the CLI say "random or
unpublished weights", so that no number from it can pass for FD_DINOv2 or CMMD.

Checksums (sha256 of the files at the URLs below): DINOv2's are those pinned by finegrain-ai/refiners'
conversion script (``facebook/github_dinov2`` vits14.pth / vitl14.pth) and by several independent
projects; OpenAI's CLIP file is named by its sha256 in its own URL (openai/CLIP verifies it on download).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Dict, Optional, Tuple

from ..cache import hash_file


@dataclass(frozen=True)
class Published:
    kind: str        # extractor name
    arch: str        # architecture the file holds
    file: str        # its published file name
    url: str
    sha256: str
    size: int = 0    # bytes (0: not recorded)


PUBLISHED: Dict[str, Published] = {p.sha256: p for p in (
    Published("dinov2", "vits14", "dinov2_vits14_pretrain.pth",
              "https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_pretrain.pth",
              "b938bf1bc15cd2ec0feacfe3a1bb553fe8ea9ca46a7e1d8d00217f29aef60cd9", 88_283_115),
    Published("dinov2", "vitl14", "dinov2_vitl14_pretrain.pth",
              "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth",
              "d5383ea8f4877b2472eb973e0fd72d557c7da5d3611bd527ceeb1d7162cbf428", 1_217_586_395),
    Published("clip", "ViT-L/14@336", "ViT-L-14-336px.pt",
              "https://openaipublic.azureedge.net/clip/models/"
              "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02/ViT-L-14-336px.pt",
              "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02"),
)}
ENV = {"dinov2": "AVADE_DINOV2", "clip": "AVADE_CLIP"}
FLAG = {"dinov2": "--weights", "clip": "--clip-weights"}
UNPUBLISHED = "random or unpublished weights"


def expected(kind: str) -> str:
    """'file (sha256 …, URL)' for every published file of ``kind``, for error messages."""
    return "; or ".join(f"{p.file} (sha256 {p.sha256}) from {p.url}" for p in PUBLISHED.values() if p.kind == kind)


def resolve(kind: str, path: Optional[str | os.PathLike]) -> Path:
    """The weights file from ``path`` or the kind's environment variable; a one-line error naming the
    expected files, their checksums and where to get them when there is none."""
    where = path or os.environ.get(ENV[kind]) or None
    if where is None or not Path(where).expanduser().is_file():
        said = f"{where!s} does not exist" if where is not None else f"no path given and ${ENV[kind]} is unset"
        raise FileNotFoundError(f"{kind} weights not found ({said}): expected {expected(kind)}; download it and "
                                f"pass its path with {FLAG[kind]} FILE or ${ENV[kind]} (nothing is downloaded here)")
    return Path(where).expanduser()


@lru_cache(maxsize=16)
def _hash(path: str, size: int, mtime: float) -> str:
    return hash_file(path)


def file_identity(path: Path) -> Tuple[str, Optional[Published]]:
    """(sha256 of the file, its :class:`Published` entry or None), the hash remembered per (path, size, mtime)."""
    st = path.stat()
    digest = _hash(str(path.resolve()), st.st_size, st.st_mtime)
    return digest, PUBLISHED.get(digest)


def wrong_file(kind: str, path: Path, e: BaseException) -> ValueError:
    """The one-line error for a file that is not a checkpoint of ``kind``."""
    reason = (str(e).splitlines() or [""])[0][:200]
    return ValueError(f"{path} is not a readable {kind} checkpoint ({type(e).__name__}: {reason}); expected "
                      f"{expected(kind)}")


def unpublished_warning(identity: Optional[dict]) -> str:
    """'' for a published or weight-free extractor; else the one-line warning that its numbers are not the
    literature's (e.g. a random-weight DINOv2 file gives no FD_DINOv2)."""
    if not identity or identity.get("weights") != UNPUBLISHED:
        return ""
    kind = identity.get("extractor", "?")
    what = {"dinov2": "FD_DINOv2", "clip": "CMMD"}.get(kind, f"{kind} values")
    files = " or ".join(p.file for p in PUBLISHED.values() if p.kind == kind)
    return (f"{kind} weights sha256 {str(identity.get('weights_sha256', ''))[:12]}... are {UNPUBLISHED} (not "
            f"{files}): these numbers are not {what}")


def require(module: str, kind: str):
    """Import ``module`` (timm, open_clip) or fail in one line saying how to install it."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ValueError(f"the {kind} extractor needs the {module} package: pip install 'avade-bench[extractors]'"
                         ) from None
