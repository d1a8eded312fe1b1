"""Saving and loading a model: one ``.npz`` file of plain arrays, no pickles, written atomically.

The file holds
    format_version      2
    architecture        JSON: per layer, its type, settings and the shapes of its params and state
    param.<i>.<name>    every parameter of layer i (``Net.state_dict()`` names)
    state.<i>.<name>    every state array of layer i (BatchNorm's running statistics)
Version 1 files (parameters only) still load into a net whose layers keep no state.
"""
import json
from pathlib import Path

import numpy as np

from .errors import ConfigError, DataError
from .files import atomic_write
from .net import layer_state

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)


def save(model, path):
    """Write the net's parameters, state, architecture and the format version to ``path``
    (.npz added if missing) atomically: a crash mid-save leaves any previous file intact."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    if not model.net.params:
        raise ConfigError("Model.save: the net has no parameters yet (lazy layers are built "
                          "on the first forward); train or predict once before saving")
    if not path.parent.is_dir():
        raise DataError(f"Model.save: folder {path.parent} does not exist; create it first, "
                        f"e.g. os.makedirs({str(path.parent)!r})")
    arrays = model.net.state_dict()
    arrays["format_version"] = np.array(FORMAT_VERSION)
    arrays["architecture"] = np.array(json.dumps(model.net.architecture()))
    with atomic_write(path) as f:
        np.savez(f, **arrays)
    return path


def load(model, path):
    """Load what ``save`` wrote into ``model.net`` and reset the optimizer. Refuses a file from
    a different architecture, or one missing a layer's state, and then changes nothing."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"Model.load: {path} does not exist")
    data, version, saved = _read(path)
    if version not in READABLE_VERSIONS:
        raise DataError(f"Model.load: {path} has format version {version}, this tinynn "
                        f"reads versions {' and '.join(map(str, READABLE_VERSIONS))}")
    _check_architecture(path, saved, model.net.architecture())
    per_layer = [_arrays(path, data, i, desc) for i, desc in enumerate(saved)]
    _adopt(path, model.net.layers, per_layer)
    model.optimizer.reset()
    return model


def _read(path):
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {key: f[key] for key in f.files}
        version = int(data["format_version"])
        saved = json.loads(str(data["architecture"]))
        if not (isinstance(saved, list) and all(
                isinstance(d, dict) and isinstance(d.get("params"), dict)
                and isinstance(d.get("state", {}), dict) for d in saved)):
            raise ValueError("its architecture description is malformed")
    except Exception as e:
        raise DataError(f"Model.load: {path} is not a readable tinynn model file ({e}); "
                        "was it written by Model.save?") from e
    return data, version, saved


def _settings(desc):
    return {k: v for k, v in desc.items() if k not in ("params", "state")}


def _check_architecture(path, saved, current):
    problem = None
    if len(saved) != len(current):
        problem = f"the file has {len(saved)} layers, this net has {len(current)}"
    for i, (s, c) in enumerate(zip(saved, current)):
        if problem:
            break
        if _settings(s) != _settings(c) or (c["params"] and c["params"] != s["params"]):
            problem = f"layer {i}: the file has {s}, this net has {c}"
    if problem:
        raise DataError(f"Model.load: {path} was saved from a different architecture: {problem}")


def _arrays(path, data, i, desc):
    """Layer i's (params, state) from the file; DataError if an array is missing, has a shape
    other than its description, or holds non-float or non-finite values."""
    params, state = {}, {}
    for kind, shapes, into in (("param", desc["params"], params),
                               ("state", desc.get("state", {}), state)):
        for name, shape in shapes.items():
            key = f"{kind}.{i}.{name}"
            value = data.get(key)
            if value is None or list(value.shape) != list(shape) or value.dtype.kind != "f" \
                    or not np.isfinite(value).all():
                what = "missing" if value is None else f"{value.dtype} of shape {value.shape}"
                raise DataError(f"Model.load: {path} is damaged: {key} should be finite floats "
                                f"of shape {tuple(shape)}, found {what}; save the model again")
            into[name] = value
    return params, state


def _adopt(path, layers, per_layer):
    """Give every layer its arrays, all or nothing: a layer that keeps state (after its
    parameters are loaded) must find exactly that state in the file."""
    before = [(layer.params, layer.grads, layer_state(layer)) for layer in layers]
    try:
        for i, (layer, (params, state)) in enumerate(zip(layers, per_layer)):
            layer.load_params(params)
            if set(state) != set(layer_state(layer)):
                missing = sorted(set(layer_state(layer)) - set(state)) or "none"
                raise DataError(f"Model.load: {path} lacks the state of layer {i} "
                                f"({type(layer).__name__}): it holds {sorted(state)}, the layer "
                                f"keeps {sorted(layer_state(layer))} (missing: {missing}). A "
                                "version 1 file has parameters only: train and save again")
            if state:
                layer.load_state(state)
    except BaseException:
        for layer, (params, grads, state) in zip(layers, before):
            layer.params, layer.grads, layer.state = params, grads, state
        raise
