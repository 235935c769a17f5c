"""encode -> dataset -> BC -> live eval, through the SDK only. Start the services first: `vjepa-robot serve encoder
--preset tiny` and `vjepa-robot serve trainer` (ports 8001 / 8002), or `docker compose up`."""

import os

import numpy as np

from vjepa_robot_client import EncoderClient, TrainerClient

enc, tr = EncoderClient(), TrainerClient()  # $VJEPA_ROBOT_ENCODER_URL / _TRAINER_URL / _TOKEN, else localhost
episodes, steps = int(os.environ.get("QUICKSTART_EPISODES", 30)), int(os.environ.get("QUICKSTART_STEPS", 200))
info = enc.info()
stand_in = " [a random-init stand-in: a plumbing check, not V-JEPA 2]" if info.random_init else ""  # preset tiny
emb = enc.encode(np.zeros((8, info.image_size, info.image_size, 3), np.uint8))  # one 8-frame window -> (1, D)
print(f"encoder {info.model} ({info.encoder_id}){stand_in}: one window -> embedding of shape {emb.shape}")
tr.create_dataset(
    "quickstart", expert="jacobian", episodes=episodes, steps=steps, image_size=info.image_size, overwrite=True
)
ds = tr.wait_dataset("quickstart")
print(f"dataset: {ds.episodes} expert episodes x {ds.steps} steps, expert success {ds.success_rate:.0%}")
print(f"embedded {enc.encode_dataset_and_wait('quickstart', progress=True).done} windows")
run = tr.wait(tr.train_bc("quickstart", features="vjepa2", epochs=100))
m = run.metrics  # BC keeps the epoch with the lowest validation MSE (selected_epoch), not the last one
print(
    f"bc {run.status.value} on vjepa2{stand_in}: kept epoch {m.get('selected_epoch')} of {m.get('epoch')}, "
    f"validation MSE {m.get('best_val_loss'):.3g}"
)
queued = tr.evaluate(run.run_id, episodes=max(2, episodes // 2), steps=steps, image_size=info.image_size)
result = tr.wait_eval(run.run_id, queued.eval_id)
lo, hi = result.success_ci95
print(
    f"success {result.success_rate:.0%} (95% CI {lo:.0%}-{hi:.0%}) over {len(result.episodes)} live episodes, "
    f"mean return {result.mean_return:.1f}{stand_in}"
)
