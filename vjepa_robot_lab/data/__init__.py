"""Datasets of demonstrations in the feature store, and LeRobotDataset export/import."""
