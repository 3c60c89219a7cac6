"""From pixels to detections: preprocessing, the predictor, decoding and post-processing."""
