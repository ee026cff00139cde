"""Pictures per task: segmentation colour masks and overlays, pose skeletons, classification heat maps."""
