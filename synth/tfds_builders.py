"""TFDS builders for the synthetic families, written as ArrayRecord (read them with
`synth.io.grain_dataset`, which needs no TensorFlow).

One builder per family (`synth_maze`, `synth_static`, `synth_multiview`); a `SynthBuilderConfig`
holds everything that decides the bytes: the seed, the number of samples per split, the
trajectory kind, the family config and the drawing backend. Every example has

    id      Text     the sample id ("maze-train-s0-0000012")
    family  Text
    header  Text     JSON of every non-pixel field of the Sample (question, options, answer,
                     ground-truth boxes and lines, meta, conversation, ...)
    images  Sequence(Image, PNG)   input images, then the images the trajectory drew

Building needs `tensorflow-datasets` *and* TensorFlow (`tensorflow-cpu`): TFDS encodes Image
features through TensorFlow.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Callable

import numpy as np
import tensorflow_datasets as tfds

from drawing_ops.protocol import DEFAULT_TEMPLATE, PromptTemplate
from synth import families
from synth.records import canonical_json

VERSION = tfds.core.Version("1.0.0")


@dataclasses.dataclass(eq=False)
class SynthBuilderConfig(tfds.core.BuilderConfig):
    seed: int = 0
    splits: tuple[tuple[str, int], ...] = (("train", 0),)
    trajectory: str = "none"
    family_config: str = "{}"     # JSON of the family's config dataclass
    backend: str = "numpy"
    prompt_template: str = ""     # JSON of a PromptTemplate's fields; "" = our default wording


def make_config(family: str, seed: int, splits: dict[str, int], trajectory: str, config=None,
                backend: str = "numpy", template: PromptTemplate = DEFAULT_TEMPLATE) -> SynthBuilderConfig:
    config = config if config is not None else families.default_config(family)
    return SynthBuilderConfig(
        name=f"{trajectory}_seed{seed}",
        version=VERSION,
        description=f"{family} tasks, trajectories={trajectory}, seed={seed}",
        seed=seed, splits=tuple(splits.items()), trajectory=trajectory,
        family_config=canonical_json(families.config_to_json(config)), backend=backend,
        prompt_template="" if template == DEFAULT_TEMPLATE else canonical_json(template.to_dict()),
    )


class _SynthBuilder(tfds.core.GeneratorBasedBuilder):
    FAMILY = ""
    VERSION = VERSION
    RELEASE_NOTES = {"1.0.0": "First release."}
    progress: Callable | None = None      # set by the CLI: progress(sample, split) once per sample

    # TFDS looks for checksum files next to the builder's source; its package-resource lookup
    # needs the `importlib_resources` backport, so point it at this file directly instead.
    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        from etils import epath

        return epath.Path(__file__)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"Synthetic {self.FAMILY} spatial tasks with exact ground truth and drawing trajectories "
                        "in the ViLaSR tool-call protocol.",
            features=tfds.features.FeaturesDict({
                "id": tfds.features.Text(),
                "family": tfds.features.Text(),
                "header": tfds.features.Text(),
                "images": tfds.features.Sequence(tfds.features.Image(shape=(None, None, 3), encoding_format="png")),
            }),
            supervised_keys=None,
        )

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(split, n) for split, n in self.builder_config.splits if n > 0}

    def _generate_examples(self, split: str, n: int):
        cfg = self.builder_config
        family_config = families.config_from_json(self.FAMILY, json.loads(cfg.family_config))
        template = (PromptTemplate.from_dict(json.loads(cfg.prompt_template)) if cfg.prompt_template
                    else DEFAULT_TEMPLATE)
        for index in range(n):
            sample = families.make_sample(self.FAMILY, cfg.seed, index, config=family_config,
                                          trajectory=cfg.trajectory, split=split, backend=cfg.backend,
                                          template=template)
            yield sample.id, sample_to_example(sample)
            if self.progress is not None:
                self.progress(sample, split)


def sample_to_example(sample) -> dict:
    return {"id": sample.id, "family": sample.family, "header": json.dumps(sample.header(), ensure_ascii=False),
            "images": [np.asarray(im, np.uint8) for im in sample.all_images]}


class SynthMaze(_SynthBuilder):
    """Maze tasks (ViLaSR's maze geometry)."""

    FAMILY = "maze"


class SynthStatic(_SynthBuilder):
    """Static 2D scenes."""

    FAMILY = "static"


class SynthMultiview(_SynthBuilder):
    """Multi-view 3D scenes."""

    FAMILY = "multiview"


BUILDERS = {"maze": SynthMaze, "static": SynthStatic, "multiview": SynthMultiview}


def build(family: str, data_dir, *, seed: int, splits: dict[str, int], trajectory: str, config=None,
          backend: str = "numpy", progress: Callable | None = None,
          template: PromptTemplate = DEFAULT_TEMPLATE) -> str:
    """Generate and write the dataset under `data_dir`; returns its TFDS name ("synth_maze/cold_seed0")."""
    tfds.disable_progress_bar()
    absl_log = logging.getLogger("absl")
    level = absl_log.level
    absl_log.setLevel(logging.ERROR)   # TFDS warns about "custom" configs; ours are all custom by design
    try:
        cls = BUILDERS[family]
        builder_config = make_config(family, seed, splits, trajectory, config, backend, template)
        builder = cls(config=builder_config, data_dir=str(data_dir), file_format="array_record")
        builder.progress = progress
        builder.download_and_prepare(download_dir=str(data_dir) + "/.downloads")
    finally:
        absl_log.setLevel(level)
    return f"{builder.name}/{builder_config.name}"
