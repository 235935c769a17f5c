"""Names, vocabularies (enums), validators and the models' base classes every part of the contract shares."""

from __future__ import annotations

import re
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..window import WINDOW_FRAMES  # noqa: F401  (re-exported: part of the wire contract)

NPY_MEDIA_TYPE = "application/x-npy"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
RUN_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
_NAME_RE = re.compile(NAME_PATTERN)
_RUN_ID_RE = re.compile(RUN_ID_PATTERN)


class FeatureSource(str, Enum):
    """Where a policy's input features come from (one interface for all three: BC, SAC, evaluation, probe)."""

    vjepa2 = "vjepa2"  # frozen V-JEPA 2 embedding of the last 8 frames, from the encoder over HTTP
    state = "state"  # oracle: cos/sin of joint angles, to_target, velocity
    random = "random"  # lower bound: a fixed random vector per step, independent of the frames
    # learning from scratch (issue 27): the step's last PIXEL_FRAMES rendered frames, read by a conv encoder trained
    # end to end with the policy (DrQ-v2's encoder, random-shift augmentation; vjepa_robot_lab/perception/pixels.py)
    pixels = "pixels"


# Feature sources that read the rendered frames (their runs record the frame size; evaluation renders at it)
FRAME_FEATURES: tuple[str, ...] = ("vjepa2", "pixels")
PIXEL_FRAMES = 3  # frames stacked for features=pixels: DrQ-v2's frame_stack and CortexBench's history window


def needs_frames(features) -> bool:
    """Whether a feature source reads rendered frames (vjepa2 through the encoder, pixels through its own conv)."""
    return str(getattr(features, "value", features)) in FRAME_FEATURES


class ExpertName(str, Enum):
    jacobian = "jacobian"
    p_controller = "p-controller"
    random = "random"


class Task(str, Enum):
    """dm_control suite tasks (settings per task: vjepa_robot_lab/envs/tasks.py). Reacher's keep their short names
    `easy`/`hard`; `reacher-easy`/`reacher-hard` are accepted as aliases of them (TASK_ALIASES)."""

    easy = "easy"
    hard = "hard"
    walker_stand = "walker-stand"
    walker_walk = "walker-walk"
    cheetah_run = "cheetah-run"
    finger_spin = "finger-spin"
    cartpole_balance = "cartpole-balance"
    cartpole_swingup = "cartpole-swingup"

    @classmethod
    def _missing_(cls, value):  # pydantic's enum validation calls this too: the aliases validate as their task
        alias = TASK_ALIASES.get(value) if isinstance(value, str) else None
        return cls(alias) if alias else None


TASK_ALIASES: dict[str, str] = {"reacher-easy": "easy", "reacher-hard": "hard"}
RUN_EXPERT_PREFIX = "run:"  # an expert named "run:<run id>" is that trained run's deterministic policy
# the state-SAC expert shipped with the package for the dataset's task (vjepa_robot_lab/policies/shipped_experts.py)
SHIPPED_EXPERT = "shipped"


def is_reacher_task(task: Any) -> bool:
    """Whether a task (a Task, its value or an alias such as reacher-easy) is one of reacher's, easy or hard."""
    value = str(getattr(task, "value", task))
    return TASK_ALIASES.get(value, value) in (Task.easy.value, Task.hard.value)


def default_expert(task: str | Enum) -> str:
    """The demonstrator a dataset or bake-off gets when none is named: the scripted jacobian on reacher, the shipped
    state-SAC expert on every other task."""
    return ExpertName.jacobian.value if is_reacher_task(task) else SHIPPED_EXPERT


class Pooling(str, Enum):
    """How the encoder reduces a window's last hidden state (part of the encoder id: rows never mix)."""

    mean = "mean"  # mean over every token: one (D,) vector per window (the default; today's answers byte for byte)
    grid = "grid"  # the (T', h, w, D) token grid reduced over time and average-pooled to g x g: (g*g, D) per window


class Readout(str, Enum):
    """How a policy reads its features (BC and SAC)."""

    mean = "mean"  # the MLP on the mean-pooled embedding (or on state / random vectors)
    attentive = "attentive"  # a cross-attention pooler with learned queries over the stored token grid, then the MLP
    flare = "flare"  # CortexBench's fusion of the last 3 windows' embeddings: latest plus consecutive differences


class Compression(str, Enum):
    """Request-body compression the trainer's encoder clients use (VJEPA_ROBOT_COMPRESS / serve trainer --compress)."""

    auto = "auto"  # zstd for a non-loopback encoder URL, none on loopback
    zstd = "zstd"
    gzip = "gzip"
    none = "none"


DEFAULT_GRID_SIZE = 4  # g: a grid answer has g*g tokens per window
TIME_REDUCTIONS = ("mean", "last")  # how a grid folds V-JEPA 2's T' = 8/2 = 4 temporal token slices into one
EMBEDDING_DTYPES = ("float16", "float32")
EMBEDDING_DTYPE_HEADER = "X-Embedding-Dtype"  # on every .npy answer of /encode and stream steps
MAX_GRID_LAYERS = 8

# The vocabularies as plain strings, for the services, the CLI and messages; the enums above are their one source.
EXPERTS: tuple[str, ...] = tuple(e.value for e in ExpertName)  # also the baseline policies of an evaluation
TASKS: tuple[str, ...] = tuple(t.value for t in Task)
FEATURE_SOURCES: tuple[str, ...] = tuple(f.value for f in FeatureSource)
POOLINGS: tuple[str, ...] = tuple(p.value for p in Pooling)
READOUTS: tuple[str, ...] = tuple(r.value for r in Readout)
COMPRESSIONS: tuple[str, ...] = tuple(c.value for c in Compression)
ExpertPolicy = Literal[EXPERTS]  # a JSON-schema enum of the expert names, for request fields
ACTION_DIM = 2  # reacher's two joint torques, each in [-1, 1]; other tasks: vjepa_robot_lab/envs/tasks.py (action_dim)


def check_action_repeat(episode_steps: int, action_repeat: int, what: str = "episode_steps") -> int:
    """THE episode-length rule: episode_steps counts simulator steps and must be a positive multiple of
    action_repeat. Returns the agent (policy) steps per episode; raises ValueError naming both numbers."""
    if action_repeat < 1 or episode_steps < 1 or episode_steps % action_repeat:
        raise ValueError(
            f"{what} ({episode_steps}) counts simulator steps and must be a positive multiple "
            f"of action_repeat ({action_repeat}), e.g. {what}=1000, action_repeat=4"
        )
    return episode_steps // action_repeat


class RunStatus(str, Enum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    interrupted = "interrupted"


class DatasetState(str, Enum):
    running = "running"
    ready = "ready"
    failed = "failed"


def validate_name(name: str, what: str = "name") -> str:
    """Dataset names are table-name and path safe: letters, digits, '_' and '-', at most 64."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(
            f"invalid {what} {name!r}: use 1-64 letters, digits, '_' or '-', starting with a letter or digit "
            f"(e.g. 'jacobian-easy-500')"
        )
    return name


def validate_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not _RUN_ID_RE.fullmatch(run_id):
        raise ValueError(
            f"invalid run id {run_id!r}: run ids are lowercase letters, digits and '-' (e.g. 'bc-1a2b3c4d')"
        )
    return run_id


# ----------------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class _Open(BaseModel):
    """Responses may grow fields; clients must not break on them."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())


class ErrorResponse(_Open):
    detail: Any = Field(description="What went wrong and how to fix it.")


class HealthResponse(_Open):
    status: Literal["ok"] = "ok"


class DictReadable:
    """Read access as the dict this model replaced (record["status"], .get("error")), for callers that have not
    moved to attributes yet; writing goes through attributes only."""

    def __getitem__(self, key: str) -> Any:
        if key not in type(self).model_fields and key not in (self.model_extra or {}):  # type: ignore[attr-defined]
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default


__all__ = [
    "NPY_MEDIA_TYPE",
    "NAME_PATTERN",
    "RUN_ID_PATTERN",
    "_NAME_RE",
    "_RUN_ID_RE",
    "FeatureSource",
    "FRAME_FEATURES",
    "PIXEL_FRAMES",
    "needs_frames",
    "ExpertName",
    "Task",
    "TASK_ALIASES",
    "RUN_EXPERT_PREFIX",
    "SHIPPED_EXPERT",
    "default_expert",
    "is_reacher_task",
    "Pooling",
    "Readout",
    "Compression",
    "DEFAULT_GRID_SIZE",
    "TIME_REDUCTIONS",
    "EMBEDDING_DTYPES",
    "EMBEDDING_DTYPE_HEADER",
    "MAX_GRID_LAYERS",
    "EXPERTS",
    "TASKS",
    "FEATURE_SOURCES",
    "POOLINGS",
    "READOUTS",
    "COMPRESSIONS",
    "ExpertPolicy",
    "ACTION_DIM",
    "check_action_repeat",
    "RunStatus",
    "DatasetState",
    "validate_name",
    "validate_run_id",
    "_Model",
    "_Open",
    "ErrorResponse",
    "HealthResponse",
    "DictReadable",
]
