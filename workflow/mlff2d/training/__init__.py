"""Training (thesis 4.2): sweep points, checkpoints, divergence; the families are in mlff2d.families."""
