"""Names shared across the framework: subject keys and metric keys (one place, as torchio's constants.py)."""

TARGET = "target"  # the full reference volume (ScalarImage)
INPUT = "input"  # the degraded volume: acquired slices + interpolation (ScalarImage)
KNOWN = "known"  # 1 on acquired slices, 0 elsewhere (LabelMap)
MASK = "mask"  # brain mask (LabelMap)
SAMPLING = "sampling"  # where patch centres may fall (LabelMap), derived from the mask
ACQUIRED = "acquired"  # acquired-slice grid: the acquired slices only, (1, X, Y, K) (ScalarImage)
GAPS = "gaps"  # acquired-slice grid: channel m = the reference m slices after each acquired one, (S, X, Y, K)

# Attributes stored on a tio.Subject
SCALE = "scale"  # (low, high): x_norm = 2 (x - low) / (high - low) - 1, from acquired slices only
SLICE_AXIS = "slice_axis"  # axis of the file's voxel array that is S/I (before any permutation)
INTERVAL = "interval"
OFFSET = "offset"
THICK = "thick"  # acquired slices are slab means (bool)
NAME = "name"
MASK_GIVEN = "mask_given"  # the brain mask came from a file (else it is reference > 0)
PATH = "path"
