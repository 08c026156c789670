"""Parameter-efficient fine-tuning: LoRA adapters (``add_lora``, ``merge_lora``) and BitFit.

Full fine-tuning trains every weight. Two methods train a tiny fraction and, on small
data, often get close (they are measured against full fine-tuning in the demo's
"efficient" section, which says where they do not):

- **LoRA** (Hu et al., 2021, "LoRA: Low-Rank Adaptation of Large Language Models"):
  a frozen ``Linear`` ``W`` (out x in) gets a trainable low-rank update,
  ``y = x W^T + b + (alpha / r) * (dropout(x) A^T) B^T`` with ``A`` (r x in) and
  ``B`` (out x r). ``B`` starts at zero, so the adapted model starts exactly at the
  pretrained one; ``A`` starts Kaiming-uniform (a = sqrt(5)), as in HF PEFT.
  Trainable parameters per layer: r * (in + out) instead of in * out + out.
  ``merge_lora`` folds ``W + (alpha / r) B A`` back into a plain ``Linear``: no
  extra cost at inference.
- **BitFit** (Ben Zaken et al., 2021): only the biases (and the new head) train.

The layout follows HF PEFT's ``LoraLayer`` (``src/peft/tuners/lora/layer.py``): the
original layer is kept, untouched, as ``base_layer``; the factors are ``lora_A`` and
``lora_B``, each a bias-free ``Linear``. So the state-dict names are PEFT's:
``<path>.base_layer.weight``, ``<path>.base_layer.bias``, ``<path>.lora_A.weight``,
``<path>.lora_B.weight``; and ``lora_state_dict(model, prefix="base_model.model.")``
gives the keys of PEFT's saved ``adapter_model.safetensors`` (PEFT prefixes the
model's names with ``base_model.model.`` and drops the adapter name ``default``; a
``modules_to_save`` head is saved as ``base_model.model.4.weight``). ``save_lora`` /
``load_lora`` write and read PEFT's whole adapter folder (that file and
``adapter_config.json``).

PyTorch/PEFT equivalent::

    from peft import LoraConfig, get_peft_model
    model = get_peft_model(mlp, LoraConfig(r=4, lora_alpha=4, target_modules=["0", "2"],
                                           modules_to_save=["4"]))
    ...
    mlp = model.merge_and_unload()

Read next: ``tinytl/transfer/distill.py`` (shrinking a fine-tuned model), and the
demo's ``tinytl/demo/efficient.py``.
"""
from __future__ import annotations

import fnmatch
import math
import os
from collections import OrderedDict

import numpy as np

from .. import backend
from .. import functional as F
from .._random import generator
from ..nn import Linear, Module, Parameter
from ..tensor import Tensor, mul, no_grad
from ._checks import _check_module

PEFT_PREFIX = "base_model.model."     # the prefix of every key in PEFT's saved adapter files


# ------------------------------------------------------------ LoRALinear ----

def _number(value, arg: str, fn: str, integer: bool = False):
    ok = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, ok):
        raise TypeError(f"{fn}: {arg} must be {'an integer' if integer else 'a number'}, got "
                        f"{type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{fn}: {arg} must be finite, got {value!r}")
    return int(value) if integer else float(value)


def _factor(rows: int, cols: int, like: Parameter, init: str) -> Linear:
    """A bias-free Linear(cols -> rows) on ``like``'s device and dtype, its weight (rows, cols) set to
    zeros or to Kaiming-uniform with a = sqrt(5), drawn from tinytl's global generator."""
    dtype = like.dtype
    if init == "zeros":
        w = np.zeros((rows, cols), dtype)
    else:
        # torch.nn.init.kaiming_uniform_(w, a=sqrt(5)): gain = sqrt(2 / (1 + a^2)) = sqrt(1/3),
        # bound = gain * sqrt(3 / fan_in) = 1 / sqrt(fan_in), fan_in = cols
        a = math.sqrt(5.0)
        gain = math.sqrt(2.0 / (1.0 + a * a))
        bound = gain * math.sqrt(3.0 / cols)
        w = generator().uniform(-bound, bound, size=(rows, cols)).astype(dtype)
    layer = Linear.__new__(Linear)          # built by hand: no throw-away random init
    Module.__init__(layer)
    layer.in_features, layer.out_features = cols, rows
    layer.weight = Parameter(backend.to_device(np.asfortranarray(w), like.device))   # Linear's layout
    layer.register_parameter("bias", None)
    object.__setattr__(layer, "_built", True)
    return layer


class LoRALinear(Module):
    """A frozen ``Linear`` plus a trainable low-rank update (LoRA, Hu et al. 2021).

    ``y = base_layer(x) + (alpha / rank) * lora_B(lora_A(dropout(x)))``, i.e.
    ``x W^T + b + s (dropout(x) A^T) B^T`` with ``s = alpha / rank``.

    Args:
        base_layer: the ``Linear`` to adapt; its weight and bias are frozen (their
            previous ``requires_grad`` is remembered and restored by ``merge_lora``).
        rank: r, the rank of the update (1 <= r <= min(in_features, out_features)).
        alpha: the scale numerator (PEFT's ``lora_alpha``); the update is scaled by alpha / r.
        dropout: probability of zeroing an input element on the LoRA path (training mode
            only; the kept ones are scaled by 1 / (1 - p), as ``torch.nn.Dropout``).

    Attributes:
        base_layer: the original Linear (``<path>.base_layer.weight`` / ``.bias``).
        lora_A: Linear(in -> r, no bias), weight (r, in), Kaiming-uniform a = sqrt(5).
        lora_B: Linear(r -> out, no bias), weight (out, r), zeros.
        rank, alpha, scaling, dropout, in_features, out_features.

    PEFT equivalent: ``peft.tuners.lora.Linear`` with one adapter "default".
    """

    def __init__(self, base_layer: Linear, rank: int = 8, alpha: float = 8, dropout: float = 0.0):
        super().__init__()
        rank, alpha, dropout = _check_lora_args(base_layer, rank, alpha, dropout, "LoRALinear")
        w = base_layer.weight
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        self.rank, self.alpha, self.dropout = rank, alpha, dropout
        self.scaling = alpha / rank
        self._was_trainable = tuple(p.requires_grad for p in base_layer._parameters.values() if p is not None)
        self.base_layer = base_layer                   # registered first, as in PEFT's state dicts
        self.lora_A = _factor(rank, self.in_features, w, "kaiming")
        self.lora_B = _factor(self.out_features, rank, w, "zeros")
        for p in base_layer.parameters():
            p.requires_grad = False

    def forward(self, x) -> Tensor:
        y = self.base_layer(x)
        x = x if isinstance(x, Tensor) else Tensor(x)
        if self.dropout > 0 and self.training:
            x = mul(x, self._dropout_mask(x))
        update = F.linear(F.linear(x, self.lora_A.weight, name="LoRA A"), self.lora_B.weight, name="LoRA B")
        if self.scaling != 1.0:                  # alpha == rank: no op, and nothing kept for it
            update = mul(update, self.scaling)
        return y + update

    def _dropout_mask(self, x: Tensor) -> Tensor:
        """Inverted dropout's mask: 0 with probability p, else 1 / (1 - p); from the global generator."""
        p = self.dropout
        keep = generator().random(x.shape) >= p
        return Tensor(backend.to_device((keep / (1.0 - p)).astype(x.dtype), x.device))

    def delta_weight(self):
        """The update ``(alpha / rank) * B @ A`` as an array (out, in), computed in float64."""
        xp = backend.get_array_module(self.lora_B.weight.data)
        B = self.lora_B.weight.data.astype(np.float64)
        A = self.lora_A.weight.data.astype(np.float64)
        return self.scaling * xp.matmul(B, A)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, "
                f"alpha={self.alpha:g}, dropout={self.dropout:g}")


def _check_scalars(rank, alpha, dropout, fn: str):
    rank = _number(rank, "rank", fn, integer=True)
    if rank <= 0:
        raise ValueError(f"{fn}: rank must be a positive integer, got {rank}")
    alpha = _number(alpha, "alpha", fn)
    if alpha <= 0:
        raise ValueError(f"{fn}: alpha must be a positive number, got {alpha!r}")
    dropout = _number(dropout, "dropout", fn)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"{fn}: dropout must be a probability in [0, 1), got {dropout!r}")
    return rank, alpha, dropout


def _check_lora_args(layer, rank, alpha, dropout, fn: str):
    if type(layer) is not Linear:
        raise TypeError(f"{fn}: a LoRA adapter wraps a tinytl nn.Linear, got {type(layer).__name__}")
    rank, alpha, dropout = _check_scalars(rank, alpha, dropout, fn)
    limit = min(layer.in_features, layer.out_features)
    if rank > limit:
        raise ValueError(f"{fn}: rank {rank} is above min(in_features, out_features) = {limit} of "
                         f"Linear({layer.in_features}, {layer.out_features}): the update would not be low-rank")
    return rank, alpha, dropout


# --------------------------------------------------------------- add_lora ----

def _patterns(targets, fn: str) -> list:
    if isinstance(targets, str):
        targets = (targets,)
    try:
        pats = list(targets)
    except TypeError:
        raise TypeError(f"{fn}: targets must be a glob pattern or a list of them (module names such as "
                        f"'0', '2' or 'encoder.*'), got {type(targets).__name__}") from None
    if not pats:
        raise ValueError(f"{fn}: targets is empty (give module-name patterns, e.g. ('*',) for every Linear)")
    for p in pats:
        if not isinstance(p, str):
            raise TypeError(f"{fn}: targets must be strings (glob patterns over module names), got "
                            f"{type(p).__name__}")
    return pats


def _inside_lora(name: str, lora_names) -> str | None:
    """The LoRALinear that ``name`` is, or lies inside, or None."""
    for ln in lora_names:
        if name == ln or name.startswith(ln + ".") or ln == "":
            return ln
    return None


def _set_child(model: Module, name: str, new: Module):
    *path, key = name.split(".")
    parent = model
    for part in path:
        parent = parent._modules[part]
    parent.add_module(key, new)


def add_lora(model: Module, rank: int = 8, alpha: float = 8, targets=("*",), dropout: float = 0.0) -> list:
    """Wrap every ``Linear`` of ``model`` whose module name matches ``targets`` in a ``LoRALinear``.

    The wrapped layers' weights and biases are frozen (kept, untouched, under
    ``<name>.base_layer``); their ``lora_A`` / ``lora_B`` train. Every other parameter
    keeps its ``requires_grad``: a replaced head stays trainable, and a layer you want
    frozen without an adapter is frozen with ``tl.transfer.freeze`` (PEFT freezes every
    non-adapter weight except ``modules_to_save``; here that is one ``freeze`` call).
    Replace the head (``replace_head``) before ``add_lora``: afterwards the last ``Linear``
    in the model may be an adapter's ``lora_B``.

    Args:
        model: the Module to adapt, in place (nested Sequentials included).
        rank: r of every adapter (1 <= r <= min(in, out) of each targeted Linear).
        alpha: the scale numerator; the update is scaled by alpha / rank (PEFT's ``lora_alpha``).
        targets: fnmatch globs over module names (``named_modules()``: "0", "2",
            "encoder.*"), as ``tl.transfer.freeze`` matches parameter names; ``("*",)``
            adapts every Linear. A pattern that matches only non-Linear modules, or nothing,
            is an error; modules inside an existing adapter are never matched.
        dropout: dropout probability on the LoRA path (training mode only).

    Returns:
        The names of the layers that were wrapped, in model order.

    Raises:
        TypeError: model is not a Module; a target names a single module that is not a Linear.
        ValueError: a bad rank / alpha / dropout (named), a pattern matching no Linear, or a
            matched layer that already has an adapter. Checked for every layer before any
            layer changes.
    """
    fn = "add_lora"
    _check_module(model, "model", fn)
    pats = _patterns(targets, fn)
    _check_scalars(rank, alpha, dropout, fn)
    modules = list(model.named_modules())
    lora_names = [n for n, m in modules if isinstance(m, LoRALinear)]
    chosen, already = OrderedDict(), []
    for pat in pats:
        hits = [(n, m) for n, m in modules if fnmatch.fnmatchcase(n, pat)]
        linears = []
        for n, m in hits:
            owner = _inside_lora(n, lora_names)
            if owner is not None and (isinstance(m, (Linear, LoRALinear))):
                already.append(owner or type(model).__name__)
            elif type(m) is Linear:
                linears.append((n, m))
        if already:
            continue
        if not linears:
            if len(hits) == 1:
                n, m = hits[0]
                raise TypeError(f"{fn}: targets pattern {pat!r} names module '{n}', a {type(m).__name__}, "
                                f"not a Linear (LoRA adapts Linear layers)")
            names = [n for n, m in modules if type(m) is Linear and _inside_lora(n, lora_names) is None]
            raise ValueError(f"{fn}: targets pattern {pat!r} matches no Linear layer "
                             + (f"(it matches {', '.join(repr(n) for n, _ in hits[:4])}, none a Linear)"
                                if hits else "(it matches no module name)")
                             + f"; the Linear layers are: {names}")
        for n, m in linears:
            chosen[n] = m
    if already:
        names = sorted(set(already))
        raise ValueError(f"{fn}: layer(s) {names} already have a LoRA adapter (add_lora twice on the same "
                         f"layer); merge_lora(model) folds them in first, or choose other targets")
    if "" in chosen:
        raise TypeError(f"{fn}: model is itself a Linear; wrap it directly: LoRALinear(model, rank, alpha)")
    uses = {}                         # a Linear reached under two names is one shared layer
    for _, parent in modules:
        for _, child in parent.named_children():
            uses[id(child)] = uses.get(id(child), 0) + 1
    shared = [n for n, m in chosen.items() if uses.get(id(m), 0) > 1]
    if shared:
        raise ValueError(f"{fn}: layer(s) {shared} are used at more than one place in the model (one Linear "
                         "shared); an adapter would replace only one use and the others would run frozen: give "
                         "each use its own Linear, or choose other targets")
    for n, m in chosen.items():       # every check before any layer changes
        _check_lora_args(m, rank, alpha, dropout, f"{fn} (layer '{n}')")
    for n, m in chosen.items():
        _set_child(model, n, LoRALinear(m, rank, alpha, dropout))
    return list(chosen)


# -------------------------------------------------------------- merge_lora ----

def _lora_layers(model: Module) -> list:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoRALinear)]


def merge_lora(model: Module) -> list:
    """Fold every adapter into its base weight, ``W <- W + (alpha / rank) B A``, and put the
    plain ``Linear`` back in the model (PEFT's ``merge_and_unload``).

    The merged model computes the same outputs as the adapted one (to float32
    rounding: the update is formed in float64, then rounded once into W), with no extra
    cost per call; its state dict has the original names again (``0.weight``). The base
    layers' ``requires_grad`` flags are restored to what they were before ``add_lora``.

    Args:
        model: a Module holding ``LoRALinear`` layers (nested included).

    Returns:
        The names of the layers that were merged.

    Raises:
        ValueError: the model holds no adapter, or a merged weight would hold a NaN or an
            Inf (then nothing is changed: every merge is computed and checked first).
    """
    fn = "merge_lora"
    _check_module(model, "model", fn)
    if isinstance(model, LoRALinear):
        raise TypeError(f"{fn}: model is itself a LoRALinear; merge it inside a container, or take "
                        f"its base_layer after adding delta_weight()")
    layers = _lora_layers(model)
    if not layers:
        raise ValueError(f"{fn}: model ({type(model).__name__}) holds no LoRA adapter (add_lora adds them)")
    staged, bad = [], []
    for name, lora in layers:
        W = lora.base_layer.weight
        xp = backend.get_array_module(W.data)
        with np.errstate(over="ignore", invalid="ignore"):      # an overflow is reported below
            merged = (W.data.astype(np.float64) + lora.delta_weight()).astype(W.dtype)
        if not bool(xp.isfinite(merged).all()):
            bad.append(name)
        staged.append((name, lora, merged))
    if bad:
        raise ValueError(f"{fn}: the merged weight of layer(s) {bad} would hold NaN or Inf (a diverged "
                         f"adapter, or values beyond the weight's dtype); nothing was changed")
    for name, lora, merged in staged:
        base = lora.base_layer
        base.weight.data[...] = merged          # in place: the layout and any reference stay valid
        params = [p for p in base._parameters.values() if p is not None]
        for p, trainable in zip(params, lora._was_trainable):
            p.requires_grad = trainable
        _set_child(model, name, base)
    return [n for n, _ in layers]


# --------------------------------------------------------- the state dicts ----

def _head_params(model: Module, head, fn: str) -> "OrderedDict[str, Parameter]":
    """The non-adapter parameters that ``lora_state_dict`` keeps (see its ``head``)."""
    params = OrderedDict(model.named_parameters())
    lora = [n for n, _ in _lora_layers(model)]
    outside = OrderedDict((k, p) for k, p in params.items()
                          if _inside_lora(k.rsplit(".", 1)[0] if "." in k else "", lora) is None)
    if head is None:
        return OrderedDict((k, p) for k, p in outside.items() if p.requires_grad)
    if head is False:
        return OrderedDict()
    if isinstance(head, Module):
        name = next((n for n, m in model.named_modules() if m is head), None)
        if name is None:
            raise ValueError(f"{fn}: head is not a module of model")
    elif isinstance(head, str):
        name = head
        if name not in dict(model.named_modules()):
            raise ValueError(f"{fn}: head {name!r} is not a module name of model; the names are: "
                             f"{[n for n, _ in model.named_modules() if n]}")
    else:
        raise TypeError(f"{fn}: head must be None, False, a module name or a Module, got {type(head).__name__}")
    pre = name + "." if name else ""
    out = OrderedDict((k, p) for k, p in outside.items() if k.startswith(pre))
    if not out:
        raise ValueError(f"{fn}: head {name!r} has no parameters outside the LoRA layers")
    return out


def lora_state_dict(model: Module, head=None, prefix: str = "") -> "OrderedDict[str, np.ndarray]":
    """What a LoRA fine-tuning changed: every adapter's ``lora_A`` / ``lora_B`` weight, and the
    non-adapter parameters that trained (a replaced head): the small file to ship.

    Args:
        model: the adapted Module.
        head: which non-adapter parameters to keep as well. None (default): every
            trainable parameter outside the LoRA layers (a new head trains, so it is kept,
            as PEFT's ``modules_to_save``); a module name ("4") or a Module: that module's
            parameters; False: adapters only.
        prefix: put before every key: ``"base_model.model."`` (``PEFT_PREFIX``) gives the keys
            of PEFT's saved ``adapter_model.safetensors``, which ``tl.save`` writes.

    Returns:
        An OrderedDict name -> NumPy array (copies), in model order:
        ``<path>.lora_A.weight`` (r, in), ``<path>.lora_B.weight`` (out, r), ``4.weight``, ...
    """
    fn = "lora_state_dict"
    _check_module(model, "model", fn)
    if not isinstance(prefix, str):
        raise TypeError(f"{fn}: prefix must be a str, got {type(prefix).__name__}")
    layers = _lora_layers(model)
    if not layers:
        raise ValueError(f"{fn}: model ({type(model).__name__}) holds no LoRA adapter (add_lora adds them)")
    keep = {id(m.lora_A.weight) for _, m in layers} | {id(m.lora_B.weight) for _, m in layers}
    keep |= {id(p) for p in _head_params(model, head, fn).values()}
    return OrderedDict((prefix + k, backend.to_numpy(p.data).copy())
                       for k, p in model.named_parameters() if id(p) in keep)


def load_lora_state_dict(model: Module, state_or_path, prefix: str | None = None) -> list:
    """Load an adapter (``lora_state_dict``'s output, a checkpoint file of it, or PEFT's saved
    ``adapter_model.safetensors``) into a model that has the same adapters.

    Every key must name a parameter of ``model`` (adapter factors, and the head or other
    non-adapter weights the adapter carries); the base weights are not needed. Every
    key, shape and dtype is checked before anything is copied.

    Args:
        model: the Module, already adapted with ``add_lora`` (same targets and rank).
        state_or_path: a dict name -> array, or a ``.safetensors`` / ``.npz`` path.
        prefix: stripped from every key; None strips PEFT's ``"base_model.model."`` when
            every key starts with it.

    Returns:
        The model parameter names that were loaded.

    Raises:
        ValueError: naming the keys and why: an adapter key for a layer that has no
            adapter (add_lora first), a key with no parameter, a shape mismatch (another
            rank).
    """
    fn = "load_lora_state_dict"
    _check_module(model, "model", fn)
    if isinstance(state_or_path, (str, os.PathLike)):
        from .. import io
        state = io.load(state_or_path)
    elif hasattr(state_or_path, "items"):
        state = state_or_path
    else:
        raise TypeError(f"{fn}: expected a dict of arrays or a checkpoint path, got {type(state_or_path).__name__}")
    if not state:
        raise ValueError(f"{fn}: the state dict is empty")
    if prefix is None:
        prefix = PEFT_PREFIX if all(k.startswith(PEFT_PREFIX) for k in state) else ""
    wrong = [k for k in state if not k.startswith(prefix)]
    if wrong:
        raise ValueError(f"{fn}: key(s) {wrong[:4]} do not start with prefix {prefix!r}")
    state = OrderedDict((k[len(prefix):], v) for k, v in state.items())
    modules = dict(model.named_modules())
    params = dict(model.named_parameters())
    problems = []
    for k in state:
        if k in params:
            continue
        path, _, leaf = k.rpartition(".")
        owner, _, factor = path.rpartition(".")
        if leaf == "weight" and factor in ("lora_A", "lora_B"):
            m = modules.get(owner)
            if m is None:
                why = f"the model has no module '{owner}'"
            elif isinstance(m, Linear):
                why = (f"layer '{owner}' is a plain Linear without a LoRA adapter "
                       f"(call add_lora(model, rank=..., targets=[{owner!r}, ...]) first, with the adapter's rank)")
            else:
                why = f"module '{owner}' is a {type(m).__name__}, not a LoRALinear"
            problems.append(f"'{k}': {why}")
        else:
            problems.append(f"'{k}': no parameter of that name in the model")
    if problems:
        raise ValueError(f"{fn}: {len(problems)} key(s) cannot be loaded, nothing was copied:\n  "
                         + "\n  ".join(problems))
    model.load_state_dict(state, strict=False)    # checks shapes and dtypes, then copies all or nothing
    return [k for k in params if k in state]


# ------------------------------------------------- PEFT's adapter folder ----

ADAPTER_WEIGHTS = "adapter_model.safetensors"     # the two files of PEFT's save_pretrained
ADAPTER_CONFIG = "adapter_config.json"


def save_lora(model: Module, directory, head=None) -> dict:
    """Write the adapter as PEFT's ``save_pretrained`` does: a folder holding
    ``adapter_model.safetensors`` (``lora_state_dict(model, head, prefix="base_model.model.")``)
    and ``adapter_config.json`` (a LoRA config: r, lora_alpha, lora_dropout, target_modules,
    modules_to_save). ``peft.PeftModel.from_pretrained(torch_model, directory)`` loads it onto
    the same architecture in PyTorch; ``load_lora`` loads it here.

    Args:
        model: the adapted Module (every adapter of one rank, alpha and dropout, as one PEFT config).
        directory: the folder (created if needed; the two files are replaced atomically).
        head: as in ``lora_state_dict``; the modules it takes become ``modules_to_save``.

    Returns:
        The config written, as a dict.
    """
    import json
    fn = "save_lora"
    state = lora_state_dict(model, head=head)
    layers = _lora_layers(model)
    settings = {(m.rank, m.alpha, m.dropout) for _, m in layers}
    if len(settings) > 1:
        raise ValueError(f"{fn}: the adapters differ in (rank, alpha, dropout) {sorted(settings)}; one PEFT "
                         f"config holds one of each (save the groups from separate models)")
    rank, alpha, dropout = settings.pop()
    lora = [n for n, _ in layers]
    extra = [k.rsplit(".", 1)[0] for k in state if _inside_lora(k.rsplit(".", 1)[0], lora) is None]
    config = {"peft_type": "LORA", "task_type": None, "base_model_name_or_path": None, "inference_mode": True,
              "r": rank, "lora_alpha": alpha, "lora_dropout": dropout, "bias": "none", "fan_in_fan_out": False,
              "use_rslora": False, "use_dora": False, "target_modules": lora,
              "modules_to_save": list(OrderedDict.fromkeys(extra)) or None}
    from .. import io
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    io.save({PEFT_PREFIX + k: v for k, v in state.items()}, os.path.join(directory, ADAPTER_WEIGHTS))
    text = json.dumps(config, indent=2).encode()
    io.atomic_write(os.path.join(directory, ADAPTER_CONFIG), lambda f: f.write(text))
    return config


def _peft_targets(model: Module, targets, fn: str) -> list:
    """The Linear names PEFT's ``target_modules`` selects: a list matches a name or a dotted
    suffix of it ("q" matches "q" and "block.q"), a str is a regex over the full name."""
    import re
    names = [n for n, m in model.named_modules() if type(m) is Linear]
    if isinstance(targets, str):
        chosen = [n for n in names if re.fullmatch(targets, n)]
        if not chosen:
            raise ValueError(f"{fn}: target_modules {targets!r} matches no Linear of the model ({names})")
        return chosen
    chosen = []
    for t in targets:
        hit = [n for n in names if n == t or n.endswith("." + t)]
        if not hit:
            raise ValueError(f"{fn}: target_modules entry {t!r} matches no Linear of the model ({names})")
        chosen += [n for n in hit if n not in chosen]
    return [n for n in names if n in chosen]


def load_lora(model: Module, directory) -> list:
    """Load an adapter folder written by ``save_lora`` or by PEFT's ``save_pretrained`` (LoRA on
    Linear layers): adds the adapters its config describes when ``model`` has none yet
    (``add_lora`` with its r, lora_alpha, lora_dropout and target_modules), then loads the
    weights with ``load_lora_state_dict``. Give the model its new head first (e.g.
    ``replace_head``) when the adapter carries one.

    Args:
        model: the Module (the same architecture as the one the adapter was trained on).
        directory: the folder holding ``adapter_config.json`` and ``adapter_model.safetensors``.

    Returns:
        The model parameter names that were loaded.

    Raises:
        FileNotFoundError: a file is missing. ValueError: a config tinytl cannot follow
        (another peft_type, rsLoRA, DoRA, per-layer ranks), or keys that do not fit.
    """
    import json
    fn = "load_lora"
    _check_module(model, "model", fn)
    directory = os.fspath(directory)
    with open(os.path.join(directory, ADAPTER_CONFIG), encoding="utf-8") as f:
        cfg = json.load(f)
    if cfg.get("peft_type") != "LORA":
        raise ValueError(f"{fn}: {ADAPTER_CONFIG} has peft_type {cfg.get('peft_type')!r}; only 'LORA' is supported")
    for key in ("use_rslora", "use_dora"):
        if cfg.get(key):
            raise ValueError(f"{fn}: {ADAPTER_CONFIG} sets {key}; tinytl's LoRA is the plain alpha / r kind")
    for key in ("rank_pattern", "alpha_pattern"):
        if cfg.get(key):
            raise ValueError(f"{fn}: {ADAPTER_CONFIG} sets {key} (per-layer values); tinytl's loader takes one "
                             f"rank and alpha for every layer")
    r, alpha = cfg.get("r", 8), float(cfg.get("lora_alpha", 8))
    have = _lora_layers(model)
    off = [n for n, m in have if (m.rank, m.alpha) != (r, alpha)]
    if off:
        raise ValueError(f"{fn}: the model's adapters {off} differ from the folder's r={r}, lora_alpha={alpha:g}")
    if not have:
        targets = _peft_targets(model, cfg.get("target_modules") or [], fn)
        add_lora(model, rank=r, alpha=alpha, targets=targets,
                 dropout=cfg.get("lora_dropout", 0.0))
    return load_lora_state_dict(model, os.path.join(directory, ADAPTER_WEIGHTS), prefix=PEFT_PREFIX)


# ------------------------------------------------------------------ BitFit ----

def bitfit(model: Module, head=None) -> list:
    """BitFit (Ben Zaken et al., 2021): freeze every weight except the biases and the head.

    The bias gradients need no stored layer input (dL/db is the sum of dL/dy over the
    batch), which is what makes BitFit cheap in memory as well as in parameters, in an
    engine that keeps only what the trainable weights need.

    Args:
        model: the Module (changed in place).
        head: the module that trains entirely, as a Module of ``model`` or its name ("4"),
            e.g. a head made by ``replace_head``; None: biases only.

    Returns:
        The names of the parameters that train after the call (every bias, and the head's
        parameters), in model order. Every other parameter is frozen (gradients dropped).

    Raises:
        TypeError: model is not a Module, head is neither a Module nor a str.
        ValueError: model has no bias to train, or head is not in model. Checked first.

    PyTorch equivalent::

        for n, p in model.named_parameters():
            p.requires_grad = n.endswith("bias") or n.startswith("4.")
    """
    fn = "bitfit"
    _check_module(model, "model", fn)
    params = OrderedDict(model.named_parameters())
    head_names = set()
    if head is not None:
        if isinstance(head, Module):
            name = next((n for n, m in model.named_modules() if m is head), None)
            if name is None:
                raise ValueError(f"{fn}: head is not a module of model")
        elif isinstance(head, str):
            name = head
            if name not in dict(model.named_modules()) or name == "":
                raise ValueError(f"{fn}: head {name!r} is not a module name of model; the names are: "
                                 f"{[n for n, _ in model.named_modules() if n]}")
        else:
            raise TypeError(f"{fn}: head must be a Module of model, its name, or None, got {type(head).__name__}")
        if name == "":
            raise ValueError(f"{fn}: head is the whole model: everything would train")
        head_names = {k for k in params if k.startswith(name + ".")}
        if not head_names:
            raise ValueError(f"{fn}: head {name!r} has no parameters")
    biases = {k for k in params if k.rsplit(".", 1)[-1] == "bias"}
    if not biases - head_names:
        raise ValueError(f"{fn}: model has no bias outside the head: nothing for BitFit to train "
                         f"(the parameters are {list(params)})")
    trains = []
    for k, p in params.items():
        on = k in biases or k in head_names
        p.requires_grad = on
        if on:
            trains.append(k)
        else:
            p.grad = None
    return trains
