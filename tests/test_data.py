"""Stored datasets (built-in TFDS builders, offline real datasets) and batch iteration."""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds
from mnist1d.data import get_dataset_args, make_dataset
from sklearn.datasets import load_digits

from jaxrep.data import (BUILTIN, ArrayDataset, BatchIterator, DatasetMissingError, load,
                         process_shard, source)
from jaxrep.data import builders, stored


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def test_builtin_names():
  assert BUILTIN == ("digits", "mnist1d")


def test_default_data_dir_follows_env(monkeypatch, tmp_path):
  monkeypatch.setenv("JAXREP_DATA_DIR", str(tmp_path))
  assert stored.default_data_dir() == str(tmp_path)
  monkeypatch.delenv("JAXREP_DATA_DIR")
  assert stored.default_data_dir().endswith(".cache/jaxrep/tensorflow_datasets")


@pytest.mark.reference
def test_digits_matches_sklearn(data_dir):
  train, test = load("digits", "train", data_dir), load("digits", "test", data_dir)
  assert train.x.shape == (1437, 8, 8, 1) and test.x.shape == (360, 8, 8, 1)
  assert len(train) + len(test) == 1797
  assert train.x.dtype == np.float32 and train.y.dtype == np.int32
  assert train.num_classes == 10
  assert train.x.min() == 0 and train.x.max() == 16
  assert set(np.unique(train.y)) == set(range(10)) == set(np.unique(test.y))
  digits = load_digits()
  train_idx, test_idx = builders.digits_split(digits.target)
  assert not set(train_idx) & set(test_idx)
  np.testing.assert_array_equal(train.x[..., 0], digits.images[train_idx])
  np.testing.assert_array_equal(train.y, digits.target[train_idx])
  np.testing.assert_array_equal(test.x[..., 0], digits.images[test_idx])
  np.testing.assert_array_equal(test.y, digits.target[test_idx])


def test_digits_split_is_stratified_and_pinned():
  labels = load_digits().target
  _, test_idx = builders.digits_split(labels)
  per_class = np.bincount(labels[test_idx])
  assert per_class.sum() == 360
  assert (np.abs(per_class - 0.2 * np.bincount(labels)) < 1).all()
  assert test_idx[:5].tolist() == [1, 3, 4, 6, 11] and int(test_idx.sum()) == 334028
  rng = np.random.default_rng(0)
  for _ in range(5):
    toy = rng.integers(0, 4, size=rng.integers(20, 60))
    train_idx, test_idx = builders.digits_split(toy, test_fraction=0.3, seed=1)
    assert len(test_idx) == int(np.ceil(0.3 * len(toy)))
    assert (np.abs(np.bincount(toy[test_idx], minlength=4)
                   - 0.3 * np.bincount(toy, minlength=4)) < 1).all()
    np.testing.assert_array_equal(np.sort(np.concatenate([train_idx, test_idx])),
                                  np.arange(len(toy)))


def test_mnist1d_matches_generator(data_dir):
  train, test = load("mnist1d", "train", data_dir), load("mnist1d", "test", data_dir)
  assert train.x.shape == (4000, 40) and test.x.shape == (1000, 40)
  assert train.x.dtype == np.float32 and train.num_classes == 10
  reference = make_dataset(get_dataset_args())
  np.testing.assert_array_equal(train.x, reference["x"].astype(np.float32))
  np.testing.assert_array_equal(train.y, reference["y"])
  np.testing.assert_array_equal(test.x, reference["x_test"].astype(np.float32))
  np.testing.assert_array_equal(test.y, reference["y_test"])


def test_mnist1d_shifted_config(data_dir, monkeypatch):
  generated = []

  def recording(config):
    before = np.random.get_state()[1].copy()
    generated.append(make_mnist1d(config))
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    return generated[-1]

  make_mnist1d = builders.make_mnist1d
  monkeypatch.setattr(builders, "make_mnist1d", recording)
  shifted = load("mnist1d/shifted", "train", data_dir)
  assert len(generated) == 1 and shifted.x.shape == (4000, 40)
  np.testing.assert_array_equal(shifted.x, generated[0]["x"].astype(np.float32))
  np.testing.assert_array_equal(shifted.y, generated[0]["y"])
  assert not np.allclose(shifted.x, load("mnist1d", "train", data_dir).x)
  args = builders.mnist1d_args("shifted")
  defaults = get_dataset_args()
  assert args["corr_noise_scale"] == 2 * defaults.corr_noise_scale
  assert args["shear_scale"] == 2 * defaults.shear_scale
  assert args["seed"] != defaults.seed
  assert {k: v for k, v in args.items()
          if k not in ("corr_noise_scale", "shear_scale", "seed")} == {
              k: v for k, v in vars(defaults).items()
              if k not in ("corr_noise_scale", "shear_scale", "seed")}


def test_second_load_reuses_prepared_data(data_dir, monkeypatch):
  load("mnist1d", "train", data_dir)
  version_dir = os.path.join(data_dir, "mnist1d", "default", "1.0.0")
  stamp = os.stat(version_dir).st_mtime_ns

  def regenerate(*_):
    raise AssertionError("regenerated a prepared dataset")

  monkeypatch.setattr(builders, "make_mnist1d", regenerate)
  start = time.perf_counter()
  cached = load("mnist1d", "train", data_dir)
  assert time.perf_counter() - start < 0.01
  assert load("mnist1d", "train", data_dir + "/") is cached
  stored.clear_cache()
  start = time.perf_counter()
  again = load("mnist1d", "train", data_dir)
  assert time.perf_counter() - start < 2.0
  assert again is not cached
  np.testing.assert_array_equal(again.x, cached.x)
  assert os.stat(version_dir).st_mtime_ns == stamp


def test_loaded_arrays_are_read_only(data_dir):
  ds = load("digits", "test", data_dir)
  with pytest.raises(ValueError, match="read-only"):
    ds.x[0] = 0
  with pytest.raises(ValueError, match="read-only"):
    ds.y[0] = 0


def test_concurrent_preparation(tmp_path):
  code = ("import sys; from jaxrep.data import load; "
          "print(float(load('digits', data_dir=sys.argv[1]).x.sum()))")
  procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for _ in range(2)]
  outs = [p.communicate(timeout=120) for p in procs]
  assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
  assert outs[0][0] == outs[1][0]
  assert os.listdir(tmp_path / "digits") == [str(builders.Digits.VERSION)]


def test_builtin_errors_are_one_line(data_dir):
  with pytest.raises(ValueError, match=r"available splits are \['test', 'train'\]") as e:
    load("digits", "valid", data_dir)
  assert "\n" not in str(e.value)
  with pytest.raises(ValueError, match="mnist1d/default, mnist1d/shifted"):
    load("mnist1d/nope", "train", data_dir)


def test_real_dataset_through_mock(tmp_path):
  # load() checks the files before calling TFDS; mock_data then serves the examples.
  (tmp_path / "mnist" / "3.0.1").mkdir(parents=True)
  (tmp_path / "mnist" / "3.0.1" / "dataset_info.json").write_text("{}")
  with tfds.testing.mock_data(num_examples=12):
    ds = load("mnist", "train", data_dir=str(tmp_path))
    assert len(source("mnist", "test", data_dir=str(tmp_path))) == 12
  assert ds.x.shape == (12, 28, 28, 1) and ds.x.dtype == np.uint8
  assert ds.y.shape == (12,) and ds.num_classes == 10
  assert ((0 <= ds.y) & (ds.y < 10)).all()


def test_missing_real_dataset_fails_fast(tmp_path):
  start = time.perf_counter()
  with pytest.raises(DatasetMissingError) as e:
    load("cifar10", data_dir=str(tmp_path))
  assert time.perf_counter() - start < 1.0
  message = str(e.value)
  assert "\n" not in message and "'cifar10'" in message and str(tmp_path) in message
  assert f"tfds build cifar10 --data_dir {tmp_path}" in message
  assert isinstance(e.value, ValueError)
  assert not list(tmp_path.iterdir())


def test_other_prepared_version_is_named(tmp_path):
  (tmp_path / "mnist" / "1.0.0").mkdir(parents=True)
  (tmp_path / "mnist" / "1.0.0" / "dataset_info.json").write_text("{}")
  (tmp_path / "mnist" / "incomplete.AB12CD_3.0.1").mkdir()
  (tmp_path / "mnist" / "incomplete.AB12CD_3.0.1" / "dataset_info.json").write_text("{}")
  with pytest.raises(DatasetMissingError, match=r"found mnist/1\.0\.0\): .*'mnist:1\.0\.0'") as e:
    load("mnist", data_dir=str(tmp_path))
  assert "\n" not in str(e.value)


def _ids(n):
  return ArrayDataset(x=np.arange(n, dtype=np.float32)[:, None],
                      y=np.arange(n, dtype=np.int32), num_classes=None)


def _take(it, k):
  return [next(it)["y"] for _ in range(k)]


def test_iterator_is_a_function_of_the_seed():
  ds = _ids(50)
  a, b = _take(BatchIterator(ds, 8, seed=3), 10), _take(BatchIterator(ds, 8, seed=3), 10)
  c = _take(BatchIterator(ds, 8, seed=4), 10)
  assert all((x == y).all() for x, y in zip(a, b))
  assert not all((x == y).all() for x, y in zip(a, c))
  ordered = _take(BatchIterator(ds, 10, seed=3, shuffle=False), 5)
  np.testing.assert_array_equal(np.concatenate(ordered), np.arange(50))


def test_iterator_epochs_cover_every_example_once():
  ds = _ids(10)
  it = BatchIterator(ds, 4, seed=0, drop_remainder=False)
  assert it.steps_per_epoch == 3
  for _ in range(3):
    batches = _take(it, 3)
    assert [len(b) for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(10))
  it = BatchIterator(ds, 4, seed=0)
  assert it.steps_per_epoch == 2
  epoch0, epoch1 = np.concatenate(_take(it, 2)), np.concatenate(_take(it, 2))
  assert len(set(epoch0)) == 8 and len(set(epoch1)) == 8
  assert not (epoch0 == epoch1).all()
  batch = next(BatchIterator(ds, 4, seed=0))
  np.testing.assert_array_equal(batch["x"][:, 0], batch["y"])


@pytest.mark.parametrize("drop_remainder", [True, False])
@pytest.mark.parametrize("stop", [2, 4, 6])
def test_iterator_resumes_exactly(drop_remainder, stop):
  ds = _ids(10)
  stream = _take(BatchIterator(ds, 3, seed=7, drop_remainder=drop_remainder), stop + 7)
  first = BatchIterator(ds, 3, seed=7, drop_remainder=drop_remainder)
  _take(first, stop)
  state = json.loads(json.dumps(first.get_state()))
  assert set(state) == {"epoch", "position", "seed"}
  resumed = BatchIterator(ds, 3, seed=7, drop_remainder=drop_remainder, state=state)
  for expected, got in zip(stream[stop:], _take(resumed, 7)):
    np.testing.assert_array_equal(expected, got)
  other = BatchIterator(ds, 3, seed=7, drop_remainder=drop_remainder)
  other.set_state(state)
  np.testing.assert_array_equal(next(other)["y"], stream[stop])


def test_iterator_validates():
  ds = _ids(10)
  for size in (0, -1, 11):
    with pytest.raises(ValueError, match=r"batch_size must be in \[1, 10\]") as e:
      BatchIterator(ds, size, seed=0)
    assert "\n" not in str(e.value)
  with pytest.raises(ValueError, match="seed 1"):
    BatchIterator(ds, 2, seed=0, state={"epoch": 0, "position": 0, "seed": 1})
  with pytest.raises(ValueError, match="equal shards"):
    BatchIterator(ds, 6, seed=0, shard=(0, 4))
  with pytest.raises(ValueError, match="drop_remainder"):
    BatchIterator(ds, 4, seed=0, shard=(0, 2), drop_remainder=False)


@pytest.mark.parametrize("count", [2, 4])
def test_shards_reassemble_the_global_batch(count):
  ds = _ids(30)
  whole = BatchIterator(ds, 8, seed=1)
  global_batches = [next(whole) for _ in range(6)]
  shards = [BatchIterator(ds, 8, seed=1, shard=(i, count)) for i in range(count)]
  for batch in global_batches:
    parts = [next(it) for it in shards]
    assert all(len(p["y"]) == 8 // count for p in parts)
    np.testing.assert_array_equal(np.concatenate([p["y"] for p in parts]), batch["y"])
    np.testing.assert_array_equal(
        np.concatenate([process_shard(batch, i, count)["x"] for i in range(count)]),
        batch["x"])
