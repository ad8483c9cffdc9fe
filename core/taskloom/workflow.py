"""Workflow files: one YAML file describing a whole rolling study, validated before anything runs.

A workflow names the task templates, the generators and their calendar, the pool, the
trainer (local worker processes), the MLflow experiment and the collection; ``docs/workflow.md``
describes every field. :func:`load_workflow` reads a file, expands ``${VAR}`` and
``${VAR:-default}`` from the environment in string values, and validates it; every mistake
becomes one :class:`WorkflowError` listing each problem with its path in the file
(``generators[0].params.step``), its line, the value and what was expected. Passwords in URLs
are remembered so that :meth:`Workflow.mask` can hide them in every message.
"""

from __future__ import annotations

import datetime as dt
import inspect
import os
import re
import types
import typing
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from taskloom.errors import InputError, UnknownNameError
from taskloom.registry import lookup

#: ``${VAR}`` or ``${VAR:-default}`` in a string value
ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
#: the handler workers run when the workflow names none: taskloom.train_values (fit, predict,
#: run the record templates), registered as "train"
DEFAULT_HANDLER = "train"
#: the run tag that names the template a task came from (the collection's default key)
TEMPLATE_TAG = "template"
#: what hides a password in a printed URL
MASK = "***"
#: a pool, experiment or study name: what every store and tracking server accepts
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class _Loader(yaml.SafeLoader):
    """YAML's safe loader with dates left as strings, so a bad date is reported, not raised."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class WorkflowError(InputError):
    """A workflow file that cannot be read or is invalid; the message lists every problem."""


# ------------------------------------------------------------------------------------------
# The file's sections
# ------------------------------------------------------------------------------------------


class Section(BaseModel):
    """Base of every section: unknown keys are errors, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ObjectConfig(Section):
    """``{class, module_path, kwargs}``: something :func:`taskloom.instantiate` builds."""

    class_: str = Field(alias="class", min_length=1)
    module_path: str | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict)

    def as_config(self) -> dict[str, Any]:
        """The plain dict a task holds (``module_path`` left out when not given)."""
        config: dict[str, Any] = {"class": self.class_}
        if self.module_path is not None:
            config["module_path"] = self.module_path
        config["kwargs"] = dict(self.kwargs)
        return config


class TaskTemplate(Section):
    """One task template: the model, dataset and record configs, and a name for the results."""

    name: str | None = Field(None, pattern=NAME_PATTERN)
    model: ObjectConfig
    dataset: ObjectConfig
    record: list[ObjectConfig] = Field(default_factory=list)

    @field_validator("record", mode="before")
    @classmethod
    def _one_record_is_a_list_of_one(cls, value: Any) -> Any:
        """qlib accepts one record config as well as a list of them."""
        return [value] if isinstance(value, dict) else value

    @property
    def label(self) -> str:
        """The template's name, or its model's class when it has none."""
        return self.name or self.model.class_.rpartition(":")[2].rpartition(".")[2]

    def as_task(self) -> dict[str, Any]:
        """The task template as qlib writes one, tagged with :attr:`label` for collection."""
        return {"model": self.model.as_config(), "dataset": self.dataset.as_config(),
                "record": [record.as_config() for record in self.record],
                "tags": {TEMPLATE_TAG: self.label}}


class GeneratorConfig(Section):
    """A registered generator and its parameters (the calendar comes from ``calendar:``)."""

    name: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        """A generator name nobody registered is refused with the registered ones."""
        return registered("generator", name)

    @model_validator(mode="after")
    def _known_params(self) -> GeneratorConfig:
        """Every parameter must be one the generator's constructor takes."""
        accepted = inspect.signature(lookup("generator", self.name)).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
            return self
        for key in self.params:
            if key not in accepted:
                known = ", ".join(name for name in accepted if name != "calendar")
                raise ValueError(f"params.{key}: generator {self.name!r} has no parameter "
                                 f"{key!r}; it takes {known or 'none'}")
        return self


class CalendarConfig(Section):
    """The trading calendar: a file (one date a line), an exchange code, or weekdays.

    ``start``/``end`` bound an exchange calendar, and are required for weekdays (neither
    ``file`` nor ``exchange`` given).
    """

    file: str | None = None
    exchange: str | None = None
    start: dt.date | None = None
    end: dt.date | None = None

    @model_validator(mode="after")
    def _one_source(self) -> CalendarConfig:
        """A file, an exchange, or weekdays between start and end; start before end."""
        if self.file is not None and self.exchange is not None:
            raise ValueError("give file or exchange, not both")
        if self.file is None and self.exchange is None and (self.start is None
                                                            or self.end is None):
            raise ValueError("without file or exchange the calendar is every weekday from "
                             "start to end: give both")
        if self.start is not None and self.end is not None and self.start > self.end:
            raise ValueError(f"start {self.start} is after end {self.end}")
        return self


class PoolConfig(Section):
    """The task pool: its name (default: the workflow's) and store URL (default: SQLite)."""

    name: str | None = Field(None, pattern=NAME_PATTERN)
    storage: str | None = None


class TrainerConfig(Section):
    """How ``taskloom run`` trains: local worker processes running ``handler`` on the pool."""

    workers: int = Field(2, ge=1, description="local worker processes")
    handler: str = Field(DEFAULT_HANDLER, min_length=1,
                         description="registered handler name or module:function")
    lease_seconds: float = Field(60.0, gt=0, description="a worker's lease on its task")
    max_attempts: int = Field(2, ge=1, description="failed attempts before a task fails")
    init: str | None = Field(None, description="module:function run once in each worker")
    delay: bool = Field(False, description="train in two stages, as qlib's delay trainers: "
                        "record every task first (part_done), then train them in those runs")

    @model_validator(mode="after")
    def _delay_uses_the_built_in_stages(self) -> TrainerConfig:
        """The two delay stages run built-in handlers, so a custom handler cannot go with them."""
        if self.delay and self.handler != DEFAULT_HANDLER:
            raise ValueError(f"delay: true trains with the built-in stage handlers "
                             f"(train_begin, train_end), so handler {self.handler!r} cannot be "
                             "used with it; remove one of the two")
        return self


class ExperimentConfig(Section):
    """The MLflow experiment runs are recorded in, and its tracking store."""

    name: str | None = Field(None, min_length=1)
    tracking_uri: str | None = None


class ProcessorConfig(Section):
    """A registered collector processor and its keyword arguments."""

    name: str = Field(min_length=1)
    kwargs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        """A processor name nobody registered is refused with the registered ones."""
        return registered("processor", name)


class KeyConfig(Section):
    """What identifies a collected run: the values of these run tags, then a segment."""

    tags: list[str] = Field(default_factory=lambda: [TEMPLATE_TAG])
    segment: str | None = "test"


class CollectConfig(Section):
    """Collection: the collector, the run key, the processors and where outputs go."""

    collector: str = "recorder"
    kwargs: dict[str, Any] = Field(default_factory=dict)
    key: KeyConfig = Field(default_factory=KeyConfig)
    artifacts: dict[str, str] = Field(
        default_factory=lambda: {"pred": "pred.parquet", "label": "label.parquet"})
    processors: list[ProcessorConfig] = Field(
        default_factory=lambda: [ProcessorConfig(name="rolling_group")])
    outputs: str = "outputs"

    @field_validator("collector")
    @classmethod
    def _registered(cls, name: str) -> str:
        """A collector name nobody registered is refused with the registered ones."""
        return registered("collector", name)


class Workflow(Section):
    """A whole study, as a workflow file describes it (see ``docs/workflow.md``)."""

    name: str = Field(pattern=NAME_PATTERN)
    prepare: list[ObjectConfig] = Field(default_factory=list)
    templates: list[TaskTemplate] = Field(min_length=1)
    generators: list[GeneratorConfig] = Field(default_factory=list)
    calendar: CalendarConfig | None = None
    pool: PoolConfig = Field(default_factory=PoolConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    experiment: ExperimentConfig = Field(default_factory=ExperimentConfig)
    collect: CollectConfig = Field(default_factory=CollectConfig)

    _source: Path | None = PrivateAttr(None)
    _secrets: tuple[str, ...] = PrivateAttr(())

    @model_validator(mode="after")
    def _distinct_template_names(self) -> Workflow:
        """Templates are told apart by name in the results, so names must differ."""
        seen: dict[str, int] = {}
        for position, template in enumerate(self.templates):
            if template.label in seen:
                raise ValueError(
                    f"templates[{position}] and templates[{seen[template.label]}] are both "
                    f"named {template.label!r}: give each a distinct name: so their results "
                    "can be told apart")
            seen[template.label] = position
        return self

    # -- resolved values ----------------------------------------------------------------------

    @property
    def source(self) -> Path | None:
        """The file this workflow was read from (None when built in code)."""
        return self._source

    @property
    def pool_name(self) -> str:
        """The pool's name: ``pool.name``, else the workflow's name."""
        return self.pool.name or self.name

    @property
    def storage_url(self) -> str:
        """The pool's store: ``pool.storage``, else ``taskloom.db`` next to the outputs dir."""
        if self.pool.storage:
            return self.pool.storage
        return f"sqlite:///{self.outputs_dir.parent / 'taskloom.db'}"

    @property
    def experiment_name(self) -> str:
        """The MLflow experiment: ``experiment.name``, else the workflow's name."""
        return self.experiment.name or self.name

    @property
    def tracking_uri(self) -> str:
        """``experiment.tracking_uri``, else ``MLFLOW_TRACKING_URI``, else ``mlflow.db`` here."""
        return (self.experiment.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
                or f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}")

    @property
    def outputs_dir(self) -> Path:
        """Where collected outputs are written (relative to the working directory)."""
        return Path(self.collect.outputs).resolve()

    def mask(self, text: str) -> str:
        """``text`` with every password found in the workflow's URLs replaced by ``***``."""
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text


# ------------------------------------------------------------------------------------------
# Reading a file
# ------------------------------------------------------------------------------------------


def load_workflow(path: str | os.PathLike[str], environ: typing.Mapping[str, str] | None = None
                  ) -> Workflow:
    """Read, expand and validate the workflow file at ``path``; a :class:`WorkflowError` if bad.

    ``environ`` (default ``os.environ``) fills ``${VAR}`` and ``${VAR:-default}``. Template
    files named in ``templates:`` are read relative to the workflow file's folder; every
    other relative path is relative to the working directory.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkflowError(f"workflow {path}: cannot read it ({exc})") from None
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise WorkflowError(f"workflow {path}: not valid YAML: {' '.join(str(exc).split())}"
                            ) from None
    lines = _line_numbers(node)
    data = yaml.load(text, Loader=_Loader)  # noqa: S506 (a safe loader)
    if not isinstance(data, dict):
        raise WorkflowError(f"workflow {path}: expected a mapping of sections (name, "
                            f"templates, generators...), got {type(data).__name__}")
    env = os.environ if environ is None else environ
    problems: list[str] = []
    data = _expand(data, (), env, problems, lines)
    secrets = tuple(sorted(_passwords(data), key=len, reverse=True))
    templates = data.get("templates")
    if isinstance(templates, list):
        for position, item in enumerate(templates):
            if isinstance(item, str):
                try:
                    templates[position] = _template_file(path.parent / item)
                except ValueError as exc:
                    problems.append(f"{_where(('templates', position), lines)}: {item!r}: {exc}")
    if problems:
        raise WorkflowError(_report(path, problems, secrets))
    try:
        workflow = Workflow.model_validate(data)
    except ValidationError as exc:
        problems = [_problem(error, lines) for error in exc.errors()]
        raise WorkflowError(_report(path, problems, secrets)) from None
    workflow._source = path
    workflow._secrets = secrets
    return workflow


def registered(kind: str, name: str) -> str:
    """``name`` if a plugin registered it as a ``kind``, else a ValueError listing the known."""
    try:
        lookup(kind, name)
    except UnknownNameError as exc:
        raise ValueError(f"unknown {kind}; known: {', '.join(exc.known) or 'none'}") from None
    return name


def mask_url(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***`` (``mongodb://u:***@host``)."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return url
    return url if not password else url.replace(f":{password}@", f":{MASK}@", 1)


def _template_file(path: Path) -> Any:
    """The template mapping in a YAML file named in ``templates:``."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8-sig"), Loader=_Loader)  # noqa: S506
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read the template file {path}: "
                         f"{' '.join(str(exc).split())}") from None
    if isinstance(data, dict) and "task" in data and "dataset" not in data:
        data = data["task"]  # a qlib workflow config: the task is under "task"
    if not isinstance(data, dict):
        raise ValueError(f"template file {path} holds a {type(data).__name__}, "
                         "expected a task mapping (model, dataset, record)")
    return data


def _expand(value: Any, where: tuple[Any, ...], env: typing.Mapping[str, str],
            problems: list[str], lines: dict[tuple[Any, ...], int]) -> Any:
    """``value`` with ``${VAR}`` / ``${VAR:-default}`` filled in every string, recursively."""
    if isinstance(value, dict):
        return {key: _expand(item, (*where, key), env, problems, lines)
                for key, item in value.items()}
    if isinstance(value, list):
        return [_expand(item, (*where, i), env, problems, lines) for i, item in enumerate(value)]
    if not isinstance(value, str):
        return value

    def fill(match: re.Match[str]) -> str:
        """The variable's value, the default, or (unset) the text kept and a problem noted."""
        name, default = match.group(1), match.group(2)
        if name in env and env[name] != "":
            return env[name]
        if default is not None:
            return default
        problems.append(f"{_where(where, lines)}: environment variable {name} is not set "
                        f"(in {value!r}); set it or write ${{{name}:-default}}")
        return match.group(0)

    return ENV_PATTERN.sub(fill, value)


def _passwords(value: Any) -> set[str]:
    """The passwords of every URL among the string values of ``value``."""
    if isinstance(value, dict):
        return set().union(*(_passwords(item) for item in value.values()))
    if isinstance(value, list):
        return set().union(*(_passwords(item) for item in value))
    if isinstance(value, str) and "://" in value:
        try:
            password = urlsplit(value).password
        except ValueError:
            return set()
        return {password} if password else set()
    return set()


def _line_numbers(node: yaml.Node | None) -> dict[tuple[Any, ...], int]:
    """path in the document -> 1-based line of its value, from YAML's node tree."""
    lines: dict[tuple[Any, ...], int] = {}

    def walk(current: yaml.Node, where: tuple[Any, ...]) -> None:
        """Note the line of ``current`` and of everything under it."""
        lines[where] = current.start_mark.line + 1
        if isinstance(current, yaml.MappingNode):
            for key, item in current.value:
                if isinstance(key, yaml.ScalarNode):
                    lines[(*where, key.value)] = key.start_mark.line + 1
                    walk(item, (*where, key.value))
                    lines[(*where, key.value)] = key.start_mark.line + 1
        elif isinstance(current, yaml.SequenceNode):
            for i, item in enumerate(current.value):
                walk(item, (*where, i))

    if node is not None:
        walk(node, ())
    return lines


def _path_text(where: tuple[Any, ...]) -> str:
    """``("generators", 0, "params", "step")`` -> ``generators[0].params.step``."""
    text = ""
    for part in where:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "top level"


def _where(where: tuple[Any, ...], lines: dict[tuple[Any, ...], int]) -> str:
    """The path, and the line of the deepest part of it the file has."""
    for cut in range(len(where), -1, -1):
        if where[:cut] in lines:
            return f"{_path_text(where)} (line {lines[where[:cut]]})"
    return _path_text(where)


def _problem(error: Any, lines: dict[tuple[Any, ...], int]) -> str:
    """One pydantic error as ``path (line N): value: what was expected``."""
    where = tuple(error["loc"])
    kind = error["type"]
    message = error["msg"].removeprefix("Value error, ")
    if kind == "missing":
        return f"{_where(where, lines)}: missing; {_expected(where) or 'required'}"
    if kind == "extra_forbidden":
        known = _known_fields(where[:-1])
        return (f"{_where(where, lines)}: unknown field {where[-1]!r}"
                + (f"; expected one of {', '.join(known)}" if known else ""))
    if message.startswith("params.") and where and where[0] == "generators":
        sub, _, message = message.partition(": ")
        where = (*where, *sub.split("."))
        value = error["input"].get("params", {}).get(where[-1]) if isinstance(
            error["input"], dict) else None
        return f"{_where(where, lines)}: {value!r}: {message}"
    value = error.get("input")
    shown = "" if isinstance(value, dict) else f"{value!r}: "
    return f"{_where(where, lines)}: {shown}{message}"


def _section_at(where: tuple[Any, ...]) -> type[BaseModel] | None:
    """The section class found by following ``where`` from :class:`Workflow`."""
    current: Any = Workflow
    for part in where:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(part) or next(
            (f for f in current.model_fields.values() if f.alias == part), None)
        if field is None:
            return None
        current = _model_in(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _model_in(annotation: Any) -> Any:
    """The section class inside ``X``, ``X | None`` or ``list[X]``, else the annotation."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (list, typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                return arg
    return annotation


def _known_fields(where: tuple[Any, ...]) -> list[str]:
    """The keys the section at ``where`` accepts."""
    section = _section_at(where)
    if section is None:
        return []
    return [field.alias or name for name, field in section.model_fields.items()]


def _expected(where: tuple[Any, ...]) -> str:
    """``expected <description>`` for a required field, from its Field description or type."""
    section = _section_at(where[:-1])
    if section is None or not isinstance(where[-1], str):
        return ""
    field = section.model_fields.get(where[-1])
    if field is None:
        return ""
    what = _model_in(field.annotation)
    if isinstance(what, type) and issubclass(what, BaseModel):
        return f"expected a mapping with {', '.join(_known_fields(where))}"
    plain = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    return f"expected {plain.get(what, getattr(what, '__name__', what))}"


def _report(path: Path, problems: list[str], secrets: tuple[str, ...]) -> str:
    """The error message: one line for one problem, else a count and one line each."""
    def masked(text: str) -> str:
        """``text`` with the secrets hidden."""
        for secret in secrets:
            text = text.replace(secret, MASK)
        return text

    if len(problems) == 1:
        return masked(f"workflow {path}: {problems[0]}")
    return masked(f"workflow {path}: {len(problems)} problems\n"
                  + "\n".join(f"  {problem}" for problem in problems))
