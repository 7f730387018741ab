"""The names of calibration's fl rules (:mod:`radix.calibrate` defines what they do).

Kept apart from the calibration code, which needs torch, so that the command line's parser,
built on the board as well, can offer them as choices.
"""

ACTIVATION_RULES = ("greedy", "mse", "maxabs")
WEIGHT_RULES = ("l1", "mse", "maxabs")
