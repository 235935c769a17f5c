"""The wire contract: request/response models and the .npy convention, defined once.

Both services import these models (so their OpenAPI schemas are generated from them) and the SDK
parses responses with them. Nothing here imports torch or dm_control.

Shapes at the boundary:
    frames:     (B, T, H, W, 3) uint8, or one window (T, H, W, 3) uint8   -> body of POST /encode (.npy)
    embeddings: (B, D) float32                                           <- JSON lists or .npy (pool=mean)
    token grids: (B, G, D') float16 (default) or float32, G = g*g        <- pool=grid (PoolingSpec)

One module per concept (the package's modules); every name is importable from here, as before.
"""

from ..window import WINDOW_FRAMES
from ._base import *  # noqa: F403
from ._base import __all__ as _base_all
from .bakeoff import *  # noqa: F403
from .bakeoff import __all__ as _bakeoff_all
from .bc import *  # noqa: F403
from .bc import __all__ as _bc_all
from .datasets import *  # noqa: F403
from .datasets import __all__ as _datasets_all
from .encoder import *  # noqa: F403
from .encoder import __all__ as _encoder_all
from .evaluation import *  # noqa: F403
from .evaluation import __all__ as _evaluation_all
from .npy import *  # noqa: F403
from .npy import __all__ as _npy_all
from .runs import *  # noqa: F403
from .runs import __all__ as _runs_all
from .sac import *  # noqa: F403
from .sac import __all__ as _sac_all
from .studies import *  # noqa: F403
from .studies import __all__ as _studies_all
from .training import *  # noqa: F403
from .training import __all__ as _training_all

__all__ = [
    "WINDOW_FRAMES",
    *_base_all,
    *_npy_all,
    *_encoder_all,
    *_datasets_all,
    *_training_all,
    *_evaluation_all,
    *_bc_all,
    *_sac_all,
    *_runs_all,
    *_studies_all,
    *_bakeoff_all,
]
