"""The procedural 3D dataset: an SDF-primitive grammar, captions and labels, a sphere-tracing renderer and
evaluation ground truth (docs/DATA.md)."""
from datasets.procedural.grammar import CATEGORY_NAMES, generate_object
from datasets.procedural.ground_truth import SurfaceSamples, query_albedo, query_sdf, sample_surface
from datasets.procedural.palette import COLOR_NAMES, PALETTE
from datasets.procedural.pipeline import GenerationConfig, render_records
from datasets.procedural.spec import ObjectSpec, PartSpec
from datasets.procedural.tracer import RenderOutput, TracerConfig, render, render_objects

__all__ = ["CATEGORY_NAMES", "COLOR_NAMES", "PALETTE", "GenerationConfig", "ObjectSpec", "PartSpec", "RenderOutput",
           "SurfaceSamples", "TracerConfig", "generate_object", "query_albedo", "query_sdf", "render",
           "render_objects", "render_records", "sample_surface"]
