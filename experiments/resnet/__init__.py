"""ResNet with batch normalization (Flax NNX): the paper's third backbone, at CPU scale."""
