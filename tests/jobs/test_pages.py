"""Tests for jobs/pages.py: the site's page export becomes a record that validates."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import pytest

from jobs.pages import parse_page
from jobs.posts import Parsed, Post, validate_post

# The site's export of one article, byte for byte (a copy of shared/samples/).
SAMPLE = (
    Path(__file__).resolve().parents[2] / "scripts" / "samples" / "staging-close-to-production.txt"
)


@pytest.fixture
def sample_text() -> str:
    return SAMPLE.read_text(encoding="utf-8")


def post_from(text: str) -> Post:
    item = validate_post(parse_page(text), position=1)
    assert isinstance(item, Parsed), item
    return item.post


def sections(body: str) -> list[str]:
    return re.findall(r"^## (.+)$", body, flags=re.MULTILINE)


def test_the_sample_page_gives_every_field(sample_text: str) -> None:
    # Given the site's export of one article
    # When it is parsed and validated
    post = post_from(sample_text)
    meta = json.loads(post.meta_json())
    # Then every field of the page is in the post
    assert post.source_id == "alphanode-032655"
    assert post.title == (
        "production checklist for keeping staging close to production in python services: "
        "real project edition"
    )
    assert post.topic == "keeping staging close to production / python services"
    assert post.summary is not None and post.summary.startswith("this ai-style technical summary")
    assert post.summary.endswith("maintainable documentation.")
    assert (post.difficulty, post.reading_time, post.view_count) == ("advanced", 12, 384999)
    assert meta["stack"] == ["python services", "backend", "python"]
    assert meta["tools"] == ["fastapi", "pytest", "uvicorn", "ruff", "git", "logs"]
    assert meta["code_language"] == "python"
    assert meta["score"] == {"quality": 77, "freshness": 48, "depth": 70, "clarity": 96}
    assert meta["revision"] == {
        "status": "drafted",
        "version": "1.1.2",
        "last_reviewed": "2024-01-12",
    }
    assert (post.revision_version, post.last_reviewed) == ("1.1.2", date(2024, 1, 12))
    assert meta["reference"] == "anp-ref-032655-7930"
    assert meta["hash"] == "d254b96df69e5ac99c8fc8a0"
    assert meta["flags"] == {
        "ai_generated_style": 1,
        "has_images": 1,
        "image_heavy": 0,
        "needs_human_review": 1,
    }
    assert post.needs_review is True
    assert meta["checklist"] == [
        "capture the current behavior",
        "create a safe backup",
        "test the smallest change",
        "watch logs after release",
        "write the final note",
    ]
    assert meta["entities"] == [
        {"name": "python services", "type": "stack"},
        {"name": "backend", "type": "area"},
        {"name": "keeping staging close to production", "type": "problem"},
    ]
    assert meta["images"] == [
        {
            "source": "unsplash",
            "url": "https://images.unsplash.com/photo-1555949963-aa79dcee981c"
            "?auto=format&fit=crop&w=1200&q=80",
            "caption": "keeping staging close to production with python services "
            "visual reference 1",
        }
    ]
    assert meta["payload"] == {
        "source_id": "alphanode-032655",
        "generator": "anp content synthesizer",
        "paragraphs": 7,
        "scenario": "for a content heavy programming website",
        "seed": 32655,
    }
    assert len(meta["notes"]) == 3
    assert meta["notes"][0].startswith("sanitized array meta")
    assert len(meta["ai_outline"]) == 4
    assert meta["ai_outline"][1] == "problem: keeping staging close to production"
    assert meta["ai_brief"].startswith("the article is written like a careful ai generated")


def test_the_sample_body_is_markdown_with_four_sections_and_fenced_code(sample_text: str) -> None:
    body = post_from(sample_text).body
    # Then the headings are exactly the page's four sections, in order, and no title heading
    assert sections(body) == [
        "production checks",
        "why this matters",
        "implementation checklist",
        "final notes",
    ]
    assert not re.search(r"^# ", body, flags=re.MULTILINE)
    # And the intro comes first, before the image and the first section
    assert body.startswith("this is a field note for developers")
    assert body.index("![keeping staging") < body.index("## production checks")
    # And the code is one python block, indentation and inner blank line kept
    blocks = re.findall(r"^```(\w*)\n(.*?)\n```$", body, flags=re.MULTILINE | re.DOTALL)
    assert blocks == [
        (
            "python",
            "from fastapi import FastAPI\napp = FastAPI()\n\n@app.get('/health')\n"
            "def health():\n    return {'ok': True}",
        )
    ]
    assert blocks[0][1].count("@app.get('/health')") == 1
    # And the checklist is a Markdown list under its heading
    checklist = body.split("## implementation checklist\n\n")[1].split("\n\n")[0]
    assert checklist.splitlines()[0] == "- capture the current behavior"
    assert len(checklist.splitlines()) == 5
    # And the image is linked from its source, the caption line gone, the meta not in the body
    assert (
        "![keeping staging close to production with python services visual reference 1]"
        "(https://images.unsplash.com/photo-1555949963-aa79dcee981c" in body
    )
    assert "image source:" not in body
    assert "post meta" not in body and "Similar Posts" not in body
    assert body.rstrip().endswith("so future maintenance is easier.")


def test_bom_crlf_blank_lines_and_no_break_spaces_give_the_same_hash(sample_text: str) -> None:
    # Given the sample and variants saved with a BOM and CRLF, extra blank lines, NBSP indents
    plain = post_from(sample_text)
    windows = "\ufeff" + sample_text.replace("\n", "\r\n")
    roomy = sample_text.replace("\n\n", "\n\n\n\n")
    nbsp = sample_text.replace("  • ", "\u00a0 • ")
    # When each is parsed, then each has the same content
    for variant in (windows, roomy, nbsp):
        post = post_from(variant)
        assert post.content_hash == plain.content_hash
        assert post.body == plain.body


def test_a_page_without_its_meta_block_is_not_a_page() -> None:
    with pytest.raises(ValueError, match="no '<site> post meta' line"):
        parse_page("just some text\n\nwith paragraphs.")


def test_an_empty_page_is_not_a_page() -> None:
    with pytest.raises(ValueError, match="not a page export"):
        parse_page("")


def test_a_page_without_a_title_is_not_a_page() -> None:
    with pytest.raises(ValueError, match="no title"):
        parse_page("|\n\nalphanode post meta\n\ntopicx\n")


def test_a_score_bullet_without_a_value_is_reported(sample_text: str) -> None:
    broken = sample_text.replace("  • quality: 77", "  • quality 77")
    with pytest.raises(ValueError, match="expected 'key: value' under score"):
        parse_page(broken)


def test_a_number_that_does_not_read_as_one_reaches_validation_as_text(sample_text: str) -> None:
    # Given a page whose reading time is words
    record = parse_page(sample_text.replace("reading time12", "reading timetwelve"))
    # Then the record keeps the text and validation names the field
    assert record["reading_time"] == "twelve"
    item = validate_post(record, position=1)
    assert not isinstance(item, Parsed)
    assert item.reason.startswith("reading_time: expected a whole number of minutes")
    assert item.source_id == "alphanode-032655"


SMALL_PAGE = """|

deploying node apis without downtime

for example, a release can go out while users are active. this note shows how.

rollout plan

for node services, start the new process before stopping the old one, and keep it small.

const express = require('express');
const app = express();
app.listen(3000);

  • drain connections
  • swap the port

diagram of the rollout
diagram of the rollout. image source: unsplash

alphanode post meta

code languagejavascript
payload
  • source id: node-000001
Similar Posts
"""


def test_code_headings_and_lists_are_recognised_in_another_page() -> None:
    # Given a small page in another language whose prose starts with "for"
    record = parse_page(SMALL_PAGE)
    body = str(record["body"])
    # Then prose stays prose, the code is fenced in its language, and the list is a list
    assert record["source_id"] == "node-000001"
    assert record["title"] == "deploying node apis without downtime"
    assert sections(body) == ["rollout plan"]
    assert body.count("```") == 2
    assert "```javascript\nconst express = require('express');" in body
    assert "- drain connections\n- swap the port" in body
    assert "for node services, start the new process" in body.split("```")[0]
    # And an image whose URL is unknown is dropped, with its reference line
    assert "diagram of the rollout" not in body
