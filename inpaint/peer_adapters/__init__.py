"""Adapter scripts that ``inpaint.peers`` runs with each peer's own Python (numpy and nibabel only from us)."""
