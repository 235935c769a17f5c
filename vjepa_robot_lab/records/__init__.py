"""Run records on disk, the registry of run kinds (algorithms), and the context a job runs in."""
