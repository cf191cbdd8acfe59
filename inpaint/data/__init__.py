"""Data: NIfTI subjects, the slice degradation, normalisation and the TorchIO patch queue."""
