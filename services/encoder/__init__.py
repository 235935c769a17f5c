"""Encoder service: frozen V-JEPA 2 behind POST /encode, batched, writing embeddings to LanceDB."""
