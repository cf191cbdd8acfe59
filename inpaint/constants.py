"""Names shared across the framework: subject keys and metric keys (one place, as torchio's constants.py)."""

TARGET = "target"  # the full reference volume (ScalarImage)
INPUT = "input"  # the degraded volume: acquired slices + interpolation (ScalarImage)
KNOWN = "known"  # 1 on acquired slices, 0 elsewhere (LabelMap)
MASK = "mask"  # brain mask (LabelMap)
SAMPLING = "sampling"  # where patch centres may fall (LabelMap), derived from the mask

# Attributes stored on a tio.Subject
SCALE = "scale"  # (low, high): x_norm = 2 (x - low) / (high - low) - 1, from acquired slices only
SLICE_AXIS = "slice_axis"  # axis of the file's voxel array that is S/I (before any permutation)
INTERVAL = "interval"
OFFSET = "offset"
NAME = "name"
PATH = "path"
