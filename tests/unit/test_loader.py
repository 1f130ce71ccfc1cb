"""Tests for manager_cli.loader: entry points and module:Class names."""

from __future__ import annotations

import pytest

from manager_cli.errors import EXIT_CONFIG, EXIT_USAGE, ManagerLoadError, UnknownNameError
from manager_cli.examples.hostinfo import HostInfoManager
from manager_cli.loader import (
    ENTRY_POINT_GROUP,
    list_managers,
    load_manager_class,
    manager_names,
    resolve_name,
    topic_for,
)
from manager_cli.manager import Manager


class NoTopicManager(Manager):
    """A manager without a TOPIC: its topic is the name it was loaded by."""


def test_entry_point_group_name():
    assert ENTRY_POINT_GROUP == "managerctl.managers"


def test_list_managers_includes_hostinfo():
    entries = {entry.name: entry for entry in list_managers()}
    assert "hostinfo" in entries
    assert entries["hostinfo"].target == "manager_cli.examples.hostinfo:HostInfoManager"
    assert entries["hostinfo"].distribution == "managerctl"


def test_list_managers_is_sorted_by_name():
    names = manager_names()
    assert names == sorted(names)
    assert names == [entry.name for entry in list_managers()]


def test_load_by_entry_point_name():
    assert load_manager_class("hostinfo") is HostInfoManager


def test_load_by_module_and_class():
    assert load_manager_class("manager_cli.examples.hostinfo:HostInfoManager") is HostInfoManager


def test_load_a_manager_from_any_importable_module():
    cls = load_manager_class(f"{__name__}:NoTopicManager")
    assert cls is NoTopicManager


def test_unknown_name_names_the_known_managers():
    with pytest.raises(UnknownNameError) as info:
        load_manager_class("nosuch")
    assert info.value.exit_code == EXIT_USAGE
    message = str(info.value)
    assert "'nosuch'" in message
    assert "hostinfo" in message


def test_unimportable_module_is_a_load_error():
    with pytest.raises(ManagerLoadError) as info:
        load_manager_class("nosuch.module:X")
    assert info.value.exit_code == EXIT_CONFIG == 78
    assert "nosuch.module" in str(info.value)


def test_module_that_raises_on_import_is_a_load_error(tmp_path, monkeypatch):
    (tmp_path / "broken_manager_mod.py").write_text("raise RuntimeError('half installed')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ManagerLoadError, match="half installed") as info:
        load_manager_class("broken_manager_mod:Anything")
    assert info.value.exit_code == 78


def test_not_a_manager_is_a_load_error():
    with pytest.raises(ManagerLoadError) as info:
        load_manager_class("json:dumps")
    assert info.value.exit_code == 78
    assert "not a subclass" in str(info.value)


def test_a_class_that_is_not_a_manager_is_a_load_error():
    with pytest.raises(ManagerLoadError):
        load_manager_class("collections:OrderedDict")


def test_missing_attribute_is_a_load_error():
    with pytest.raises(ManagerLoadError, match="NoSuchClass"):
        load_manager_class("manager_cli.examples.hostinfo:NoSuchClass")


def test_resolve_name():
    assert resolve_name("hostinfo") == (
        "hostinfo",
        "manager_cli.examples.hostinfo:HostInfoManager",
    )
    assert resolve_name("pkg.mod:MyManager") == ("mymanager", "pkg.mod:MyManager")


def test_topic_for_uses_the_class_topic():
    assert topic_for("hostinfo", HostInfoManager) == "hostinfo"
    assert topic_for("other-name", HostInfoManager) == "hostinfo"


def test_topic_for_without_topic_is_the_entry_point_name():
    assert topic_for("compute", NoTopicManager) == "compute"


def test_topic_for_module_class_without_topic_is_the_class_name():
    assert topic_for(f"{__name__}:NoTopicManager", NoTopicManager) == "notopicmanager"
