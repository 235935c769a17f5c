"""encode -> dataset -> BC -> live eval, through the SDK only (services on :8001/:8002, e.g. `docker compose up`)."""
import os, numpy as np
from vjepa_robot_client import EncoderClient, TrainerClient

enc, tr = EncoderClient(), TrainerClient()  # $VJEPA_ROBOT_ENCODER_URL / _TRAINER_URL / _TOKEN, else localhost
episodes, steps = int(os.environ.get("QUICKSTART_EPISODES", 30)), int(os.environ.get("QUICKSTART_STEPS", 200))
info = enc.info()
print("encoder", info.encoder_id, enc.encode(np.zeros((8, info.image_size, info.image_size, 3), np.uint8)).shape)
tr.create_dataset("quickstart", expert="jacobian", episodes=episodes, steps=steps, image_size=info.image_size, overwrite=True)
print("dataset", tr.wait_dataset("quickstart").success_rate)
print("embedded", enc.encode_dataset_and_wait("quickstart", progress=True).done)
run = tr.wait(tr.train_bc("quickstart", features="vjepa2", epochs=100))
print("bc", run.status.value, run.metrics.get("val_loss"))
queued = tr.evaluate(run.run_id, episodes=max(2, episodes // 2), steps=steps, image_size=info.image_size)
result = tr.wait_eval(run.run_id, queued.eval_id)
print(f"success {result.success_rate:.0%} (95% CI {result.success_ci95}), mean return {result.mean_return:.1f}")
