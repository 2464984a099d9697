"""YAML loading that rejects duplicate mapping keys (PyYAML silently keeps the last one), naming file and line."""
from __future__ import annotations

from pathlib import Path

import yaml

from .io_utils import read_text_file

__all__ = ["StrictSafeLoader", "load_yaml", "DuplicateKeyError"]


class DuplicateKeyError(ValueError):
    """A YAML mapping holds the same key twice."""


class StrictSafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` whose mappings refuse duplicate keys (merge keys ``<<`` keep their usual meaning)."""

    source = "<string>"

    def construct_mapping(self, node, deep=False):
        """The mapping of ``node``; a duplicate key raises ``yaml.constructor.ConstructorError``."""
        if isinstance(node, yaml.MappingNode):
            seen = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    hash(key)
                except TypeError:
                    continue  # the base class reports unhashable keys
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise DuplicateKeyError(f"config: {self.source} line {line}: duplicate key {key!r} (first "
                                            f"defined at line {seen[key]}); remove one of them")
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml(path):
    """Parse a YAML file with :class:`StrictSafeLoader`.

    Raises:
        FileNotFoundError: missing file. IsADirectoryError: a directory.
        ValueError: duplicate keys or a YAML syntax error (message names the file and line); a binary file
            (a model bundle, a DCD, ...: the message says which, :func:`read_text_file`).
    """
    p = Path(path)
    text = read_text_file(p, "a YAML config", "config",
                          hint="did you swap two file arguments (e.g. BUNDLE and CONFIG of `openmm-mlcg check`)?")
    loader = StrictSafeLoader(text)
    loader.source = str(p)
    try:
        return loader.get_single_data()
    except DuplicateKeyError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        raise ValueError(f"config: {p}{where}: invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"config: {p}: invalid YAML: {exc}") from None
    finally:
        loader.dispose()
