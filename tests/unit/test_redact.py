"""Tests for manager_cli.redact: URL passwords never reach output or logs."""

from __future__ import annotations

import pytest

from manager_cli.redact import MASK, mask_url_passwords


def test_mask_is_three_stars():
    assert MASK == "***"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("rabbit://guest:guest@localhost:5672/", "rabbit://guest:***@localhost:5672/"),
        ("rabbit://nova:s3cr3t@mq.example.org/nova", "rabbit://nova:***@mq.example.org/nova"),
        ("amqp://user:p%40ss@h/", "amqp://user:***@h/"),
        ("mysql+pymysql://nova:secret@db/nova", "mysql+pymysql://nova:***@db/nova"),
        ("rabbit://:onlypass@h:5672/", "rabbit://:***@h:5672/"),
    ],
)
def test_single_host_urls(url, masked):
    assert mask_url_passwords(url) == masked


def test_multi_host_url_masks_every_password():
    url = "rabbit://nova:pw1@mq1:5672,nova:pw2@mq2:5672,other:pw3@mq3:5671/nova"
    assert mask_url_passwords(url) == (
        "rabbit://nova:***@mq1:5672,nova:***@mq2:5672,other:***@mq3:5671/nova"
    )


def test_multi_host_url_with_a_host_without_credentials():
    url = "rabbit://nova:pw1@mq1:5672,mq2:5672/"
    assert mask_url_passwords(url) == "rabbit://nova:***@mq1:5672,mq2:5672/"


def test_urls_embedded_in_text():
    text = (
        "cannot connect to rabbit://nova:topsecret@mq1:5672/ "
        "(fallback amqp://admin:hunter2@mq2/) after 3 attempts"
    )
    masked = mask_url_passwords(text)
    assert "topsecret" not in masked
    assert "hunter2" not in masked
    assert masked == (
        "cannot connect to rabbit://nova:***@mq1:5672/ "
        "(fallback amqp://admin:***@mq2/) after 3 attempts"
    )


def test_url_in_a_traceback_line_with_quotes():
    text = "ValueError: bad url 'rabbit://u:pw@h:5672/'\n  next line"
    assert mask_url_passwords(text) == "ValueError: bad url 'rabbit://u:***@h:5672/'\n  next line"


@pytest.mark.parametrize(
    "text",
    [
        "rabbit://",
        "rabbit://localhost:5672/",
        "rabbit://guest@localhost:5672/",
        "rabbit://mq1:5672,mq2:5672/",
        "http://keystone:5000/v3",
        "mail me at ops@example.org",
        "no url here at all",
        "",
    ],
)
def test_text_without_passwords_is_unchanged(text):
    assert mask_url_passwords(text) == text


def test_masking_is_idempotent():
    once = mask_url_passwords("rabbit://u:pw@h1,u:pw2@h2/")
    assert mask_url_passwords(once) == once


def test_password_with_a_raw_at_sign_is_masked_whole():
    assert "ss@" not in mask_url_passwords("rabbit://u:p@ss@h:5672/")
