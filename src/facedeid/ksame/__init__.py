"""`ksame`: replace a face with the average of k >= 10 aligned faces of other people (k-Same family).

k-Same (Newton, Sweeney & Malin 2005; Gross et al. 2006; k-Same-Net, Meden et al. 2018): every output face is the
average of at least k donor faces, none of whom is the target, so whatever identity the output carries belongs to
at least k people. This is a bound no trained generator gives.

How a crop is replaced (`KSame.generate`, the served `ksame` model runs exactly this):
1. landmarks: the caller's (a video track's smoothed ones, LANDMARKS), or CenterFace (the detector already served)
   run on the crop itself: the five landmarks of the face nearest the crop centre (so `deid_ksame_boxes`, where the
   caller gives only boxes, works the same way);
   a crop where none is found gets the bank's template landmarks at the crop's standard face position. From the
   five points the bank's face rectangle is placed and dlib's 68-point shape predictor (face_recognition_models)
   gives the dense landmarks (facedeid.ksame.warp; a few ms);
2. donor group: the bank average nearest to the target in pose (yaw from the landmarks), skin tone (Lab lightness
   of the skin band just inside the face outline) and coarse appearance (a 16x16 grey thumbnail of the face);
3. geometry: the average (every donor warped piecewise-affinely onto one mean shape of 68 landmarks, so features
   line up and the average stays sharp) is warped triangle by triangle onto the crop: onto the mean shape placed
   by a similarity to the target's 68 landmarks, or to its five points where those are not trusted
   (`geometry="mean"`, `place`), or onto the target's own 68 landmarks (`"target"`: expression and
   face shape kept), or a blend;
4. colour: Lab mean (and, bounded, spread) of the average's skin band moved to the target's; chroma spread is
   never increased, so the transfer cannot over-saturate; optional `detail`: the target's fine skin texture on
   cheeks, forehead and chin (not on brows, eyes, nose or mouth);
5. light unsharp mask, then the inner-face mask from the landmarks (jaw line to just above the brows, shrunk and
   feathered, grown by the same mask on the target's own 68 landmarks and over its brows and eyes; `cover="head"`:
   an ellipse over forehead, hair and ears too): outside it the target's own crop is returned; where it reaches
   past the average's own face, the average's skin is extended there (`fill`). A crop whose five points place a
   face far smaller than the box (a back of a head) is blurred as deface blurs instead (`no_face`). Compose then
   blends the crop into the frame with its feathered window, as for every generator.

The bank (`weights/ksame_bank.npz`, built by `facedeid train ksame-bank`, facedeid/ksame/build.py) holds only
the averages at 256 px (trimmed means: per pixel the k = 14 donors less the 2 lowest and 2 highest values, so every
pixel averages 10 donors and a feature few donors have, such as glasses, is dropped, not ghosted), never a single
donor's face; its record (`ksame_bank.json`) lists the donor files, k and the groups.
Donors are UTKFace crops (non-commercial research use only): the shared training crops, which were screened to
hold none of the evaluated people (../shared/data/faces/README.md, "Training set").

Modules: landmarks (CenterFace on crops), geometry (similarity, pose, masks), colour (Lab transfer, tone,
thumbnail), bank (the averages and the donors' labels), generator (KSame), warp (dense landmarks, piecewise-affine
warp), build (`facedeid train ksame-bank`).
"""

from __future__ import annotations

from .bank import (  # noqa: F401 - the package's interface
    BANK_PATH,
    DEFAULT_K,
    DEFAULT_TRIM,
    K_MIN,
    RECORD_PATH,
    UTKFACE_TERMS,
    Bank,
    held_apart,
    utkface_labels,
)
from .colour import match_colour, sharpen, skin_tone, thumbnail  # noqa: F401
from .generator import (  # noqa: F401
    COVERS,
    DEFAULT_DETAIL,
    DEFAULT_GEOMETRY,
    DENSE_MAX_OFFSET,
    SIZE,
    SIZES,
    KSame,
)
from .geometry import apply, dense_rect, head_mask, ring_mask, similarity, skin_mask, yaw_of  # noqa: F401
from .landmarks import LANDMARK_MIN_SCORE, Landmarks  # noqa: F401

NAME = "ksame"
BANK_SIDE = 256  # the averages' side: the standard crop's frame at 256 px, detail for faces of 256 px and less
