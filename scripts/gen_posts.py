"""Write synthetic posts in the import record format, deterministic by seed.

    python scripts/gen_posts.py 1000000 --seed 7 --out feed.jsonl
    python scripts/gen_posts.py 500 --format json --start 1000 --out -

Each post depends only on (seed, its number), so `--start` cuts disjoint slices of one
endless feed: posts 1001-1500 of seed 7 are the same whichever run produced them.
Posts are generated one at a time, so memory stays flat for any N.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, timedelta
from typing import Any, Literal, NamedTuple, TextIO


class Stack(NamedTuple):
    """A technology a post is about, with its tools and one code sample."""

    name: str
    area: str
    language: str
    tools: tuple[str, ...]
    code: str


STACKS = (
    Stack(
        "python services",
        "backend",
        "python",
        ("fastapi", "pytest", "uvicorn", "ruff", "git", "logs"),
        "from fastapi import FastAPI\napp = FastAPI()\n\n@app.get('/health')\n"
        "def health():\n    return {'ok': True}",
    ),
    Stack(
        "node apis",
        "backend",
        "javascript",
        ("express", "jest", "npm", "pino"),
        "const express = require('express');\nconst app = express();\n"
        "app.get('/health', (req, res) => res.json({ ok: true }));",
    ),
    Stack(
        "laravel apps",
        "web",
        "php",
        ("artisan", "composer", "phpunit", "horizon"),
        "Route::get('/health', function () {\n    return ['ok' => true];\n});",
    ),
    Stack(
        "postgres databases",
        "data",
        "sql",
        ("psql", "pg_stat_statements", "explain"),
        "EXPLAIN ANALYZE\nSELECT id, title FROM posts\n"
        "WHERE updated_at > now() - interval '1 day';",
    ),
    Stack(
        "static sites",
        "frontend",
        "bash",
        ("make", "rsync", "curl", "git"),
        "set -euo pipefail\nmake build\nrsync -a public/ deploy@web:/srv/site/",
    ),
)
PROBLEMS = (
    "keeping staging close to production",
    "caching rendered articles",
    "making imports idempotent",
    "speeding up slow queries",
    "rolling back a bad deployment",
    "reducing queue backlogs",
    "monitoring background jobs",
    "tuning search indexing",
)
TITLE_FORMS = ("production checklist for", "a calm guide to", "field notes on", "lessons from")
EDITIONS = ("real project edition", "small team edition", "second look", "practical notes")
HEADINGS = ("production checks", "why this matters", "common mistakes", "how to measure")
SENTENCES = (
    "measure the current behaviour before changing anything.",
    "change one variable at a time and compare the result.",
    "keep the owner, expected result, and rollback note in the same place.",
    "a small verified change beats a broad rewrite.",
    "write the bypass conditions down for whoever debugs this later.",
    "test the migration on a copy of real data first.",
    "dashboards help only when the signals are easy to read under pressure.",
    "background work should be idempotent, logged, and safe to run again.",
)
CHECKLIST = (
    "capture the current behavior",
    "create a safe backup",
    "test the smallest change",
    "watch logs after release",
    "write the final note",
)
NOTES = (
    "view count is synthetic and only used for testing meta volume",
    "content is generated for import/load testing and should be reviewed before indexing",
)
STATUSES = ("drafted", "reviewed", "published")
DIFFICULTIES = ("beginner", "intermediate", "advanced")
FIRST_REVIEW = date(2020, 1, 1)
# Precomputed so a post costs a few cheap draws, not many calls to a sampler.
PARAGRAPHS = tuple(" ".join(three) for three in itertools.permutations(SENTENCES, 3))
SECTION_HEADINGS = tuple(pick for size in (1, 2) for pick in itertools.permutations(HEADINGS, size))


class Dice:
    """The draws of one post, read from a 512-bit hash of (seed, number): fast and repeatable."""

    def __init__(self, seed: int, number: int) -> None:
        digest = hashlib.blake2b(f"{seed}:{number}".encode(), digest_size=64).digest()
        self.bits = int.from_bytes(digest)

    def below(self, n: int) -> int:
        """A number from 0 to n - 1; uses about log2(n) of the remaining bits."""
        self.bits, value = divmod(self.bits, n)
        return value

    def pick(self, choices: Sequence[Any]) -> Any:
        return choices[self.below(len(choices))]

    def between(self, low: int, high: int) -> int:
        return low + self.below(high - low + 1)


def generate_posts(n: int, *, seed: int, start: int = 0) -> Iterator[dict[str, Any]]:
    """Yield `n` posts numbered `start + 1` to `start + n`, each a function of (seed, number)."""
    for number in range(start + 1, start + n + 1):
        yield make_post(number, seed=seed)


def make_post(number: int, *, seed: int) -> dict[str, Any]:
    """One post record, the same for the same (seed, number)."""
    dice = Dice(seed, number)
    stack: Stack = dice.pick(STACKS)
    problem: str = dice.pick(PROBLEMS)
    source_id = f"alphanode-{number:06d}"
    caption = f"{problem} with {stack.name} visual reference 1"
    url = f"https://images.example.com/{source_id}.jpg?w=1200"
    paragraphs = [dice.pick(PARAGRAPHS) for _ in range(dice.between(4, 7))]
    return {
        "source_id": source_id,
        "title": f"{dice.pick(TITLE_FORMS)} {problem} in {stack.name}: {dice.pick(EDITIONS)}",
        "body": _body(stack, paragraphs, dice.pick(SECTION_HEADINGS), caption=caption, url=url),
        "topic": f"{problem} / {stack.name}",
        "summary": f"a technical summary of {problem} in {stack.name}, measured and reversible.",
        "stack": [stack.name, stack.area, stack.language],
        "tools": list(stack.tools),
        "code_language": stack.language,
        "difficulty": dice.pick(DIFFICULTIES),
        "reading_time": dice.between(2, 30),
        "view_count": dice.between(0, 999_999),
        "score": {
            name: dice.between(0, 100) for name in ("quality", "freshness", "depth", "clarity")
        },
        "revision": {
            "status": dice.pick(STATUSES),
            "version": f"{dice.between(1, 3)}.{dice.between(0, 9)}.{dice.between(0, 9)}",
            "last_reviewed": (FIRST_REVIEW + timedelta(days=dice.between(0, 1800))).isoformat(),
        },
        "reference": f"anp-ref-{number:06d}-{dice.between(1000, 9999)}",
        "hash": f"{dice.below(2**96):024x}",
        "flags": {
            "ai_generated_style": 1,
            "has_images": 1,
            "image_heavy": dice.between(0, 1),
            "needs_human_review": dice.between(0, 1),
        },
        "checklist": list(CHECKLIST),
        "entities": [
            {"name": stack.name, "type": "stack"},
            {"name": stack.area, "type": "area"},
            {"name": problem, "type": "problem"},
        ],
        "images": [{"source": "unsplash", "url": url, "caption": caption}],
        "payload": {
            "source_id": source_id,
            "generator": "gen_posts",
            "paragraphs": len(paragraphs),
            "scenario": "for a content heavy programming website",
            "seed": number,
        },
        "notes": list(NOTES),
    }


def _body(
    stack: Stack, paragraphs: list[str], headings: Sequence[str], *, caption: str, url: str
) -> str:
    """Markdown: intro, image, 3-4 `##` sections, one fenced code block, a checklist."""
    parts = [paragraphs[0], f"![{caption}]({url})"]
    for index, heading in enumerate(headings):
        parts += [f"## {heading}", paragraphs[1 + index]]
        if index == 0:
            parts.append(f"```{stack.language}\n{stack.code}\n```")
    parts += ["## implementation checklist", "\n".join(f"- {item}" for item in CHECKLIST)]
    parts += ["## final notes", paragraphs[-1]]
    return "\n\n".join(parts)


def write_feed(
    posts: Iterable[dict[str, Any]], out: TextIO, *, format: Literal["jsonl", "json"] = "jsonl"
) -> int:
    """Write posts as JSON Lines or one JSON array, one post at a time; return how many."""
    count = 0
    out.write("[" if format == "json" else "")
    for post in posts:
        text = json.dumps(post)  # ASCII-only output: the fastest encoder path
        if format == "json":
            text = ("\n" if count == 0 else ",\n") + text
        else:
            text += "\n"
        out.write(text)
        count += 1
    out.write(("\n]\n" if count else "]\n") if format == "json" else "")
    return count


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("n", type=int, help="how many posts to write")
    parser.add_argument("--seed", type=int, default=0, help="the same seed gives the same posts")
    parser.add_argument("--out", default="-", help="output file, or - for stdout (default)")
    parser.add_argument("--format", choices=("jsonl", "json"), default="jsonl")
    parser.add_argument("--start", type=int, default=0, help="number the posts from START + 1")
    args = parser.parse_args(argv)
    if args.n < 0 or args.start < 0:
        parser.error("N and --start must not be negative")
    posts = generate_posts(args.n, seed=args.seed, start=args.start)
    if args.out == "-":
        write_feed(posts, sys.stdout, format=args.format)
        return 0
    with open(args.out, "w", encoding="utf-8", newline="\n") as out:
        write_feed(posts, out, format=args.format)
    return 0


if __name__ == "__main__":
    sys.exit(main())
