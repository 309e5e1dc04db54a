"""The atlas of a network: every unit of some layers, its visualizations, dataset examples and quality
metrics, as a static web site (``inputopt atlas --config configs/digits_atlas.yaml``)."""

from inputopt.atlas.config import AtlasExamples, AtlasLayer, AtlasMetrics, AtlasVisualization, layer_slug
from inputopt.atlas.run import Atlas, atlas_main, marked_crop
from inputopt.atlas.site import build_site, load_atlas

__all__ = ["Atlas", "AtlasExamples", "AtlasLayer", "AtlasMetrics", "AtlasVisualization", "atlas_main", "build_site",
           "layer_slug", "load_atlas", "marked_crop"]
