"""TFDS builders for the built-in datasets, generated locally (no network, no TensorFlow).

Both are written as ``array_record`` files with ``Tensor`` features
(``tfds.features.Image`` needs TensorFlow to encode) and in generation order
(``disable_shuffling=True``), so a split reads back in the same order on every machine.
"""
from __future__ import annotations

import contextlib
import logging
import random
from typing import Any, Iterator

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

_HERE = epath.Path(__file__)
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0
MNIST1D_SHIFTED_SEED = 1


def digits_split(labels: np.ndarray, test_fraction: float = DIGITS_TEST_FRACTION,
                 seed: int = DIGITS_SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
  """Stratified (train, test) index arrays, each sorted ascending.

  The test set has ``ceil(test_fraction * N)`` examples (1797 digits: 360 test, 1437
  train, as ``sklearn.model_selection.train_test_split`` sizes it). Class c gets
  ``floor(test_fraction * n_c)`` of them, and the rest go one each to the classes with
  the largest remainders ``test_fraction * n_c - floor(...)`` (ties: lower class first).
  Within class c, the test members are the first of its indices permuted by
  ``np.random.default_rng([seed, c])``.
  """
  classes, counts = np.unique(labels, return_counts=True)
  exact = test_fraction * counts
  quota = np.floor(exact).astype(int)
  extra = int(np.ceil(test_fraction * len(labels))) - int(quota.sum())
  quota[np.argsort(-(exact - quota), kind="stable")[:extra]] += 1
  test = []
  for c, q in zip(classes, quota):
    members = np.flatnonzero(labels == c)
    test.append(np.random.default_rng([seed, int(c)]).permutation(members)[:q])
  test_idx = np.sort(np.concatenate(test))
  train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
  return train_idx, test_idx


class _LocalBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A builder whose data is generated in-process: quiet, and located by ``__file__``."""

  code_path = _HERE
  pkg_dir_path = _HERE.parent

  def _log_download_bytes(self) -> None:
    logging.info("preparing %s in %s", self.info.full_name, self.data_dir)

  def _log_download_done(self) -> None:
    logging.info("prepared %s", self.info.full_name)


class Digits(_LocalBuilder):
  """scikit-learn's 8×8 handwritten digits (1797 images, 10 classes).

  Source: ``sklearn.datasets.load_digits``, the test set of the UCI "Optical Recognition
  of Handwritten Digits" data (Alpaydin & Kaynak, 1998). ``image`` holds the stored
  pixel counts 0..16 as uint8. Splits: a stratified 80/20 split, 1437 train / 360 test,
  fixed by ``digits_split`` (seed ``DIGITS_SPLIT_SEED``); examples in sklearn's order.
  """

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "Stratified 80/20 split (1438/359), seed 0.",
                   "1.1.0": "Test size ceil(0.2 N) as in sklearn: 1437/360."}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=("image", "label"),
        disable_shuffling=True,
        homepage="https://archive.ics.uci.edu/dataset/80",
        citation="Alpaydin, E. and Kaynak, C. (1998). Optical Recognition of "
                 "Handwritten Digits. UCI Machine Learning Repository.",
    )

  def _split_generators(self, dl_manager: Any) -> dict[str, Iterator]:
    from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel
    digits = load_digits()
    images = digits.images.astype(np.uint8)[..., None]
    labels = digits.target.astype(np.int64)
    train_idx, test_idx = digits_split(labels)
    return {
        "train": self._generate_examples(images, labels, train_idx),
        "test": self._generate_examples(images, labels, test_idx),
    }

  def _generate_examples(self, images: np.ndarray, labels: np.ndarray,
                         indices: np.ndarray) -> Iterator[tuple[int, dict]]:
    for i in indices:
      yield int(i), {"image": images[i], "label": int(labels[i])}


def mnist1d_args(config: str = "default") -> dict[str, Any]:
  """The ``mnist1d`` generator arguments of a ``Mnist1d`` config."""
  from mnist1d.data import get_dataset_args  # pylint: disable=import-outside-toplevel
  args = get_dataset_args(as_dict=True)
  if config == "shifted":
    args.update(corr_noise_scale=2 * args["corr_noise_scale"],
                shear_scale=2 * args["shear_scale"], seed=MNIST1D_SHIFTED_SEED)
  elif config != "default":
    raise ValueError(f"unknown mnist1d config {config!r}: use 'default' or 'shifted'")
  return args


@contextlib.contextmanager
def _global_rng_restored() -> Iterator[None]:
  """Restores the global ``random``/``np.random`` states (the generator reseeds them)."""
  py_state, np_state = random.getstate(), np.random.get_state()
  try:
    yield
  finally:
    random.setstate(py_state)
    np.random.set_state(np_state)


def make_mnist1d(config: str = "default") -> dict[str, np.ndarray]:
  """The generator's output for a config: ``x``, ``y``, ``x_test``, ``y_test``."""
  from mnist1d.data import make_dataset  # pylint: disable=import-outside-toplevel
  from mnist1d.utils import ObjectView  # pylint: disable=import-outside-toplevel
  with _global_rng_restored():
    data = make_dataset(ObjectView(mnist1d_args(config)))
  return {k: data[k] for k in ("x", "y", "x_test", "y_test")}


class Mnist1d(_LocalBuilder):
  """MNIST-1D: 1-D signals of length 40 from 10 digit templates (4000 train, 1000 test).

  Source: Greydanus & Kobak, "Scaling Down Deep Learning with MNIST-1D" (ICML 2024;
  arXiv:2011.14439, 2020), generated with ``mnist1d.data.make_dataset`` and stored as
  float32, in the generator's order. Configs: ``default`` (the generator's default
  arguments, seed 42) and ``shifted`` (correlated-noise and shear scales doubled,
  seed ``MNIST1D_SHIFTED_SEED``), a distribution-shifted copy for transfer experiments.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "mnist1d generator 0.0.2, default and shifted configs."}
  BUILDER_CONFIGS = [
      tfds.core.BuilderConfig(name="default",
                              description="The generator's default arguments."),
      tfds.core.BuilderConfig(
          name="shifted",
          description="corr_noise_scale and shear_scale doubled, seed "
                      f"{MNIST1D_SHIFTED_SEED}."),
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.__doc__,
        features=tfds.features.FeaturesDict({
            "x": tfds.features.Tensor(shape=(40,), dtype=np.float32),
            "label": tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=("x", "label"),
        disable_shuffling=True,
        homepage="https://github.com/greydanus/mnist1d",
        citation="Greydanus, S. and Kobak, D. (2024). Scaling Down Deep Learning "
                 "with MNIST-1D. ICML. arXiv:2011.14439.",
    )

  def _split_generators(self, dl_manager: Any) -> dict[str, Iterator]:
    data = make_mnist1d(self.builder_config.name)
    return {
        "train": self._generate_examples(data["x"], data["y"]),
        "test": self._generate_examples(data["x_test"], data["y_test"]),
    }

  def _generate_examples(self, x: np.ndarray,
                         y: np.ndarray) -> Iterator[tuple[int, dict]]:
    for i in range(len(y)):
      yield i, {"x": x[i].astype(np.float32), "label": int(y[i])}


BUILDERS: dict[str, type[tfds.core.GeneratorBasedBuilder]] = {
    "digits": Digits, "mnist1d": Mnist1d}
