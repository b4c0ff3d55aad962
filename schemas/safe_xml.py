"""The hardened lxml parser: the one place where lienthong's XML protections are set.

No DTD is loaded or validated, no entity is resolved (XXE, billion laughs), nothing is fetched
from the network, and ``xml:id`` attributes are not collected (an ``Id`` lookup walks the tree
the caller checked, never an index an attacker planted). ``huge`` lifts libxml2's text-node
limit for large attachments (size is bounded by the caller before parsing); ``keep_comments``
keeps comments and processing instructions, which canonicalisation (XML-DSig) must see.

lxml parsers must not be shared between threads: each thread gets its own.
"""

from __future__ import annotations

import threading
from typing import Any

from lxml import etree

__all__ = ["hardened_feed_parser", "hardened_parser"]

_local = threading.local()


def hardened_parser(*, huge: bool = False, keep_comments: bool = False) -> etree.XMLParser:
    """This thread's parser with the given options (made once, then reused)."""
    parsers: dict[tuple[bool, bool], etree.XMLParser] | None = getattr(_local, "parsers", None)
    if parsers is None:
        parsers = _local.parsers = {}
    parser = parsers.get((huge, keep_comments))
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=huge,
            remove_comments=not keep_comments,
            remove_pis=not keep_comments,
            collect_ids=False,
        )
        parsers[(huge, keep_comments)] = parser
    return parser


def hardened_feed_parser(target: Any) -> etree.XMLParser:
    """A new incremental parser (``feed()`` / ``close()``) with the same protections, that
    hands events to ``target`` (lxml's parser-target interface) instead of building a tree:
    text arrives in pieces, so a large attachment is never held whole. A new one per
    document (feed parsers keep state); sizes are bounded by the caller."""
    return etree.XMLParser(
        target=target,
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=True,
        remove_comments=True,
        remove_pis=True,
        collect_ids=False,
    )
