"""Pure tensor functions: no Lightning, no files."""

from inputopt.functional.blur import blur_penalty, normalized_blur
from inputopt.functional.color import DEFAULT_COLOR_MATRIX, estimate_color_matrix
from inputopt.functional.display import DisplayMode, to_display
from inputopt.functional.edge_energy import gaussian_kernel2d, multi_scale_edge_energy
from inputopt.functional.fooling import fooled, fooling_rate
from inputopt.functional.init import row_uniform, seeded_noise
from inputopt.functional.lp_norm import lp_norm
from inputopt.functional.magnitude import default_magnitude, estimate_magnitude, resize_magnitude
from inputopt.functional.plausibility import plausibility_distance
from inputopt.functional.patch import disc_mask, paste_patch, patch_placements
from inputopt.functional.projection import lp_norms, project_lp_ball
from inputopt.functional.random import RowRandom, register_stream
from inputopt.functional.receptive_field import ReceptiveField, crop_box, receptive_field
from inputopt.functional.sphere import random_sphere_points, sphere_check, sphere_label_change, sphere_label_changes
from inputopt.functional.total_variation import total_variation

__all__ = ["DEFAULT_COLOR_MATRIX", "DisplayMode", "ReceptiveField", "RowRandom", "blur_penalty", "crop_box",
           "default_magnitude", "estimate_color_matrix",
           "estimate_magnitude", "fooled", "fooling_rate", "gaussian_kernel2d", "lp_norm", "lp_norms",
           "multi_scale_edge_energy", "disc_mask", "normalized_blur", "paste_patch", "patch_placements",
           "plausibility_distance", "project_lp_ball", "random_sphere_points", "receptive_field", "register_stream",
           "resize_magnitude",
           "row_uniform", "seeded_noise", "sphere_check", "sphere_label_change", "sphere_label_changes",
           "to_display", "total_variation"]
