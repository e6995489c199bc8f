"""Virtual try-on releases: MPV3D (`mpv3d`), VITON (`viton`) and VITON-HD (`viton_hd`).

Each builder reads its official layout (see `mpv3d.py`, `viton.py`) into two configs:
`unpaired`, the pairs lists as released (`{train,test}_pairs.txt`; the test lists pair a
person with another person's garment), and `paired`, each person of a list with their own
garment, so the person image is the ground truth (HR-VITON's `--datasetting paired`); a
person whose own garment the release lacks is left out and `check` says how many. Splits
are `train` and `test` (empty when the release has no list for it).

One row per pair; the features are the same for the three datasets:

| column | type | what |
|---|---|---|
| `pair_id` | string | the result's name as the official test script writes it (benchmarks key on it) |
| `person_id`, `cloth_id` | string | the file names in the pairs list |
| `paired` | bool | the garment is the person's own |
| `height`, `width` | int32 | the person image's size (every image of a row has it) |
| `person`, `cloth` | `Image(decode=False)` | the original bytes and relative path (required) |
| `cloth_mask`, `palm_mask`, `aligned_cloth_mask` | `Image(decode=False)` | binary L PNG (0/255): the release's JPEG mask thresholded at `>= 128`, as every official loader does |
| `parse`, `parse_agnostic` | `Image(decode=False)` | LIP label ids 0..19 (original PNG bytes; validated; a derived agnostic parse is an L PNG) |
| `agnostic` | `Image(decode=False)` | VITON-HD's cloth-agnostic person image (release `agnostic-v3.2/`, or derived: RGB PNG) |
| `pose` | `Array2D((K, 3), float32)` | OpenPose x, y, confidence: K = 25 (BODY_25) for MPV3D and VITON-HD, 18 (COCO-18) for VITON |
| `pose_image`, `densepose` | `Image(decode=False)` | VITON-HD's rendered skeleton and DensePose image |
| `sobel_x`, `sobel_y`, `aligned_cloth` | `Image(decode=False)` | MPV3D's preprocessing outputs |
| `depth_front`, `depth_back` | `Array2D((H, W), float32)` | MPV3D only: viewport depth in [0, 1], 0 = background, as stored (the back map as its camera sees it, mirrored); `refbench.evaluation.tryon.depth` converts it as the loader does |
| `derived` | list of string | columns computed by `prepare` because the release lacked them |

Only the pairs list, the person and the garment are required; every other column is None
where the release lacks the file. What is derived: with MPV3D's `derive` prepare option (on
by default), palm masks need the parse and the pose, pre-aligned garments the parse and the
garment mask, Sobel images only the person. With VITON-HD's `derive=true` (off by default)
the cloth-agnostic parse needs parse + pose and the agnostic person image (`agnostic`
column, option `agnostic=hrviton|viton_hd`) person + parse + pose (`agnostic.py`); a row
lacking parse or pose is then an error naming the file. A parse, a pose, a DensePose image
or a garment mask are never derived (they come from networks refbench does not run).
`prepare` converts rows chunk by chunk and resumes an interrupted run (`chunked.py`). The readers (`readers.py`) and the preprocessing (`preprocess.py`) say what
each file holds and how it is checked; `synth.py` writes learnable synthetic releases.
"""

from refbench.datasets.tryon.mpv3d import MPV3DBuilder
from refbench.datasets.tryon.viton import VitonBuilder, VitonHDBuilder

__all__ = ["MPV3DBuilder", "VitonBuilder", "VitonHDBuilder"]
