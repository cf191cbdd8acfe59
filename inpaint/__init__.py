"""inpaint: recover full 3D T1 brain MR volumes from sparse axial slices."""

__version__ = "0.1.0"
