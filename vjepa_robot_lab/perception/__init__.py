"""What a policy sees: feature sources (encoder embeddings, state, random), readouts over them, probes."""
