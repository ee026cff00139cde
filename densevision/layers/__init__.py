"""Building blocks shared by heads: preprocessing, padding, dense blocks, the context module."""
