"""Bounds that cnnkit checks before it allocates anything: one home for each.

No real run comes near them; a crafted file or a typo that does would otherwise ask for
gigabytes (torchinfo builds a real float32 input: 3x100000x100000 asked for 120 GB).
"""

MAX_CHANNELS = 4  # grey, RGB, RGBA: what an image can hold
MAX_SIDE = 8192  # pixels along one side of a decoded image or a model input
MAX_PIXELS = 4096 * 4096  # pixels of one model input (64 MiB a channel in float32)
MAX_CLASSES = 100_000  # a head far past ImageNet-21k's 21,841 classes
