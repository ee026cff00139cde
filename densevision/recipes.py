"""Recipes: YAML files that configure one experiment, merged with ``_base_`` pieces, overridden from the
command line and validated against a schema before any work starts.

A recipe names one model, one dataset and one task; the keys of its ``model`` section (besides ``name``)
are the keyword arguments of the registered model builder, the extra keys of its ``data`` section those of
the dataset source, and the keys of its ``loss`` section those of the loss. Those keys are checked against the
builders' signatures, so a misspelt key fails before training with a did-you-mean suggestion.
"""

from __future__ import annotations

import importlib.util
import inspect
import os
import typing
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt, PositiveFloat
from pydantic import PositiveInt, ValidationError, create_model

from densevision.data.augment import AugmentationError, validate_transforms
from densevision.errors import DensevisionError
from densevision.files import write_text
from densevision.registry import CODECS, DATASETS, LOSSES, MODELS, TASKS, UnknownNameError, did_you_mean
from densevision.registry import load_builtin_parts

BASE_KEY = "_base_"


class RecipeError(DensevisionError, ValueError):
    """A recipe that cannot be used: the message names the file, the key path and what was expected."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class _OpenSection(BaseModel):
    """A section whose extra keys are a registered builder's keyword arguments (checked separately)."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)
    name: str

    def kwargs(self) -> dict[str, Any]:
        """Every key but ``name``: the keyword arguments for the builder."""
        return dict(self.model_extra or {})


class ModelSection(_OpenSection):
    """``model.name`` picks a builder from ``MODELS``; other keys (``backbone``, ``num_classes``, ...) are its kwargs."""


class DataSection(_OpenSection):
    """``data.name`` picks a source from ``DATASETS``; keys not declared here are the source's kwargs."""

    root: Optional[str] = None
    batch_size: PositiveInt = Field(4, description="global batch: summed over all replicas and workers")
    eval_batch_size: PositiveInt = 1
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    num_parallel_calls: Union[PositiveInt, Literal["auto"]] = "auto"
    shuffle: bool = True

    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class LossSection(_OpenSection):
    """``loss.name`` picks from ``LOSSES``; other keys are its options."""


class CodecSection(_OpenSection):
    """``codec.name`` picks a target encoding from ``CODECS`` (pose: ``heatmap``); other keys are its options
    (``sigma``, ...)."""


class TestSection(_Section):
    """How evaluation and prediction run the model."""

    flip_test: bool = Field(False, description="pose: average with the mirrored image's heatmaps")


class ScheduleSection(_Section):
    name: Literal["constant", "exponential", "poly", "cosine", "step"] = "constant"
    decay_rate: PositiveFloat = Field(0.995, description="exponential: lr *= decay_rate each epoch")
    power: PositiveFloat = Field(0.9, description="poly: lr * (1 - t/T) ** power")
    boundaries: list[PositiveInt] = Field(default_factory=list, description="step: epochs where lr *= factor")
    factor: PositiveFloat = 0.1
    min_lr: NonNegativeFloat = 0.0
    warmup_epochs: NonNegativeFloat = 0.0


class OptimizerSection(_Section):
    name: Literal["sgd", "rmsprop", "adam", "adamw"] = "adam"
    lr: PositiveFloat = Field(1e-3, description="learning rate for the global batch data.batch_size")
    momentum: NonNegativeFloat = 0.9
    nesterov: bool = False
    weight_decay: NonNegativeFloat = 0.0
    clipnorm: Optional[PositiveFloat] = None
    ema_momentum: Optional[float] = Field(
        None, gt=0, lt=1, description="validate and checkpoint an exponential moving average of the weights "
        "(Keras' use_ema) with this momentum, e.g. 0.98 (about the last 50 steps); null: the raw weights")
    base_batch_size: Optional[PositiveInt] = Field(
        None, description="if set, lr is scaled linearly by data.batch_size / base_batch_size"
    )
    schedule: ScheduleSection = Field(default_factory=ScheduleSection)


class TrainSection(_Section):
    epochs: PositiveInt = 10
    steps_per_epoch: Optional[PositiveInt] = None
    val_steps: Optional[PositiveInt] = None
    val_every: PositiveInt = 1
    monitor: str = "val_loss"
    monitor_mode: Literal["min", "max"] = "min"
    seed: NonNegativeInt = 0
    max_minutes: Optional[PositiveFloat] = Field(
        None, description="time budget: after the epoch that passes it, validate, save and stop")
    precise_bn_batches: NonNegativeInt = Field(
        0, description="before each validation, re-estimate batch-norm statistics over this many training batches")
    init_weights: Optional[str] = Field(
        None, description="start from these model weights (.keras or .weights.h5), not their optimiser state")
    pictures_every: NonNegativeInt = Field(5, description="log sample pictures every N epochs (0: never)")
    num_pictures: NonNegativeInt = 4


class DistributeSection(_Section):
    strategy: Literal["auto", "default", "one_device", "mirrored", "multi_worker"] = "auto"
    devices: Optional[list[str]] = None


class WandbSection(_Section):
    mode: Literal["offline", "online", "disabled"] = "offline"
    project: str = "densevision"
    entity: Optional[str] = None
    tags: list[str] = Field(default_factory=list)
    log_best_model: bool = False


class TrackingSection(_Section):
    wandb: WandbSection = Field(default_factory=WandbSection)
    tensorboard: bool = True


class AugmentationSection(_Section):
    """Albumentations transforms as ``- TransformName: {param: value}`` (or ``- TransformName``), applied in order."""

    train: list[Union[str, dict[str, Any]]] = Field(default_factory=list)
    val: list[Union[str, dict[str, Any]]] = Field(default_factory=list)
    precise_bn: Optional[list[Union[str, dict[str, Any]]]] = Field(
        None, description="how the training images are prepared for precise BN (train.precise_bn_batches); "
        "null: as augmentation.train. Statistics are best measured at the evaluation's size, e.g. full frames: "
        "[{HorizontalFlip: {p: 0.5}}]")


class OutputSection(_Section):
    dir: str = "runs"


class Recipe(_Section):
    """A validated recipe. ``recipe.model.name``, ``recipe.data.batch_size``, ``recipe.optimizer.lr``, ..."""

    name: str
    task: str
    model: ModelSection
    data: DataSection
    augmentation: AugmentationSection = Field(default_factory=AugmentationSection)
    loss: Optional[LossSection] = None
    codec: Optional[CodecSection] = None
    test: TestSection = Field(default_factory=TestSection)
    optimizer: OptimizerSection = Field(default_factory=OptimizerSection)
    train: TrainSection = Field(default_factory=TrainSection)
    distribute: DistributeSection = Field(default_factory=DistributeSection)
    precision: Literal["float32", "mixed_float16", "mixed_bfloat16"] = "float32"
    jit_compile: bool = False
    tracking: TrackingSection = Field(default_factory=TrackingSection)
    output: OutputSection = Field(default_factory=OutputSection)
    demo: dict[str, Any] = Field(
        default_factory=dict, description="overrides applied by --demo (dotted keys), e.g. {train.epochs: 3}"
    )
    source: Optional[str] = Field(None, description="the file this recipe was loaded from (set by load_recipe)")

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict of the fully resolved recipe (extras included)."""
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# ----------------------------------------------------------------------------------------------- loading


def _read_yaml(path: Path, chain: tuple[Path, ...]) -> dict:
    if not path.is_file():
        where = f" (named in _base_ of {chain[-1]})" if chain else ""
        raise RecipeError(f"{path}: recipe file not found{where}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:  # a video or an image given where the recipe goes
        raise RecipeError(f"{path}: not a recipe (a binary file, not YAML text); expected a recipe .yaml, a built-in "
                          f"recipe name or a run folder") from None
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe must be a mapping of sections, got {type(data).__name__}")
    return data


def _resolve_bases(path: Path, chain: tuple[Path, ...] = ()) -> OmegaConf:
    """Merge ``_base_`` files (in order, recursively), then the file itself: later keys win."""
    path = path.resolve()
    if path in chain:
        raise RecipeError(f"{path}: _base_ cycle: {' -> '.join(map(str, chain + (path,)))}")
    data = _read_yaml(path, chain)
    bases = data.pop(BASE_KEY, [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise RecipeError(f"{path}: key '{BASE_KEY}': expected a file name or a list of file names")
    merged = OmegaConf.create({})
    for base in bases:
        merged = OmegaConf.merge(merged, _resolve_bases(path.parent / base, chain + (path,)))
    try:
        return OmegaConf.merge(merged, OmegaConf.create(data))
    except OmegaConfBaseException as e:
        raise RecipeError(f"{path}: {e}") from None


def parse_overrides(overrides: list[str], origin: str = "--set") -> OmegaConf:
    """``["optimizer.lr=1e-4", "data.batch_size=8"]`` -> a config with typed values (YAML rules).

    Raises:
        RecipeError: naming the one override that is not ``KEY=VALUE`` or whose value is not valid YAML.
    """
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if "=" not in item or not key or any(not part for part in key.split(".")):
            raise RecipeError(f"{origin} {item!r}: expected KEY=VALUE with a dotted key, e.g. optimizer.lr=1e-4")
        value = item.split("=", 1)[1]
        try:
            yaml.safe_load(value)
        except yaml.YAMLError as e:
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise RecipeError(f"{origin} {item!r}: the value {value!r} is not valid YAML ({problem}); close "
                              f"brackets and quote text holding YAML characters, e.g. {key}=[1, 2]") from None
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except OmegaConfBaseException as e:
        raise RecipeError(f"{origin}: cannot parse {overrides}: {_omegaconf_message(e)}") from None


def _omegaconf_message(error: Exception) -> str:
    """OmegaConf's message without its ``full_key:``/``object_type=`` trailer lines."""
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def _to_container(config, where: str) -> dict:
    """Resolve ``${...}`` interpolations; a missing key or bad interpolation is a :class:`RecipeError` naming
    the key that holds it."""
    try:
        return OmegaConf.to_container(config, resolve=True)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        at = f"key '{key}': " if key else ""
        raise RecipeError(f"{where}: {at}cannot resolve an interpolation: {_omegaconf_message(e)} (a ${{...}} "
                          f"reference must name a key of the recipe, e.g. ${{data.root}}, or ${{oc.env:NAME}})"
                          ) from None


_import_builtin_parts = load_builtin_parts  # the old name (tests use it): registers models, datasets, losses, tasks


def _key_path(loc: tuple) -> str:
    return ".".join(str(p) for p in loc if not (isinstance(p, str) and p.startswith(("function-", "literal["))))


def _schema_fields(model_cls: type[BaseModel], loc: tuple) -> list[str]:
    """The field names of the section at ``loc`` (for did-you-mean on unknown keys)."""
    cls: Any = model_cls
    for part in loc:
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or part not in cls.model_fields:
            return []
        annotation = cls.model_fields[part].annotation
        for arg in (annotation, *typing.get_args(annotation)):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                cls = arg
                break
        else:
            return []
    return list(cls.model_fields) if isinstance(cls, type) and issubclass(cls, BaseModel) else []


def _format_validation_error(err: ValidationError, model_cls: type[BaseModel], prefix: tuple, extra_fields=()) -> list[str]:
    lines = []
    for item in err.errors():
        loc = tuple(prefix) + tuple(item["loc"])
        key = _key_path(loc)
        if item["type"] == "extra_forbidden":
            choices = list(extra_fields) or _schema_fields(model_cls, tuple(item["loc"])[:-1])
            hint = did_you_mean(str(item["loc"][-1]), choices)
            lines.append(f"key '{key}': unknown key{hint}" + (f"; expected one of: {', '.join(choices)}" if choices and not hint else ""))
        elif item["type"] == "missing":
            lines.append(f"key '{key}': required but missing")
        else:
            lines.append(f"key '{key}': {item['msg']} (got {item.get('input')!r})")
    return lines


def _signature_model(fn, skip: tuple[str, ...]) -> tuple[type[BaseModel], list[str]]:
    """A pydantic model of ``fn``'s keyword arguments (types from its annotations)."""
    target = fn.__init__ if inspect.isclass(fn) else fn
    sig = inspect.signature(target)
    hints = typing.get_type_hints(target) if not inspect.isclass(fn) or target is not object.__init__ else {}
    fields = {}
    for pname, param in sig.parameters.items():
        if pname in skip or pname == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = hints.get(pname, Any)
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[pname] = (annotation, default)
    model = create_model(
        f"{getattr(fn, '__name__', 'builder')}_options",
        __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True),
        **fields,
    )
    return model, list(fields)


def _check_builder_options(section: str, registry, name: str, options: dict, skip: tuple[str, ...],
                           declared: tuple[str, ...] = ()) -> tuple[list[str], dict]:
    try:
        builder = registry.get(name)
    except UnknownNameError as e:
        return [f"key '{section}.name': {e}"], options
    model, fields = _signature_model(builder, skip)
    try:
        validated = model(**options).model_dump()
    except ValidationError as err:
        # suggestions come from the builder's options and the section's own keys (data.root, data.batch_size, ...)
        return _format_validation_error(err, model, (section,), extra_fields=[*declared, *fields]), options
    return [], {k: validated[k] for k in options}


def _check_augmentation(section) -> list[str]:
    """Build every albumentations transform once, so a misspelt name or parameter fails before any work."""
    problems = []
    for split in ("train", "val", "precise_bn"):
        transforms = section.get(split) if isinstance(section, dict) else None
        try:
            validate_transforms(transforms, where=f"augmentation.{split}")
        except AugmentationError as e:
            problems.append(f"key 'augmentation.{split}': {e}")
    return problems


def _check_loss_task(config: dict) -> list[str]:
    """A loss is registered for one task (its targets and outputs): pairing it with another is an error."""
    loss, task = config.get("loss"), config.get("task")
    name = loss.get("name") if isinstance(loss, dict) else None
    if not isinstance(name, str) or name not in LOSSES or not isinstance(task, str) or task not in TASKS:
        return []
    owner = LOSSES.attributes(name).get("task")
    if owner is None or owner == task:
        return []
    return [f"key 'loss.name': {name!r} is a {owner} loss, but the recipe's task is {task!r}; choose one of: "
            f"{', '.join(LOSSES.names(task=task)) or '(none registered)'}"]


def validate_recipe(config: dict, source: str = "<recipe>") -> Recipe:
    """Validate a merged recipe mapping; raise one :class:`RecipeError` listing every problem."""
    load_builtin_parts()
    problems: list[str] = []
    recipe = None
    try:
        recipe = Recipe(**config)
    except ValidationError as err:
        problems += _format_validation_error(err, Recipe, ())
    task = config.get("task")
    if isinstance(task, str) and task not in TASKS:
        problems.append(f"key 'task': unknown task {task!r}{did_you_mean(task, TASKS)}; "
                        f"choose one of: {', '.join(TASKS.names())}")
    # The builders' options are checked even when the schema failed, so one run reports every problem.
    checks = [("model", MODELS, ModelSection, ()), ("data", DATASETS, DataSection, ("root", "split")),
              ("loss", LOSSES, LossSection, ()), ("codec", CODECS, CodecSection, ("input_size",))]
    validated_options = {}
    for section, registry, section_cls, skip in checks:
        raw = config.get(section)
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            continue
        options = {k: v for k, v in raw.items() if k not in section_cls.model_fields}
        errs, validated_options[section] = _check_builder_options(
            section, registry, raw["name"], options, skip, declared=tuple(section_cls.model_fields))
        problems += errs
    problems += _check_augmentation(config.get("augmentation"))
    problems += _check_loss_task(config)
    if problems:
        raise RecipeError(f"{source}: invalid recipe:\n  " + "\n  ".join(problems))
    for section, options in validated_options.items():
        for key, value in options.items():
            setattr(getattr(recipe, section), key, value)
    return recipe


def builtin_recipe_dir() -> Path:
    """The folder of the built-in recipes: package data ``densevision.builtin_recipes`` when installed (setup.py
    ships recipes/ under that name), else recipes/ beside the package in a checkout."""
    spec = importlib.util.find_spec("densevision.builtin_recipes")
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return Path(__file__).resolve().parents[1] / "recipes"


def builtin_recipe_names() -> list[str]:
    """The recipes usable by name (``tiramisu56_camvid``): the YAML files of :func:`builtin_recipe_dir`."""
    return sorted(path.stem for path in builtin_recipe_dir().glob("*.yaml"))


def find_recipe(path_or_name: str | os.PathLike) -> Path:
    """A recipe file from a path, or from a built-in recipe's name (``tiramisu56_camvid`` or ``....yaml``).

    An existing file or anything with a folder in it is taken as a path; an unknown bare name is an error listing
    the built-in names.

    Raises:
        RecipeError: a bare name that is neither a file nor a built-in recipe (with a did-you-mean).
    """
    path = Path(path_or_name)
    if path.exists() or len(path.parts) != 1:
        return path
    candidate = builtin_recipe_dir() / (path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml")
    if candidate.is_file():
        return candidate
    names = builtin_recipe_names()
    raise RecipeError(f"recipe {str(path_or_name)!r}: no such file, and no built-in recipe of that name"
                      f"{did_you_mean(path.stem, names)}; built-in recipes: {', '.join(names)}")


def load_recipe(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = (), demo: bool = False) -> Recipe:
    """Load, merge (``_base_``), override and validate a recipe.

    Args:
        path: the recipe's YAML file, or a built-in recipe's name (:func:`find_recipe`).
        overrides: dotted ``KEY=VALUE`` strings (``["optimizer.lr=1e-4", "data.batch_size=8"]``), applied last;
            values follow YAML typing.
        demo: also apply the recipe's ``demo`` overrides (the task's generated data and a short schedule),
            before ``overrides``: a key given on the command line wins over the demo section
            (``--demo --set train.epochs=1`` trains one epoch), and every value is validated after merging, so a
            bad command-line value is reported under ``--demo`` too.

    Returns:
        The validated :class:`Recipe`.

    Raises:
        RecipeError: naming the file, the key path, what was expected and a did-you-mean suggestion.
    """
    path = find_recipe(path)
    parsed = parse_overrides(list(overrides)) if overrides else None  # a bad --set fails before anything else
    merged = _resolve_bases(path)
    merged = _to_container(merged, str(path))
    merged.setdefault("name", path.stem)
    if demo:
        demo_section = merged.get("demo") or {}
        if not isinstance(demo_section, dict):
            raise RecipeError(f"{path}: key 'demo': expected a mapping of dotted keys to values, e.g. "
                              f"{{train.epochs: 2}}, got {demo_section!r}")
        demo_overrides = [f"{k}={_yaml_scalar(v)}" for k, v in demo_section.items()]
        merged = _apply(merged, demo_overrides, f"{path}: demo")
    if parsed is not None:
        merged = _merge(merged, parsed, "--set")
    merged["source"] = str(path)
    return validate_recipe(merged, source=str(path))


def override_recipe(recipe: Recipe, overrides: list[str] | tuple[str, ...], origin: str = "--set") -> Recipe:
    """``recipe`` with dotted ``KEY=VALUE`` overrides applied and validated again (as :func:`load_recipe` applies
    them): used to make command-line values win over what was applied after loading (the demo data location)."""
    if not overrides:
        return recipe
    merged = _merge(recipe.to_dict(), parse_overrides(list(overrides), origin), origin)
    source = recipe.source or "<recipe>"
    merged["source"] = recipe.source
    return validate_recipe(merged, source=source)


def _yaml_scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _apply(config: dict, overrides: list[str], origin: str) -> dict:
    if not overrides:
        return config
    return _merge(config, parse_overrides(overrides, origin), origin)


def _merge(config: dict, overrides, origin: str) -> dict:
    """``config`` with parsed overrides merged in and interpolations resolved."""
    try:
        merged = OmegaConf.merge(OmegaConf.create(config), overrides)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        raise RecipeError(f"{origin}: {f'key {key!r}: ' if key else ''}{_omegaconf_message(e)}") from None
    return _to_container(merged, origin)


def save_recipe(recipe: Recipe, path: str | os.PathLike) -> None:
    """Write the fully resolved recipe as YAML (atomically)."""
    write_text(path, recipe.to_yaml())
