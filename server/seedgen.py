"""Deterministic rows for the seeder: users, tags, posts with their tags and skewed comment threads."""

from __future__ import annotations

import bisect
import itertools
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

TAG_NAME = re.compile(r"[a-z0-9-]{1,32}")
YEAR = 365 * 86400.0
USER_LEAD = 86400.0  # the first user exists a day before the first post
# Comment counts per post follow a Lomax (Pareto II) law with shape 2: a median of about 4, about 1 %
# of posts past 100 comments and the busiest ones in the hundreds or thousands; the cap bounds one
# post's thread and changes the mean by under 1 %.
COMMENT_SHAPE = 2.0
COMMENT_CAP = 5000
# Tag popularity is Zipf-like: the rank-r tag is chosen with weight 1 / r^0.9.
TAG_SKEW = 0.9
FIRST = ("Ada", "Alan", "Barbara", "Claude", "Donald", "Edsger", "Frances", "Grace", "Guido", "Hedy",
         "Ivan", "Jean", "Ken", "Linus", "Margaret", "Niklaus", "Radia", "Sophie", "Tim", "Yukihiro")
LAST = ("Hopper", "Knuth", "Lovelace", "Turing", "Liskov", "Dijkstra", "Allen", "Ritchie", "Wirth",
        "Perlman", "Hamilton", "Lamarr", "Wilson", "Torvalds", "Sammet", "Bartik", "Kay", "Backus")
SYLLABLES = ("ka", "lo", "mi", "ne", "ra", "su", "to", "vi", "de", "po", "qua", "ri", "sen", "tal", "mor",
             "lin", "dex", "pho", "gra", "nu", "ber", "cy", "zo", "fan", "ul", "ex", "om", "ist", "ar", "en")


@dataclass(frozen=True)
class Plan:
    """What to generate; equal plans generate equal rows."""

    posts: int
    users: int
    tags: int = 300
    comments_per_post: float = 10.0
    seed: int = 1
    until: datetime = datetime(2025, 1, 1, tzinfo=timezone.utc)  # timestamps fall in the year before this instant
    chunk: int = 2000  # posts per chunk: ~3 MB of posts and ~5 MB of comments in memory at once


class Corpus:
    """A few MB of pseudo-words; text of a given length is a slice starting at a random word."""

    def __init__(self, rng: random.Random, words: int = 300_000) -> None:
        self.vocabulary = sorted({"".join(rng.choices(SYLLABLES, k=rng.randint(1, 4))) for _ in range(3000)})
        out = []
        for word in rng.choices(self.vocabulary, k=words):
            if rng.random() < 0.08:  # sentences of about 12 words
                word += "."
            out.append(word)
        self.text = " ".join(out)
        end = len(self.text) - 20_000  # room for the longest slice
        self.starts = [0] + [m.end() for m in re.finditer(" ", self.text) if m.end() < end]

    def take(self, rng: random.Random, length: int) -> str:
        begin = self.starts[int(rng.random() * len(self.starts))]
        return self.text[begin:begin + length].strip()


def _length(rng: random.Random, mean: float, spread: float, low: int, high: int) -> int:
    return min(high, max(low, int(rng.gauss(mean, spread))))


class Generator:
    """Yields the rows of a Plan in id order; one instance per load, consumed once."""

    def __init__(self, plan: Plan, password_hash: str) -> None:
        self.plan, self.hash = plan, password_hash
        self.rng = random.Random(plan.seed)
        self.corpus = Corpus(self.rng)
        self.start = plan.until - timedelta(seconds=YEAR)
        self.user_span = YEAR + USER_LEAD
        self.tag_names = self._tag_names()
        self.tag_weights = list(itertools.accumulate(1 / (r + 1) ** TAG_SKEW for r in range(len(self.tag_names))))
        self.comment_id = 0

    def _tag_names(self) -> list[str]:
        words = [w for w in self.corpus.vocabulary if 3 <= len(w) <= 12]
        names = dict.fromkeys(words[: self.plan.tags])
        pairs = ((a, b) for a in words for b in words if a != b)
        while len(names) < self.plan.tags:  # past the vocabulary: compounds, some with a digit
            a, b = next(pairs)
            names[f"{a}-{b}" if len(names) % 3 else f"{a}{b[:2]}{len(names) % 10}"] = None
        assert all(TAG_NAME.fullmatch(n) for n in names)
        return list(names)

    def _at(self, seconds: float) -> datetime:
        return self.start + timedelta(seconds=seconds)

    def _users_by(self, seconds: float) -> int:
        """How many users exist `seconds` after the posts' start (at least the first one)."""
        return max(1, min(self.plan.users, int(self.plan.users * (seconds + USER_LEAD) / self.user_span)))

    def users(self) -> Iterator[list[tuple]]:
        """(id, email, username, display_name, bio, password_hash, created_at, updated_at) in chunks."""
        rng, n, chunk = self.rng, self.plan.users, []
        for i in range(1, n + 1):
            jitter = 0.0 if i == 1 else rng.random()
            created = self._at(self.user_span * (i - 1 + jitter) / n - USER_LEAD)
            name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
            bio = self.corpus.take(rng, _length(rng, 80, 40, 0, 300)) if rng.random() < 0.7 else ""
            chunk.append((i, f"user{i}@example.com", f"user{i}", name, bio, self.hash, created, created))
            if len(chunk) == self.plan.chunk * 5:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def tags(self) -> list[tuple]:
        return list(enumerate(self.tag_names, 1))

    def _comment_count(self) -> int:
        mean = self.plan.comments_per_post
        if mean <= 0:
            return 0
        scale = mean + 0.5  # flooring takes half a comment off a Lomax mean of `scale`
        return min(COMMENT_CAP, int(scale * (self.rng.paretovariate(COMMENT_SHAPE) - 1)))

    def posts(self) -> Iterator[tuple[list[tuple], list[tuple], list[tuple]]]:
        """Chunks of (posts, post_tags, comments) rows; posts and comments as their table's columns."""
        rng, plan = self.rng, self.plan
        for first in range(1, plan.posts + 1, plan.chunk):
            posts, post_tags, comments = [], [], []
            for i in range(first, min(plan.posts, first + plan.chunk - 1) + 1):
                # Strictly increasing with the id: post i falls in the i-th slice of the year.
                offset = YEAR * (i - 1 + 0.9 * rng.random()) / plan.posts
                created = self._at(offset)
                author = 1 + int(self._users_by(offset) * rng.random() ** 1.5)  # early users write more
                title = self.corpus.take(rng, _length(rng, 60, 15, 12, 200)).rstrip(".")
                body = self.corpus.take(rng, _length(rng, 1500, 400, 200, 5000))
                posts.append((i, author, title[:1].upper() + title[1:], body, created, created))
                picked = set()
                for _ in range(1 + int(rng.random() * 3)):
                    picked.add(1 + bisect.bisect(self.tag_weights, rng.random() * self.tag_weights[-1]))
                post_tags.extend((i, t) for t in sorted(picked))
                count = self._comment_count()
                times = sorted(offset + (YEAR - offset) * rng.random() for _ in range(count))
                for at in times:
                    self.comment_id += 1
                    body = self.corpus.take(rng, _length(rng, 200, 80, 5, 2000))
                    comments.append((self.comment_id, i, 1 + int(self._users_by(at) * rng.random()), body,
                                     self._at(at)))
            yield posts, post_tags, comments
