"""taskloom.instantiate: qlib's init_instance_by_config, nested configs, and errors that name
the config path."""

from __future__ import annotations

import copy
import importlib
import sys

import pytest
import taskloom
from taskloom.errors import ConfigError, TaskloomError
from taskloom.instantiate import is_config

HERE = __name__


class Point:
    """A class to build: two numbers."""

    def __init__(self, x: int, y: int = 0) -> None:
        self.x, self.y = x, y


class Holder:
    """A class holding whatever it is given, to see what nested configs became."""

    def __init__(self, item=None, items=None, options=None) -> None:
        self.item, self.items, self.options = item, items, options


class Record:
    """Takes model and dataset, as a qlib record template does."""

    def __init__(self, recorder: str, model=None, dataset=None) -> None:
        self.recorder, self.model, self.dataset = recorder, model, dataset


class Strict:
    """Fails in its own constructor, as a user's class can."""

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        self.size = size


def make_point(x: int) -> Point:
    """A factory function: qlib configs may name functions as well as classes."""
    return Point(x, x)


# --------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        {"class": "Point", "module_path": HERE, "kwargs": {"x": 1, "y": 2}},
        {"class": "Point", "module_path": sys.modules[HERE], "kwargs": {"x": 1, "y": 2}},
        {"class": f"{HERE}:Point", "kwargs": {"x": 1, "y": 2}},
        {"class": f"{HERE}.Point", "kwargs": {"x": 1, "y": 2}},
        {"class": Point, "kwargs": {"x": 1, "y": 2}},
    ],
    ids=["name+module_path", "module object", "colon path", "dotted path", "class object"],
)
def test_every_way_of_naming_the_class_builds_it(config):
    point = taskloom.instantiate(config)
    assert type(point) is Point and (point.x, point.y) == (1, 2)


def test_a_string_config_is_a_class_path_without_arguments():
    holder = taskloom.instantiate(f"{HERE}:Holder")
    assert type(holder) is Holder and holder.item is None


def test_a_function_config_is_called():
    point = taskloom.instantiate({"class": f"{HERE}:make_point", "kwargs": {"x": 3}})
    assert (point.x, point.y) == (3, 3)


def test_default_module_resolves_a_bare_class_name():
    point = taskloom.instantiate({"class": "Point", "kwargs": {"x": 4}}, default_module=HERE)
    assert point.x == 4


def test_a_real_estimator_config_builds_with_its_keywords():
    model = taskloom.instantiate(
        {"class": "Ridge", "module_path": "sklearn.linear_model", "kwargs": {"alpha": 3.0}}
    )
    assert type(model).__name__ == "Ridge" and model.alpha == 3.0


def test_a_py_file_module_path_is_imported(tmp_path):
    source = tmp_path / "my_models.py"
    source.write_text("class Tiny:\n    def __init__(self, n):\n        self.n = n\n")
    tiny = taskloom.instantiate({"class": "Tiny", "module_path": str(source), "kwargs": {"n": 5}})
    assert tiny.n == 5


def test_nested_configs_are_built_depth_first_in_dicts_lists_and_tuples():
    point = {"class": f"{HERE}:Point", "kwargs": {"x": 1}}
    config = {
        "class": f"{HERE}:Holder",
        "kwargs": {
            "item": {"class": f"{HERE}:Holder", "kwargs": {"item": point}},
            "items": [("first", point), ("second", {"class": "Point", "module_path": HERE,
                                                    "kwargs": {"x": 2}})],
            "options": {"inner": {"deeper": point}, "plain": 3},
        },
    }
    holder = taskloom.instantiate(config)
    assert type(holder.item) is Holder and type(holder.item.item) is Point
    assert [type(pair) for pair in holder.items] == [tuple, tuple]
    assert [(name, p.x) for name, p in holder.items] == [("first", 1), ("second", 2)]
    assert type(holder.options["inner"]["deeper"]) is Point and holder.options["plain"] == 3


def test_nested_configs_build_a_scikit_learn_pipeline():
    pipeline = taskloom.instantiate({
        "class": "sklearn.pipeline:Pipeline",
        "kwargs": {"steps": [
            ["impute", {"class": "sklearn.impute:SimpleImputer", "kwargs": {"strategy": "mean"}}],
            ["fit", {"class": "sklearn.linear_model:Ridge", "kwargs": {"alpha": 2.0}}],
        ]},
    })
    assert [type(step).__name__ for _, step in pipeline.steps] == ["SimpleImputer", "Ridge"]


def test_a_bare_class_name_without_module_stays_data_for_its_owner():
    processors = [{"class": "DropnaLabel"}, {"class": "CSZScoreNorm", "kwargs": {"fields": 1}}]
    holder = taskloom.instantiate({"class": f"{HERE}:Holder", "kwargs": {"items": processors}})
    assert holder.items == processors
    assert not is_config({"class": "DropnaLabel"})
    assert is_config({"class": "DropnaLabel", "module_path": "qlib.data.dataset.processor"})


def test_the_config_is_not_changed():
    config = {"class": f"{HERE}:Holder",
              "kwargs": {"item": {"class": f"{HERE}:Point", "kwargs": {"x": 1}}, "items": [1]}}
    before = copy.deepcopy(config)
    holder = taskloom.instantiate(config)
    holder.items.append(2)
    assert config == before


def test_overrides_replace_top_level_kwargs_and_are_passed_as_given():
    as_given = {"class": f"{HERE}:Point", "kwargs": {"x": 9}}
    config = {"class": f"{HERE}:Holder",
              "kwargs": {"item": {"class": f"{HERE}:Point", "kwargs": {"no_such": 1}}}}
    holder = taskloom.instantiate(config, item=as_given, options={"a": 1})
    assert holder.item is as_given  # not built, and the broken config it replaced was not
    assert holder.options == {"a": 1}


def test_try_kwargs_go_only_to_classes_that_take_them():
    record = taskloom.instantiate({"class": f"{HERE}:Record", "kwargs": {"recorder": "r"}},
                                  try_kwargs={"model": "m", "dataset": "d", "other": "x"})
    assert (record.model, record.dataset) == ("m", "d")
    point = taskloom.instantiate({"class": f"{HERE}:Point", "kwargs": {"x": 1}},
                                 try_kwargs={"model": "m"})
    assert not hasattr(point, "model")


def test_an_object_passes_through_unless_accept_types_refuses_it():
    point = Point(1)
    assert taskloom.instantiate(point) is point
    assert taskloom.instantiate(point, accept_types=Point) is point
    with pytest.raises(ConfigError, match=r"model: expected a config or a Holder, got Point"):
        taskloom.instantiate(point, accept_types=Holder, config_path="model")


def test_the_public_name_stays_the_function_after_importing_its_module():
    importlib.import_module("taskloom.instantiate")
    assert callable(taskloom.instantiate)
    from taskloom import instantiate

    assert instantiate is taskloom.instantiate


# --------------------------------------------------------------------------------------------
# Errors name the config path and the bad value
# --------------------------------------------------------------------------------------------


def test_a_bad_module_names_module_path_and_chains_the_import_error():
    with pytest.raises(ConfigError, match=r"^model\.module_path: cannot import module "
                                          r"'sklearn\.linear_modl'") as caught:
        taskloom.instantiate({"class": "Ridge", "module_path": "sklearn.linear_modl"},
                             config_path="model")
    assert isinstance(caught.value.__cause__, ModuleNotFoundError)
    assert isinstance(caught.value, TaskloomError) and isinstance(caught.value, ValueError)


def test_a_bad_class_names_the_class_and_chains_the_attribute_error():
    with pytest.raises(ConfigError, match=r"^model\.class: module 'sklearn\.linear_model' has "
                                          r"no attribute 'Ridg'") as caught:
        taskloom.instantiate({"class": "sklearn.linear_model:Ridg"}, config_path="model")
    assert isinstance(caught.value.__cause__, AttributeError)


def test_a_bad_keyword_names_its_path_and_value():
    config = {"class": "Ridge", "module_path": "sklearn.linear_model",
              "kwargs": {"alpha": 1.0, "num_leaves": 31}}
    with pytest.raises(ConfigError, match=r"^model\.kwargs\.num_leaves: .*Ridge takes no "
                                          r"keyword 'num_leaves' \(given 31\)"):
        taskloom.instantiate(config, config_path="model")


def test_a_bad_keyword_deep_inside_names_the_whole_path():
    task = {"class": f"{HERE}:Holder", "kwargs": {"options": {"handler": {
        "class": f"{HERE}:Point", "kwargs": {"x": 1, "end_tme": "2020-01-01"}}}}}
    with pytest.raises(ConfigError, match=r"^dataset\.kwargs\.options\.handler\.kwargs\.end_tme: "
                                          r".*Point takes no keyword 'end_tme' "
                                          r"\(given '2020-01-01'\)"):
        taskloom.instantiate(task, config_path="dataset")


def test_a_bad_keyword_in_a_list_names_the_position():
    config = {"class": f"{HERE}:Holder",
              "kwargs": {"items": [1, {"class": f"{HERE}:Point", "kwargs": {"z": 1}}]}}
    with pytest.raises(ConfigError, match=r"^config\.kwargs\.items\.1\.kwargs\.z: "):
        taskloom.instantiate(config)


def test_a_missing_argument_names_the_kwargs_and_chains_the_type_error():
    with pytest.raises(ConfigError, match=r"^model\.kwargs: .*Point: missing a required "
                                          r"argument: 'x'") as caught:
        taskloom.instantiate({"class": f"{HERE}:Point"}, config_path="model")
    assert isinstance(caught.value.__cause__, TypeError)


def test_a_bad_override_is_named_like_a_keyword():
    with pytest.raises(ConfigError, match=r"^model\.kwargs\.colour: .*Point takes no keyword"):
        taskloom.instantiate({"class": f"{HERE}:Point", "kwargs": {"x": 1}},
                             config_path="model", colour="red")


def test_a_bare_class_name_without_any_module_is_refused():
    with pytest.raises(ConfigError, match=r"^model\.class: 'Ridge' names no module"):
        taskloom.instantiate({"class": "Ridge"}, config_path="model")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"module_path": "x"}, r"^cfg: a config needs a 'class' key"),
        ({"class": f"{HERE}:Point", "kwarg": {"x": 1}},
         r"^cfg: unknown config key\(s\) \['kwarg'\]"),
        ({"class": f"{HERE}:Point", "kwargs": [1]}, r"^cfg\.kwargs: expected a mapping"),
        ({"class": 42}, r"^cfg\.class: expected a class or a class path, got 42"),
        ({"class": f"{HERE}:HERE"}, r"^cfg\.class: .* is a str, not a class or function"),
        ("file:///tmp/model.pkl", r"^cfg: 'file:///tmp/model.pkl' is a pickle file"),
    ],
    ids=["no class", "typo key", "kwargs not a mapping", "class not a class", "not callable",
         "pickle"],
)
def test_malformed_configs_are_config_errors(config, message):
    with pytest.raises(ConfigError, match=message):
        taskloom.instantiate(config, config_path="cfg")


def test_a_module_that_fails_to_import_is_a_config_error(tmp_path):
    source = tmp_path / "broken_models.py"
    source.write_text("raise RuntimeError('half written')\n")
    with pytest.raises(ConfigError, match=r"^model\.module_path: cannot import module .*"
                                          r"RuntimeError: half written") as caught:
        taskloom.instantiate({"class": "Tiny", "module_path": str(source)}, config_path="model")
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_a_lightgbm_config_builds_when_installed_and_names_lightgbm_when_not():
    config = {"class": "lightgbm.LGBMRegressor", "kwargs": {"num_leaves": 15}}
    try:
        import lightgbm  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match=r"^model\.class: cannot import module "
                                              r"'lightgbm' \(from 'lightgbm\.LGBMRegressor'\)"):
            taskloom.instantiate(config, config_path="model")
    else:
        assert taskloom.instantiate(config).num_leaves == 15


def test_an_error_inside_the_constructor_keeps_its_type_and_gains_the_path():
    with pytest.raises(ValueError, match="size must be >= 0") as caught:
        taskloom.instantiate({"class": f"{HERE}:Strict", "kwargs": {"size": -1}},
                             config_path="model.kwargs.estimator")
    assert not isinstance(caught.value, ConfigError)
    assert any("model.kwargs.estimator" in note for note in caught.value.__notes__)
