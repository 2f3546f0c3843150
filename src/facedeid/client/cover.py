"""`--cover face|head`: what a generated face replaces, sent as the optional ensemble input COVER (settings.COVERS:
0 the inner face, jaw line to just above the brows; 1 the whole head, forehead, hairline, hair and ears). Stateless
like every per-request setting; only the generators of COVER_GENERATORS (ksame) take it."""

from __future__ import annotations

import numpy as np

from ..settings import COVER_GENERATORS, COVERS

DEFAULT_COVER = COVERS[0]


def add_cover_argument(parser) -> None:
    parser.add_argument("--cover", choices=COVERS, default=DEFAULT_COVER,
                        help="what the generated face replaces: face (default: jaw line to just above the brows) or "
                             "head (also forehead, hairline, hair and ears: the context that still identifies a "
                             f"person, docs/crisp-faces.md); head: {', '.join(COVER_GENERATORS)} only")


def cover_problem(generator: str, cover: str) -> str | None:
    """Why `generator` cannot serve `cover` (one line), or None."""
    if cover not in COVERS:
        return f"--cover must be one of {', '.join(COVERS)}, got {cover!r}"
    if cover != DEFAULT_COVER and generator not in COVER_GENERATORS:
        return (f"--cover {cover}: model {generator} replaces the face only; --cover {cover} needs "
                f"{' or '.join(COVER_GENERATORS)} (e.g. --model {COVER_GENERATORS[0]})")
    return None


def cover_inputs(cover: str = DEFAULT_COVER) -> dict[str, np.ndarray]:
    """The ensemble input for `cover`; nothing for the default, which every ensemble serves without asking."""
    if cover not in COVERS:
        raise ValueError(f"cover must be one of {', '.join(COVERS)}, got {cover!r}")
    return {} if cover == DEFAULT_COVER else {"COVER": np.int32([COVERS.index(cover)])}


def generator_of(ensemble: str) -> str:
    """`deid_<gen>` or `deid_<gen>_boxes` -> `<gen>`."""
    name = ensemble.removeprefix("deid_")
    return name.removesuffix("_boxes")
