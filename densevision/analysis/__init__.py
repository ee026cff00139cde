"""Model analysis: convolution arithmetic (``arithmetic``) and per-layer tables (``layer_table``)."""
