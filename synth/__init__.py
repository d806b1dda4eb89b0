"""synth: synthetic spatial tasks with exact ground truth, drawing trajectories in the ViLaSR
tool-call protocol, and dataset I/O.

    from synth import make_sample, iter_samples, default_config
    s = make_sample("maze", seed=0, index=3, trajectory="reflective")
    s.question, s.options, s.answer, s.images, s.conversation, s.drawn_images

Families: `maze` (synth.maze), `static` (synth.static_scene), `multiview` (synth.multiview).
Trajectories are written by synth.trajectory; files by synth.io (sharegpt, benchmark JSON, Grain
reader) and synth.tfds_builders (TFDS ArrayRecord; needs TensorFlow to write, not to read).
Command line: `vilasr synth ...` (synth.cli); examples: `vilasr synth gallery --out DIR`.
"""

from synth.families import default_config, iter_samples, make_sample
from synth.records import FAMILIES, TRAJECTORY_KINDS, Sample, dataset_digest

__all__ = ["FAMILIES", "TRAJECTORY_KINDS", "Sample", "dataset_digest", "default_config", "iter_samples",
           "make_sample"]
