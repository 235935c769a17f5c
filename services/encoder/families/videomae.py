"""VideoMAE (video): the 8-frame window whole; the embedding is the mean over its tokens (VideoMAE's own convention:
`use_mean_pooling`, VideoMAEForVideoClassification's fc_norm(mean) head). Its checkpoints are pre-trained on
16-frame clips; we load them with num_frames=8 (its position embeddings are a fixed sin-cos table over the flattened
(t, h, w) patch index, not weights, so 8 frames use exactly the first 4 tubelet slots of the 16-frame table: the
first half of a pre-training clip) rather than duplicating frames, which would make every tubelet static."""

from __future__ import annotations

from services.encoder.families.base import TINY_VIT, Family
from vjepa_robot_client.contract import WINDOW_FRAMES


def tiny_config():
    import transformers

    return transformers.VideoMAEConfig(
        **TINY_VIT, image_size=128, patch_size=16, num_frames=WINDOW_FRAMES, tubelet_size=2, use_mean_pooling=True
    )


def _geometry(c) -> tuple[int, int, int]:
    if int(c.num_frames) != WINDOW_FRAMES:
        raise ValueError(f"VideoMAE must be loaded with num_frames={WINDOW_FRAMES}, got {c.num_frames}")
    return int(c.image_size), int(c.patch_size), int(c.tubelet_size)


FAMILY = Family(
    "videomae",
    "VideoMAE",
    "video",
    {"videomae": "VideoMAEModel"},
    "mean",
    ignore_unexpected=("decoder.", "encoder_to_decoder.", "mask_token", "fc_norm.", "classifier."),
    load_kwargs={"num_frames": WINDOW_FRAMES},
    hub_presets={"videomae-base": "MCG-NJU/videomae-base"},
    random_presets={"tiny-videomae": tiny_config},
    geometry=_geometry,
    final_norm=lambda m: getattr(m, "layernorm", None),
)
