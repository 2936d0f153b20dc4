"""Data layer: cut videos into aligned audio-visual clips, write them as WebDataset shards, stream them."""
