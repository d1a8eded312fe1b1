"""Saving and loading a model: one ``.npz`` file of plain arrays, no pickles, written atomically.

The file holds
    format_version      3
    tinynn_version      the tinynn that wrote it, e.g. "0.1.0"
    architecture        JSON: per layer, its type, settings, dtype and the shapes of its
                        params and state (``Net.architecture()``); a nested Net as its type
                        and its list of layers, a Residual as its type and its block
    param.<i>.<name>    every parameter of layer i (``Net.state_dict()`` names); a layer
                        inside a nested net has the path of indices as i ("2.1")
    state.<i>.<name>    every state array of layer i (BatchNorm's running statistics)
Every older file still loads: version 2 lacks tinynn_version and the dtypes; version 1 also
lacks the state, so it loads only into a net whose layers keep none. Nesting (a GPT's blocks)
needed no new version: a flat net's file is exactly what it was, and only a net with nested
blocks writes the nested descriptions, which no older tinynn could have built anyway.

Which file fits which net: the same number of layers, each of the same type, with params and
state of the same shapes (an unbuilt net takes its shapes from the file), and the same
settings. The settings compared are what ``layer.config()`` reports, as they change what the
model computes, often in ways shapes cannot show or that an unbuilt net has no shapes for:
Dense's units and bias; Conv2D's filters, kernel size, stride, padding, dilation and bias; a
pool's size and stride; LeakyReLU's alpha; BatchNorm's eps. Not compared:
- settings that change only training (``TRAINING_ONLY``: Dropout's p, BatchNorm's
  momentum): the net keeps its own;
- the dtype: the model takes the file's (below).
A setting the file lacks (a later tinynn added it to the layer) counts as the default of the
constructor argument of that name, so a new setting whose default keeps the old behaviour
leaves older files readable; a setting that differs in value is refused.

The dtype rule: loading gives the model the dtype the file was saved in. A float64 file makes
a float64 model (parameters, state, and so ``Model.dtype`` and what ``predict`` returns), even
when the net was built, or declared, float32; and a float32 file makes a float32 model.
"""
import inspect
import json
from pathlib import Path

import numpy as np

from . import __version__
from .errors import ConfigError, DataError
from .files import atomic_write
from .net import join_path, leaf_layers, layer_state

FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
TRAINING_ONLY = {"Dropout": ("p",), "BatchNorm": ("momentum",)}


def save(model, path):
    """Write the net's parameters, state, architecture, the format version and tinynn's
    version to ``path`` (.npz added if missing) atomically: a crash mid-save leaves any
    previous file intact."""
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
    arrays["tinynn_version"] = np.array(__version__)
    arrays["architecture"] = np.array(json.dumps(model.net.architecture()))
    with atomic_write(path) as f:
        np.savez(f, **arrays)
    return path


def load(model, path):
    """Load what ``save`` wrote into ``model.net``, in the file's dtype, and reset the
    optimizer. Refuses a file from a different architecture, or one missing a layer's state,
    and then changes nothing."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"Model.load: {path} does not exist")
    data, version, saved = _read(path)
    if version not in READABLE_VERSIONS:
        writer = (f" (written by tinynn {data['tinynn_version']})" if "tinynn_version" in data
                  else "")
        raise DataError(f"Model.load: {path} has format version {version}{writer}, this "
                        f"tinynn ({__version__}) reads versions "
                        f"{', '.join(map(str, READABLE_VERSIONS[:-1]))} and "
                        f"{READABLE_VERSIONS[-1]}; hint: upgrade tinynn")
    _check_architecture(path, saved, model.net)
    leaves = list(leaf_layers(model.net))
    per_layer = [_arrays(path, data, where, desc)
                 for where, desc in _leaf_descriptions({"type": "Net", "layers": saved})]
    _adopt(path, leaves, per_layer)
    model.optimizer.reset()
    return model


def _read(path):
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {key: f[key] for key in f.files}
        version = int(data["format_version"])
        saved = json.loads(str(data["architecture"]))
        if not (isinstance(saved, list) and all(map(_well_formed, saved))):
            raise ValueError("its architecture description is malformed")
    except Exception as e:
        raise DataError(f"Model.load: {path} is not a readable tinynn model file ({e}); "
                        "was it written by Model.save?") from e
    return data, version, saved


def _well_formed(desc):
    """A layer's description: a dict with a type and either params (and state) of its own,
    the layers of a nested Net, or the block of a Residual."""
    if not (isinstance(desc, dict) and isinstance(desc.get("type"), str)):
        return False
    if isinstance(desc.get("layers"), list):
        return all(map(_well_formed, desc["layers"]))
    if "block" in desc:
        return _well_formed(desc["block"])
    return isinstance(desc.get("params"), dict) and isinstance(desc.get("state", {}), dict)


def _children(desc):
    """[(path step, description)] of a container's description (as ``sublayers()`` names
    them), None for a layer that is no container."""
    if isinstance(desc.get("layers"), list):
        return [(str(i), d) for i, d in enumerate(desc["layers"])]
    if "block" in desc:
        return [("", desc["block"])]
    return None


def _leaf_descriptions(desc, where=""):
    """(path, description) of every layer that is no container, in ``leaf_layers`` order."""
    children = _children(desc)
    if children is None:
        yield where, desc
        return
    for step, child in children:
        yield from _leaf_descriptions(child, join_path(where, step))


def _check_architecture(path, saved, net):
    """DataError naming the first layer where the file's description differs from the net's."""
    problem = _architecture_difference(saved, net)
    if problem:
        raise DataError(f"Model.load: {path} was saved from a different architecture: {problem}")


def _architecture_difference(saved, net):
    return _difference({"type": "Net", "layers": saved},
                       {"type": "Net", "layers": net.architecture()}, net, "")


def _difference(in_file, here, layer, where):
    """How the description ``in_file`` differs from ``here`` (of ``layer``, at path
    ``where``), or None; a container is compared layer by layer inside."""
    children = _children(here)
    if in_file["type"] != here["type"] or children is None:
        difference = _layer_difference(in_file, here, layer)
        return difference and f"layer {where} ({here['type']}): {difference}"
    theirs = _children(in_file)
    if len(theirs) != len(children):
        inside = f"inside layer {where} ({here['type']}), " if where else ""
        return f"{inside}the file has {len(theirs)} layers, this net has {len(children)}"
    for (step, a), (_, b), (_, child) in zip(theirs, children, layer.sublayers()):
        difference = _difference(a, b, child, join_path(where, step))
        if difference:
            return difference
    return None


def _layer_difference(in_file, here, layer):
    """How a layer's description in the file differs from this net's layer, or None: its
    type, then its settings, then (once this layer is built) its shapes."""
    if in_file["type"] != here["type"]:
        return f"the file has a {in_file['type']} layer there, this net has a {here['type']}"
    not_settings = {"type", "dtype", "params", "state", *TRAINING_ONLY.get(here["type"], ())}
    for key in sorted((set(in_file) | set(here)) - not_settings):
        difference = _setting_difference(key, in_file, here, layer)
        if difference:
            return difference
    for kind, what in (("params", "parameters"), ("state", "state")):
        if here[kind] and kind in in_file and in_file[kind] != here[kind]:
            return (f"the file has {what} {_shapes(in_file[kind])}, this net has "
                    f"{_shapes(here[kind])}")
    return None


def _setting_difference(key, in_file, here, layer):
    """How setting ``key`` differs, or None; one the file lacks counts as the default of the
    layer's constructor argument of that name (a later tinynn added the setting)."""
    if key not in here:
        return (f"the file has the setting {key}={in_file[key]!r}, which this tinynn's "
                f"{here['type']} does not know (was the file written by a newer tinynn?)")
    ours = _plain(here[key])
    if key in in_file:
        theirs, why = _plain(in_file[key]), ""
    else:
        theirs, why = _constructor_default(layer, key), " (the default: the file predates it)"
        if theirs is _NO_DEFAULT:
            return f"the file lacks the setting {key}, this net has {key}={ours!r}"
    if theirs != ours:
        return f"the file has {key}={theirs!r}{why}, this net has {key}={ours!r}"
    return None


_NO_DEFAULT = object()


def _constructor_default(layer, key):
    """The default of the constructor argument ``key`` of the layer's class, as config()
    reports values (JSON-plain); ``_NO_DEFAULT`` if there is none."""
    parameter = inspect.signature(type(layer)).parameters.get(key)
    if parameter is None or parameter.default is parameter.empty:
        return _NO_DEFAULT
    return _plain(parameter.default)


def _plain(value):
    """``value`` as it reads back from a file's JSON (a tuple becomes a list)."""
    return json.loads(json.dumps(value, default=str))


def _shapes(shapes):
    return ", ".join(f"{name} {tuple(shape)}" for name, shape in shapes.items()) or "none"


def _arrays(path, data, i, desc):
    """The (params, state) of layer i (its path) from the file; DataError if an array is
    missing, has a shape
    other than its description (or, for a parameter, a dtype other than the layer's, recorded
    since version 3), or holds non-float or non-finite values."""
    params, state = {}, {}
    for kind, shapes, into, dtype in (("param", desc["params"], params, desc.get("dtype")),
                                      ("state", desc.get("state", {}), state, None)):
        for name, shape in shapes.items():
            key = f"{kind}.{i}.{name}"
            value = data.get(key)
            if value is None or list(value.shape) != list(shape) or value.dtype.kind != "f" \
                    or (dtype is not None and value.dtype != dtype) \
                    or not np.isfinite(value).all():
                what = "missing" if value is None else f"{value.dtype} of shape {value.shape}"
                raise DataError(f"Model.load: {path} is damaged: {key} should be finite "
                                f"{dtype or 'floats'} of shape {tuple(shape)}, found {what}; "
                                "save the model again")
            into[name] = value
    return params, state


def _adopt(path, layers, per_layer):
    """Give every layer of ``layers`` ((path, layer) pairs, ``leaf_layers``) its arrays, as
    they are in the file (its dtype), all or nothing: a layer that keeps state (after its parameters are loaded) must find exactly that state in
    the file."""
    before = [(layer.params, layer.grads, layer_state(layer)) for _, layer in layers]
    try:
        for (i, layer), (params, state) in zip(layers, per_layer):
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
        for (_, layer), (params, grads, state) in zip(layers, before):
            layer.params, layer.grads, layer.state = params, grads, state
        raise
