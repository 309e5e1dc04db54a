"""Pure tensor functions: no Lightning, no files."""

from inputopt.functional.display import DisplayMode, to_display
from inputopt.functional.edge_energy import gaussian_kernel2d, multi_scale_edge_energy
from inputopt.functional.init import row_seed, seeded_noise
from inputopt.functional.sphere import random_sphere_points, sphere_check, sphere_label_change

__all__ = ["DisplayMode", "gaussian_kernel2d", "multi_scale_edge_energy", "random_sphere_points", "row_seed",
           "seeded_noise", "sphere_check",
           "sphere_label_change", "to_display"]
