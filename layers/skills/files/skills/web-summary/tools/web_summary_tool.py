#!/usr/bin/env python3
"""Web-summary skill: fetch a page, extract title, summary and topics for Logseq.

Line-delimited JSON on stdin/stdout, e.g.
  {"action": "summarize_url", "url": "https://example.org/post", "sentences": 5}
  {"action": "summarize_text", "text": "...", "title": "Notes"}
  {"action": "youtube_transcript", "url": "https://www.youtube.com/watch?v=ID"}
The summary is extractive (the highest-scoring sentences by word frequency, in
page order); topics are the most frequent content words and word pairs. A
YouTube transcript needs youtube.com to be reachable; otherwise the reply is an
error of type "Unreachable".
"""

import html
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from html.parser import HTMLParser

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(_HERE, "..", "..", "..", "lib"), "/usr/local/lib/composer-skills"]
from skillio import SkillError, param, serve  # noqa: E402

USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) composer-web-summary/1.0"
MAX_BYTES = 5 * 1024 * 1024
STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before
being below between both but by can could did do does doing down during each few for from
further had has have having he her here hers herself him himself his how i if in into is it
its itself just me more most my myself no nor not now of off on once only or other our ours
ourselves out over own same she should so some such than that the their theirs them
themselves then there these they this those through to too under until up very was we were
what when where which while who whom why will with would you your yours yourself yourselves
one two many much may might must shall new use used using like get got make made well even
still way per via within without upon yet ever however thus since among every another
""".split())
_SKIP_TAGS = {"script", "style", "noscript", "nav", "footer", "header", "aside", "form",
              "svg", "template", "iframe", "button", "select"}
_BLOCK_TAGS = {"p", "li", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "td",
               "dd", "dt", "figcaption", "article", "section", "div", "br", "tr"}
_YOUTUBE = re.compile(r"(?:youtube\.com/(?:watch\?(?:.*&)?v=|shorts/|embed/)|youtu\.be/)([\w-]{11})")


class _TextExtractor(HTMLParser):
    """Collects the title, headings and visible text blocks of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.headings: list = []
        self.blocks: list = []
        self._skip = 0
        self._in_title = False
        self._heading = None
        self._current: list = []

    def handle_starttag(self, tag, attrs):
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag == "title":
            self._in_title = True
        elif tag in _BLOCK_TAGS:
            self._flush()
            if tag in ("h1", "h2", "h3"):
                self._heading = []

    def handle_endtag(self, tag):
        if tag in _SKIP_TAGS and self._skip:
            self._skip -= 1
        elif tag == "title":
            self._in_title = False
        elif tag in _BLOCK_TAGS:
            if self._heading is not None and tag in ("h1", "h2", "h3"):
                text = _squash(" ".join(self._heading))
                if text:
                    self.headings.append(text)
                self._heading = None
            self._flush()

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        elif not self._skip:
            self._current.append(data)
            if self._heading is not None:
                self._heading.append(data)

    def _flush(self):
        text = _squash(" ".join(self._current))
        if text:
            self.blocks.append(text)
        self._current = []

    def close(self):
        super().close()
        self._flush()


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _words(text: str) -> list:
    return [w for w in re.findall(r"[a-zA-Z][a-zA-Z'-]+", text.lower())
            if w not in STOPWORDS and len(w) > 2]


def split_sentences(text: str) -> list:
    parts = re.split(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])", text)
    return [p.strip() for p in parts if len(p.split()) >= 4]


def summarize(sentences: list, count: int) -> list:
    """Extractive summary: top `count` sentences by mean content-word frequency."""
    freq = Counter(w for s in sentences for w in _words(s))
    if not freq:
        return sentences[:count]
    top = max(freq.values())
    scored = []
    for index, sentence in enumerate(sentences):
        words = _words(sentence)
        if not words:
            continue
        score = sum(freq[w] / top for w in words) / (len(words) ** 0.5)
        scored.append((score, index))
    chosen = sorted(index for _, index in sorted(scored, reverse=True)[:count])
    return [sentences[i] for i in chosen]


def topics(text: str, count: int) -> list:
    """Most frequent content words; a word pair seen twice or more scores double."""
    words = _words(text)
    scores = Counter(words)
    for pair, n in Counter(f"{a} {b}" for a, b in zip(words, words[1:])).items():
        if n >= 2:
            scores[pair] = n * 2
    chosen: list = []
    for term, _ in scores.most_common():
        if any(set(term.split()) & set(other.split()) for other in chosen):
            continue
        chosen.append(term)
        if len(chosen) == count:
            break
    return chosen


def logseq_block(title: str, url: str, summary: list, tags: list) -> str:
    lines = [f"- [[{title or url or 'Untitled'}]]"]
    if url:
        lines.append(f"  source:: {url}")
    if tags:
        lines.append("  tags:: " + ", ".join(f"[[{t}]]" for t in tags))
    lines.append("  - Summary")
    lines += [f"    - {s}" for s in summary]
    return "\n".join(lines)


def fetch(url: str, timeout: float) -> tuple:
    """GET url; return (final url, decoded text, content type)."""
    scheme = urllib.parse.urlparse(url).scheme
    if scheme not in ("http", "https"):
        raise SkillError(f"only http and https URLs are fetched, not {scheme or url!r}", "InvalidRequest")
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT,
                                                   "Accept-Language": "en;q=0.9, *;q=0.5"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(MAX_BYTES)
            charset = response.headers.get_content_charset() or "utf-8"
            return response.geturl(), body.decode(charset, errors="replace"), response.headers.get_content_type()
    except urllib.error.HTTPError as exc:
        raise SkillError(f"{url}: HTTP {exc.code} {exc.reason}", "HTTPError") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SkillError(f"{url} is not reachable: {reason}", "Unreachable") from None


def _digest(title: str, url: str, text_blocks: list, request: dict, extra: dict) -> dict:
    count = param(request, "sentences", int, 5)
    n_topics = param(request, "topics", int, 8)
    if not (1 <= count <= 50 and 1 <= n_topics <= 50):
        raise SkillError("sentences and topics must be 1..50", "InvalidRequest")
    sentences = [s for block in text_blocks for s in split_sentences(block)]
    text = " ".join(text_blocks)
    summary = summarize(sentences, count)
    tags = topics((title + " ") * 2 + text, n_topics)
    result = {"title": title, "url": url, "summary": summary, "topics": tags,
              "word_count": len(text.split()),
              "logseq": logseq_block(title, url, summary, tags)}
    result.update(extra)
    return result


def summarize_html(page: str, url: str, request: dict) -> dict:
    parser = _TextExtractor()
    parser.feed(page)
    parser.close()
    title = _squash(html.unescape(parser.title)) or (parser.headings[0] if parser.headings else "")
    blocks = [b for b in parser.blocks if len(b.split()) >= 4]
    return _digest(title, url, blocks, request, {"headings": parser.headings[:20]})


def summarize_url(request: dict) -> dict:
    url = param(request, "url", str)
    if _YOUTUBE.search(url):
        transcript = youtube_transcript(request)
        text = " ".join(seg["text"] for seg in transcript["segments"])
        return _digest(transcript["title"], url, [text], request, {"source": "youtube transcript"})
    final_url, body, content_type = fetch(url, float(param(request, "timeout", (int, float), 20)))
    if content_type == "text/plain":
        return _digest(param(request, "title", str, ""), final_url,
                       [b for b in body.split("\n\n") if b.strip()], request, {})
    if "html" not in content_type and "xml" not in content_type:
        raise SkillError(f"{url}: cannot summarise content type {content_type}", "UnsupportedContent")
    return summarize_html(body, final_url, request)


def summarize_text(request: dict) -> dict:
    text = param(request, "text", str)
    blocks = [b for b in re.split(r"\n\s*\n", text) if b.strip()]
    return _digest(param(request, "title", str, ""), param(request, "url", str, ""), blocks, request, {})


def youtube_transcript(request: dict) -> dict:
    """Captions of a YouTube video from its watch page's caption track list."""
    url = param(request, "url", str, None)
    video = param(request, "video_id", str, None)
    if url and not video:
        match = _YOUTUBE.search(url)
        video = match.group(1) if match else None
    if not video or not re.fullmatch(r"[\w-]{11}", video):
        raise SkillError("give a YouTube url or an 11-character video_id", "InvalidRequest")
    timeout = float(param(request, "timeout", (int, float), 20))
    _, page, _ = fetch(f"https://www.youtube.com/watch?v={video}", timeout)
    match = re.search(r'"captionTracks":(\[.*?\])', page)
    if not match:
        raise SkillError(f"video {video} has no captions (or YouTube's page changed)", "NoTranscript")
    tracks = json.loads(match.group(1))
    language = param(request, "language", str, "en")
    track = next((t for t in tracks if t.get("languageCode", "").startswith(language)), tracks[0])
    _, xml, _ = fetch(track["baseUrl"].replace("\\u0026", "&"), timeout)
    segments = [{"start": float(start), "text": _squash(html.unescape(re.sub(r"<[^>]+>", "", body)))}
                for start, body in re.findall(r'<text start="([\d.]+)"[^>]*>(.*?)</text>', xml, re.S)]
    title_match = re.search(r"<title>(.*?)</title>", page, re.S)
    title = _squash(html.unescape(title_match.group(1))).removesuffix(" - YouTube") if title_match else video
    return {"video_id": video, "title": title, "language": track.get("languageCode"),
            "segments": segments}


ACTIONS = {"summarize_url": summarize_url, "summarize_text": summarize_text,
           "youtube_transcript": youtube_transcript}

if __name__ == "__main__":
    serve(ACTIONS)
