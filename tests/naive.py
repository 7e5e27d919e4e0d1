"""Plain-loop reference versions of the fast ops, used only as test oracles.

Every function here works on NumPy arrays with explicit Python loops over output
positions, so it is obviously right and obviously slow. Sections are added per op family.
"""

import numpy as np  # noqa: F401
