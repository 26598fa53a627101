"""The README's YAML and console blocks, read as test fixtures.

Each block is announced by an HTML comment on the line before it (invisible when rendered):

- ``<!-- example: config -->`` a complete config file: ``modelserve check --config`` must pass
  with it in a folder made by ``modelserve demo`` (its relative paths name the demo's files;
  models without a ``sha256`` get the pin of the demo's file, which the README cannot know);
- ``<!-- example: fragment of FILE -->`` part of a config: merged over the demo's ``FILE``
  (``modelserve.yaml`` or ``canary.yaml``) it must be a valid configuration;
- ``<!-- example: run against SERVER -->`` a console block of ``$ curl`` commands, each run
  against a real server of ``SERVER`` (see ``tests/e2e/test_readme_examples.py``); output shown
  under a command is compared with the answer;
- ``<!-- example: run in a new folder -->`` a console block of shell commands run one after
  the other in an empty temporary folder (``cd`` carries over); each shown output line must
  appear in the command's output, any number standing for any number;
- ``<!-- example: not run (REASON) -->`` shown only, for the reason given (it installs
  software, needs your own files, a cluster...).

Every block needs one: a new example is a fixture from the moment it is written.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parent.parent / "README.md"
FENCED_LANGUAGES = ("yaml", "console")
MARKER = re.compile(
    r"<!-- example: (?:(?P<config>config)|fragment of (?P<base>\S+)|run against (?P<server>.+?)"
    r"|(?P<folder>run in a new folder)"
    r"|not run \((?P<reason>.+)\)) -->"
)
_SKIPPED_KEYS = {"timestamp", "request_id", "latency_ms", "load_ms", "warmup_ms"}


@dataclass(frozen=True)
class Example:
    """One fenced block of the README and what its marker says to do with it."""

    line: int
    """Line number of the opening fence (1-based)."""
    language: str
    marker: str
    text: str

    @property
    def id(self) -> str:
        return f"line-{self.line}-{self.language}"

    def parsed_marker(self) -> re.Match[str] | None:
        return MARKER.fullmatch(self.marker.strip())


def readme_examples(path: Path = README) -> list[Example]:
    """Every ``yaml`` and ``console`` block, with the line before it (its marker)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    examples: list[Example] = []
    index = 0
    while index < len(lines):
        fence = re.fullmatch(r"```(\w*)", lines[index])
        if fence is None:
            index += 1
            continue
        end = next(j for j in range(index + 1, len(lines)) if lines[j] == "```")
        if fence[1] in FENCED_LANGUAGES:
            marker = lines[index - 1] if index else ""
            text = "\n".join(lines[index + 1 : end]) + "\n"
            examples.append(Example(index + 1, fence[1], marker, text))
        index = end + 1
    return examples


@dataclass(frozen=True)
class Command:
    """One ``$ ...`` line of a console block (continuations joined) and the output under it."""

    command: str
    output: str


def console_commands(text: str) -> list[Command]:
    commands: list[Command] = []
    current: list[str] = []
    output: list[str] = []
    continued = False
    for line in text.splitlines():
        if continued:
            current.append(line)
        elif line.startswith("$ "):
            if current:
                commands.append(Command("\n".join(current), "\n".join(output)))
            current, output = [line[2:]], []
        else:
            output.append(line)
        continued = line.endswith("\\")
    if current:
        commands.append(Command("\n".join(current), "\n".join(output)))
    return commands


def missing_lines(shown: str, actual: str) -> list[str]:
    """The shown lines of a console output that the actual output lacks (numbers may differ,
    runs of spaces stand for any whitespace)."""
    missing = []
    for line in filter(None, (raw.strip() for raw in shown.splitlines())):
        pattern = r"\s+".join(
            re.sub(r"\\?\d+(?:\\\.\d+)?", r"[0-9.]+", re.escape(token)) for token in line.split()
        )
        if re.search(pattern, actual) is None:
            missing.append(line)
    return missing


def check_output(shown: str, actual: str) -> list[str]:
    """Where a JSON answer differs from the one the README shows (empty when it agrees).

    The README may abbreviate: ``"..."`` stands for any value and a trailing ``,...}`` for
    more keys. Strings, booleans and nulls must be equal; numbers and lists only present;
    timing fields and ids are never compared.
    """
    open_ended = shown.rstrip().endswith(",...}")
    expected = json.loads(shown.rstrip().removesuffix(",...}") + ("}" if open_ended else ""))
    answer = json.loads(actual)
    return _differences(expected, answer, open_ended, "")


def _differences(expected: Any, answer: Any, open_ended: bool, where: str) -> list[str]:
    if isinstance(expected, dict):
        if not isinstance(answer, dict):
            return [f"{where or 'answer'}: expected an object, got {answer!r}"]
        problems = [f"{where}.{key}: missing" for key in expected if key not in answer]
        if not open_ended:
            problems += [f"{where}.{key}: not shown" for key in answer if key not in expected]
        for key, value in expected.items():
            if key in answer and key not in _SKIPPED_KEYS:
                problems += _differences(value, answer[key], True, f"{where}.{key}")
        return problems
    is_number = isinstance(expected, int | float) and not isinstance(expected, bool)
    if expected == "..." or is_number or isinstance(expected, list):
        return []
    return [] if expected == answer else [f"{where}: README shows {expected!r}, got {answer!r}"]
