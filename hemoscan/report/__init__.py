"""Per-sample reports: image findings, their evidence, and the lab scores side by side."""
