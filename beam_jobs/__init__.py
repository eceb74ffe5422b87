"""Apache Beam jobs: preprocessing, feature extraction, batch captioning."""
