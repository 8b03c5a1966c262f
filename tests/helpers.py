"""Small setups for unit tests: real scikit-learn digits, and CIFAR files in torchvision's format
written by the test (real CIFAR is not on the test machines).

Every run trains M ≥ 1 members (a single run is a population of one), so the setups take a list
of per-member settings; ``member_mlp`` gives one member's network as a plain torch module, the
independent reference that hand computations run on.
"""

import dataclasses
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cl_core.config import RunConfig
from cl_core.context import TrainContext
from cl_core.data import Dataset, build_tasks, load_dataset
from cl_core.methods import METHODS, Method
from cl_core.models import MLP, ModelFactory, StackedModel
from cl_core.params import resolve
from cl_core.validation import validated

CPU = torch.device("cpu")
DIGITS = dict(benchmark="permuted-digits", scenario="domain", n_tasks=3, hidden=(16,), epochs=1)


def population_setup(
    members: list[dict], dataset: Dataset | None = None, **overrides
) -> tuple[list[RunConfig], TrainContext, StackedModel]:
    """Validated digits configs (``overrides`` for all, ``members[m]`` for member m), their
    context on CPU and the stacked model (member m initialised as a run of config m alone)."""
    values = {**DIGITS, **overrides}
    cfgs = [validated(RunConfig(**{**values, **m})) for m in members]
    data = dataset if dataset is not None else load_dataset(cfgs[0])
    ctx = TrainContext(cfgs, build_tasks(cfgs[0], data), CPU)
    model = ModelFactory(cfgs, ctx.input_shape, ctx.scenario.out_units, ctx.device)()
    return cfgs, ctx, model


def digits_setup(**overrides) -> tuple[RunConfig, TrainContext, StackedModel]:
    """A validated digits config, its context on CPU and its model: a population of one."""
    cfgs, ctx, model = population_setup([{}], **overrides)
    return cfgs[0], ctx, model


def make_method(name: str | type[Method], ctx: TrainContext, *params: dict) -> Method:
    """The method for ``ctx``'s members, member m with ``params[m]`` (one dict: all members)."""
    cls = METHODS[name] if isinstance(name, str) else name
    given = params or ({},)
    if len(given) == 1:
        given = given * ctx.size
    assert len(given) == ctx.size, "one hyperparameter dict per member"
    return cls([resolve(cls.hyperparams, p, cls.name) for p in given], ctx)


def mlp_names(n_hidden: int) -> dict[str, str]:
    """Stacked parameter name -> the name of the same parameter in the ``MLP`` template."""
    wb = ("weight", "bias")
    names = {f"fc{k}.{p}": f"trunk.{2 * k}.{p}" for k in range(n_hidden) for p in wb}
    names.update({f"head.{p}": f"head.{p}" for p in wb})
    return names


def member_mlp(model: StackedModel, member: int) -> MLP:
    """A plain ``MLP`` holding member ``member``'s current parameters (a copy)."""
    sizes = model.sizes
    out = model.store.shapes["head.weight"][0]
    mlp = MLP(sizes[0], tuple(sizes[1:]), out)
    params = model.params()
    state = {template: params[stacked][member].detach().clone()
             for stacked, template in mlp_names(len(sizes) - 1).items()}  # fmt: skip
    mlp.load_state_dict(state)
    return mlp


def stacked_grads(module: nn.Module, n_hidden: int) -> dict[str, torch.Tensor]:
    """A plain ``MLP``'s gradients under the stacked parameter names."""
    named = dict(module.named_parameters())
    return {stacked: named[template].grad for stacked, template in mlp_names(n_hidden).items()}


def as_stacked(model: StackedModel, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """One member's tensors named as the stacked parameters, flattened in ``theta``'s order."""
    return torch.cat([tensors[name].reshape(-1) for name in model.store.slices])


def padded_digits(side: int = 16) -> Dataset:
    """The 8x8 digits zero-padded to ``side`` x ``side`` (no benchmark serves them padded: the
    conv net refuses 8x8 images, and ``pad32`` pads 28x28 ones only)."""
    data = load_dataset(RunConfig(benchmark="split-digits", n_tasks=5))
    pad = (side - data.side) // 2

    def padded(x: torch.Tensor) -> torch.Tensor:
        images = x.reshape(-1, data.side, data.side)
        return nn.functional.pad(images, (pad, pad, pad, pad)).reshape(len(x), -1).contiguous()

    return dataclasses.replace(
        data,
        x_train=padded(data.x_train),
        x_test=padded(data.x_test),
        shape=(1, data.side + 2 * pad, data.side + 2 * pad),
    )


PER_CLASS_TRAIN = 3  # images per class in each CIFAR file written


def write_cifar(root: Path, layout, seed: int = 0, bytes_keys: bool = False) -> dict[str, dict]:
    """Small files under ``root/<layout.folder>/`` in torchvision's layout: per file a pickled dict
    (protocol 2, as the Python 2 originals) with ``data`` (N, 3072) uint8 channel-major rows,
    ``labels`` / ``fine_labels`` (+ ``coarse_labels``), ``batch_label`` and ``filenames``.
    Returns what each file holds (str keys)."""
    rng = np.random.default_rng(seed)
    folder = root / layout.folder
    folder.mkdir(parents=True)
    written = {}
    for name in layout.files:
        labels = [c for c in range(layout.n_classes) for _ in range(PER_CLASS_TRAIN)]
        rng.shuffle(labels)
        labels = [int(y) for y in labels]
        entry = {
            "batch_label": f"batch {name}",
            layout.label_key: labels,
            "data": rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8),
            "filenames": [f"img_{i}.png" for i in range(len(labels))],
        }
        if layout.label_key == "fine_labels":
            entry["coarse_labels"] = [y // 5 for y in labels]
        if bytes_keys:
            entry = {k.encode(): v for k, v in entry.items()}
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f, protocol=2)
        written[name] = {k.decode() if isinstance(k, bytes) else k: v for k, v in entry.items()}
    return written


def cifar_config(root: Path, **overrides) -> RunConfig:
    """Split CIFAR-10 task-IL on small files written under ``root`` (written if missing)."""
    from cl_core.data.cifar import CIFAR10

    if not (root / CIFAR10.folder).is_dir():
        write_cifar(root, CIFAR10)
    values = dict(
        benchmark="split-cifar10",
        scenario="task",
        n_tasks=5,
        model="conv",
        hidden=(16,),
        epochs=1,
        batch_size=16,
        data_root=str(root),
        device="cpu",
    )
    values.update(overrides)
    return validated(RunConfig(**values))


def cifar_setup(
    root: Path, members: list[dict] | None = None, **overrides
) -> tuple[RunConfig, TrainContext, StackedModel]:
    """Split CIFAR-10 task-IL from small written files: the first member's config, the CPU
    context of all ``members`` (default: one) and their stacked model (conv net unless
    ``model`` is given)."""
    cfgs = [cifar_config(root, **{**overrides, **m}) for m in (members or [{}])]
    ctx = TrainContext(cfgs, build_tasks(cfgs[0], load_dataset(cfgs[0])), CPU)
    model = ModelFactory(cfgs, ctx.input_shape, ctx.scenario.out_units, ctx.device)()
    return cfgs[0], ctx, model


# ---- populations against single runs ----------------------------------------------------------
def member_states(model: StackedModel) -> torch.Tensor:
    """(M, S): every member's trainable parameters (of every stacked network the model holds,
    e.g. one per task for separate networks) and per-member buffers (batch norm statistics),
    as one row per member. Parameters are read as the optimizer sees them (``optimized``): a
    store may hold several rows per member (the generative classifier's VAE per class)."""
    parts, stores = [], set()
    for module in model.modules():
        if not isinstance(module, StackedModel):
            continue
        if id(module.store) not in stores:
            stores.add(id(module.store))
            parts.append(module.optimized()[0])
        parts += [b for b in module.buffers(recurse=False) if b is not None]
    return torch.cat([p.detach().flatten(1) for p in parts], 1).clone()


def trace(
    cfgs: list[RunConfig], dataset: Dataset | None = None, validate: bool = True
) -> tuple[dict[int, list], dict[int, list[torch.Tensor]]]:
    """Train ``cfgs`` as one population (``Run``, the loop every run takes; one config: the
    single run, as ``train`` does it). Returns each member's reports and its parameters and
    buffers after every round (round 0: the untrained model)."""
    from cl_core.trainer import Run

    run = Run([validated(c) for c in cfgs] if validate else cfgs, dataset)
    reports: dict[int, list] = {i: [] for i in range(len(cfgs))}
    states: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(cfgs))}
    for batch in run:
        state = member_states(run.model)
        for pos, member in enumerate(run.ids):
            states[member].append(state[pos])
        for member, report in batch.items():
            reports[member].append(report)
    return reports, states


def eval_rows(cfg: RunConfig, split: str, dataset: Dataset | None = None) -> np.ndarray:
    """Evaluation rows of every task in ``split`` (one accuracy step is 1 / rows)."""
    data = dataset if dataset is not None else load_dataset(cfg)
    seq = build_tasks(cfg, data)
    return np.array([len(t.val_idx if split == "val" else t.test_idx) for t in seq.tasks])


def samples_apart(ours: np.ndarray, theirs: np.ndarray, rows: np.ndarray) -> float:
    """The largest difference between two accuracy matrices (rows: tasks learned, columns:
    tasks), in evaluation samples of the cell's task."""
    return float(np.max(np.abs(np.asarray(ours) - np.asarray(theirs)) * rows[None, :]))
