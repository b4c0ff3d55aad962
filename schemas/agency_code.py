"""Vietnamese agency codes (mã định danh) and edXML DocumentIds: parse, normalise, relate.

Pure functions, no I/O. :func:`normalize` is the one canonical text form every lookup key
uses; :meth:`AgencyCode.parse` classifies a code and derives what can be derived from its
text alone (level, parent, the level-1 suffix of its tree, equivalent spellings). Anything
that needs the directory (the real parent of an irregular code, aliases between unrelated
spellings) is the directory's job, not this module's.

Forms (:class:`CodeForm`)
=========================

``QCVN102``     ``AAA.BB.CC.Xnn`` — four dot-separated fields, the level-1 code last
                (``000.00.00.G22`` Văn phòng Chính phủ, ``000.00.00.H41`` UBND tỉnh Nghệ An).
``THREE_LEVEL`` ``BB.CC.Xnn`` — seen in real packages (``28.22.H17``). Read as the QCVN 102
                code without its level-4 field (inferred: ``28.22.H17`` is addressed as
                "UBND xã Hòa Sơn - UBND huyện Hòa Vang - Thành phố Đà Nẵng", a commune (28)
                of a district (22) of Đà Nẵng (H17)).
``QD20``        Decision 20/2020/QĐ-TTg codes: the level-1 code alone (``G12``) and, inferred
                from real data such as ``G09.20``, lower levels appended to the right
                (``Xnn.nn[.nn[.nn]]``, level 1 first; 2 or 3 digits per field).
``ENTERPRISE``  10–14 digits (``020100107370``; inferred ``02`` + tax code).
``SYSTEM``      a connected system (gateway, LGSP): digit fields ending in ``Wnn``
                (``00.53.W00``, ``02.29.W00``).
``OTHER``       anything else made of legal characters. Accepted (the directory decides
                whether it knows the code) but nothing is derived from it.

Levels and parents in the QCVN 102 form
=======================================

``AAA.BB.CC.Xnn``: ``Xnn`` is level 1; **a lower level moves left**: ``CC`` holds the
level-2 unit, ``BB`` the level-3 unit, ``AAA`` the level-4 unit; ``0`` means "no unit at
that level". Evidence, all consistent with this reading:

- ``000.00.00.Xnn`` is a level-1 node (``G22`` VPCP, ``H41`` Nghệ An, ``G12`` Bộ Tài chính);
- ``000.00.18.G12`` is Tổng cục Thuế under Bộ Tài chính (published example; level 2 in CC);
  the SDK samples use ``000.00.04.G14`` the same way;
- ``28.22.H17`` names a commune (level 3, BB=28) of huyện Hòa Vang (level 2, CC=22) of
  Đà Nẵng — the three-level form is ``BB.CC.Xnn``;
- "a province's whole tree shares its suffix (``*.*.*.H41``)": with lower levels to the left,
  *every* node's subtree shares that node's suffix, which is what makes a subtree a topic
  pattern (:func:`tree_pattern`).

Real directories also hold *irregular* codes whose non-zero fields are not contiguous from
``CC`` leftwards: ``001.00.00.H47`` ("a district of Quảng Nam" in the project's notes) and
``001.00.10.H47`` (registered as a district in a Quảng Nam LGSP example). The rule that fits
every example above, regular or not, is:

- **level** = 1 + the number of non-zero fields among ``CC``, ``BB``, ``AAA``.
  ``000.00.00.G22`` → 1, ``001.00.00.H47`` → 2, ``001.00.10.H47`` → 3,
  ``001.01.10.H47`` → 4, ``000.00.18.G12`` → 2, ``28.22.H17`` → 3.
  For regular codes this is also the position of the leftmost non-zero field.
- **parent** = the same code with its leftmost non-zero field set to zero, always spelled in
  the four-field form: ``000.28.22.H17`` → ``000.00.22.H17`` → ``000.00.00.H17`` → None;
  ``28.22.H17`` → ``000.00.22.H17``; ``001.00.10.H47`` → ``000.00.10.H47``;
  ``001.00.00.H47`` → ``000.00.00.H47``.

The derived parent is a best guess from the text. The Quảng Nam LGSP example registers
``001.00.10.H47`` under ``001.00.00.H47``, which no suffix rule can reproduce together with
``000.28.22.H17`` → ``000.00.22.H17``; where a directory states a parent, the directory wins.

QĐ 20 lower-level codes (``G09.20``) read left to right: the parent drops the last field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from enum import Enum
from functools import lru_cache

from schemas.reasons import LienthongError, Reason

__all__ = [
    "MAX_CODE_LENGTH",
    "AgencyCode",
    "CodeForm",
    "DocumentIdParts",
    "format_document_id",
    "normalize",
    "parse_document_id",
    "tree_pattern",
    "tree_regex",
]

MAX_CODE_LENGTH = 64
"""Longer "codes" are garbage (real ones are at most 14 characters)."""

# Characters that are invisible but not whitespace for str.split(); removed by normalize().
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))

_LEGAL = re.compile(r"[A-Z0-9]+(?:[._-][A-Z0-9]+)*", re.ASCII)
_FOUR = re.compile(r"(\d{3})\.(\d{2})\.(\d{2})\.([A-VX-Z])(\d{2})", re.ASCII)
_THREE = re.compile(r"(\d{2})\.(\d{2})\.([A-VX-Z])(\d{2})", re.ASCII)
_QD20 = re.compile(r"([A-VX-Z])(\d{2})((?:\.\d{2,3}){0,3})", re.ASCII)
_SYSTEM = re.compile(r"(?:\d{2,3}\.){0,3}(W\d{2})", re.ASCII)
_ENTERPRISE = re.compile(r"\d{10,14}", re.ASCII)


def normalize(code: str) -> str:
    """The canonical text of an agency code: what every lookup key uses.

    Removes all whitespace (surrounding and inner, including NBSP and other Unicode spaces)
    and invisible characters (zero-width space/joiners, BOM, soft hyphen), then uppercases.
    Idempotent. Does not validate: ``normalize("  g12 ")`` is ``"G12"``, garbage stays
    garbage (use :meth:`AgencyCode.parse` to validate).
    """
    text = "".join(code.split())
    if not text.isascii():
        text = text.translate(_INVISIBLE)
    return text.upper()


class CodeForm(Enum):
    """How an agency code is written. See the module docstring."""

    QCVN102 = "qcvn102"
    THREE_LEVEL = "three-level"
    QD20 = "qd20"
    ENTERPRISE = "enterprise"
    SYSTEM = "system"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class AgencyCode:
    """A parsed agency code. Build with :meth:`parse`; ``str(code)`` is its normalised text.

    Attributes:
        text: the normalised code (:func:`normalize`).
        form: how it is written (:class:`CodeForm`).
        level1: the level-1 code of its tree (``G22``, ``H41``, ``W00`` for systems);
            None for enterprise and unclassified codes.
        level: 1..4 for QCVN 102, three-level and QĐ 20 codes (rule in the module
            docstring); None for enterprise, system and unclassified codes.
        parent: the parent code's text, or None at level 1 and for non-hierarchical forms.
            QCVN 102 and three-level codes get a four-field parent, QĐ 20 codes a QĐ 20 one.
        units: the unit numbers below level 1, nearest first: ``(CC, BB, AAA)`` for QCVN 102,
            ``(CC, BB)`` for three-level, the appended fields for QĐ 20; empty otherwise.
    """

    text: str
    form: CodeForm
    level1: str | None
    level: int | None
    parent: str | None
    units: tuple[int, ...] = ()

    @classmethod
    def parse(cls, code: str) -> AgencyCode:
        """Normalise and classify ``code``.

        Raises :class:`LienthongError` with :attr:`Reason.BAD_AGENCY_CODE` when the code is
        empty, longer than :data:`MAX_CODE_LENGTH`, or not made of ``A-Z 0-9`` words joined
        by single ``.``, ``-`` or ``_``. Anything legal parses (possibly as ``OTHER``).
        """
        return _parse_normalized(normalize(code))

    def __str__(self) -> str:
        return self.text

    @property
    def level1_letter(self) -> str | None:
        """The letter of the level-1 code: A..K (see edxml.md §6), W for systems."""
        return self.level1[0] if self.level1 else None

    @property
    def province_suffix(self) -> str | None:
        """The level-1 code shared by this code's whole tree (``H41`` for ``*.*.*.H41``).

        Defined for every hierarchical form (QCVN 102, three-level, QĐ 20) whatever the
        letter — ``G12`` for Bộ Tài chính's tree too; None for enterprise, system and
        unclassified codes.
        """
        if self.form in _HIERARCHICAL:
            return self.level1
        return None

    @property
    def is_top_level(self) -> bool:
        """A level-1 node (``000.00.00.G12``, ``G12``, ``000.00.00.H41``)."""
        return self.level == 1

    @property
    def is_province(self) -> bool:
        """The code belongs to a province's tree (level-1 letter H), at any level."""
        return self.form in _HIERARCHICAL and self.level1_letter == "H"

    @property
    def is_ministry(self) -> bool:
        """The code belongs to a ministry or government body's tree (letter G), any level."""
        return self.form in _HIERARCHICAL and self.level1_letter == "G"

    @property
    def canonical_102(self) -> str | None:
        """The QCVN 102 four-field spelling, where it follows from the text alone.

        The code itself for ``QCVN102``; ``000.00.00.Xnn`` for a QĐ 20 level-1 code
        (``G12``); None otherwise. A three-level code is *not* mapped (``28.22.H17`` may
        well be ``000.28.22.H17``, but no source says so: leave it to the directory).
        """
        if self.form is CodeForm.QCVN102:
            return self.text
        if self.form is CodeForm.QD20 and self.level == 1:
            return f"000.00.00.{self.level1}"
        return None

    def aliases(self) -> frozenset[str]:
        """Every spelling of this agency derivable without a directory, itself included.

        ``G12`` and ``000.00.00.G12`` give ``{"G12", "000.00.00.G12"}``; any other code
        gives ``{text}``.
        """
        if self.level == 1 and self.form in (CodeForm.QCVN102, CodeForm.QD20):
            return frozenset((self.text, f"000.00.00.{self.level1}", f"{self.level1}"))
        return frozenset((self.text,))

    def tree_pattern(self) -> str:
        """See :func:`tree_pattern`."""
        return _tree_pattern(self)


_HIERARCHICAL = frozenset((CodeForm.QCVN102, CodeForm.THREE_LEVEL, CodeForm.QD20))


def _bad(code: str, why: str) -> LienthongError:
    shown = code if len(code) <= 80 else code[:77] + "..."
    return LienthongError(Reason.BAD_AGENCY_CODE, f"{why}: {shown!r}")


def _units_level_parent(units: tuple[int, ...], level1: str) -> tuple[int, str | None]:
    """Level and four-field parent for QCVN 102 units ``(CC, BB[, AAA])``."""
    nonzero = [i for i, u in enumerate(units) if u]
    level = 1 + len(nonzero)
    if not nonzero:
        return level, None
    parent_units = list(units) + [0] * (3 - len(units))
    parent_units[nonzero[-1]] = 0
    cc, bb, aaa = parent_units
    return level, f"{aaa:03d}.{bb:02d}.{cc:02d}.{level1}"


@lru_cache(maxsize=65536)
def _parse_normalized(text: str) -> AgencyCode:
    if not text:
        raise _bad(text, "empty agency code")
    if len(text) > MAX_CODE_LENGTH:
        raise _bad(text, f"agency code longer than {MAX_CODE_LENGTH} characters")
    if not _LEGAL.fullmatch(text):
        raise _bad(text, "agency code has illegal characters")

    if m := _FOUR.fullmatch(text):
        level1 = m[4] + m[5]
        units4 = (int(m[3]), int(m[2]), int(m[1]))
        level, parent = _units_level_parent(units4, level1)
        return AgencyCode(text, CodeForm.QCVN102, level1, level, parent, units4)
    if m := _THREE.fullmatch(text):
        level1 = m[3] + m[4]
        units3 = (int(m[2]), int(m[1]))
        level, parent = _units_level_parent(units3, level1)
        return AgencyCode(text, CodeForm.THREE_LEVEL, level1, level, parent, units3)
    if m := _QD20.fullmatch(text):
        level1 = m[1] + m[2]
        fields = m[3].split(".")[1:] if m[3] else []
        parent_qd = ".".join([level1, *fields[:-1]]) if fields else None
        return AgencyCode(
            text, CodeForm.QD20, level1, 1 + len(fields), parent_qd, tuple(map(int, fields))
        )
    if m := _SYSTEM.fullmatch(text):
        return AgencyCode(text, CodeForm.SYSTEM, m[1], None, None)
    if _ENTERPRISE.fullmatch(text):
        return AgencyCode(text, CodeForm.ENTERPRISE, None, None, None)
    return AgencyCode(text, CodeForm.OTHER, None, None, None)


def _as_code(code: str | AgencyCode) -> AgencyCode:
    return code if isinstance(code, AgencyCode) else AgencyCode.parse(code)


def _tree_pattern(c: AgencyCode) -> str:
    if c.form is CodeForm.QD20:
        return f"#.{c.text}" if c.level == 1 else f"{c.text}.#"
    if c.form not in (CodeForm.QCVN102, CodeForm.THREE_LEVEL):
        return c.text
    words = c.text.split(".")
    nonzero = [i for i, u in enumerate(c.units) if u]
    if not nonzero:
        return f"#.{words[-1]}"
    top = nonzero[-1]
    if top == 2:  # the level-4 field is set: nothing can sit below this code
        return c.text
    # unit i (0 = CC) is the word at index len(words) - 2 - i
    return "#." + ".".join(words[len(words) - 2 - top :])


def tree_pattern(code: str | AgencyCode) -> str:
    """An AMQP topic pattern matching this agency's code and every code below it.

    Routing keys are normalised codes, so dot-separated words; ``#`` matches zero or more
    words. Returned, exactly:

    - a level-1 code (``000.00.00.H41`` or ``H41``): ``#.H41`` — matches ``H41``,
      ``000.00.00.H41``, every four-field and three-field code of the tree;
    - a QCVN 102 / three-level code whose leftmost non-zero field is ``CC`` or ``BB``: ``#.``
      followed by the words from that field on (``000.00.22.H17`` → ``#.22.H17``,
      ``000.28.22.H17`` and ``28.22.H17`` → ``#.28.22.H17``);
    - a QCVN 102 code with the level-4 field set (``001.00.00.H47``, ``001.01.10.H47``):
      the code itself — nothing sits below it;
    - a QĐ 20 lower-level code (``G09.20``): ``G09.20.#``;
    - enterprise, system and unclassified codes: the code itself.

    Patterns starting with ``#.`` also match dotted keys with extra leading words
    (``1.2.3.4.H41``); such keys are not valid codes and never reach a topic exchange.
    RabbitMQ *topic permissions* take regular expressions, not patterns: see
    :func:`tree_regex`.
    """
    return _tree_pattern(_as_code(code))


def tree_regex(code: str | AgencyCode) -> str:
    """An anchored regular expression matching exactly what :func:`tree_pattern` matches.

    For RabbitMQ topic permissions (``set_topic_permissions``), which match routing keys
    against regular expressions.
    """
    pattern = tree_pattern(code)
    words = pattern.split(".")
    head = tail = ""
    if words[0] == "#":
        head, words = r"(?:[^.]+\.)*", words[1:]
    if words and words[-1] == "#":
        tail, words = r"(?:\.[^.]+)*", words[:-1]
    return "^" + head + r"\.".join(re.escape(w) for w in words) + tail + "$"


# --- DocumentId -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DocumentIdParts:
    """A DocumentId read as ``<From OrganId>,<yyyy/MM/dd>,<CodeNumber>/<CodeNotation>``.

    Attributes:
        organ_id: the sending agency's code, normalised (:func:`normalize`).
        date: the date, or None when it does not name a real day (``2014/02/30`` exists in
            the SDK samples).
        date_text: the date field as written (stripped), kept for unreadable dates.
        code_number: the part before the first ``/`` of the last field (may be empty).
        code_notation: everything after that ``/`` (may itself contain ``/``; may be empty).
    """

    organ_id: str
    date: date | None
    date_text: str
    code_number: str
    code_notation: str


_DATE_SHAPE = re.compile(r"(\d{1,4})[/-](\d{1,2})[/-](\d{1,4})", re.ASCII)


def _read_date(text: str) -> date | None:
    m = _DATE_SHAPE.fullmatch(text)
    if m is None or len(m[1]) != 4:
        return None
    try:
        return date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return None


def parse_document_id(text: str) -> DocumentIdParts | None:
    """Split a DocumentId into its parts; None when it is not in the edXML form.

    Lenient: a UUID or any other producer-specific id gives None, never an exception. The
    form needs at least two commas, a legal agency code before the first, and a date-shaped
    field (digits separated by ``/`` or ``-``) before the second; the date itself may be
    unreadable (``date`` is then None). The last field is split at its first ``/``; without
    one, it is all number and the notation is empty.
    """
    fields = text.strip().split(",", 2)
    if len(fields) != 3:
        return None
    organ_raw, date_raw, code_raw = fields
    organ_id = normalize(organ_raw)
    if not organ_id or len(organ_id) > MAX_CODE_LENGTH or not _LEGAL.fullmatch(organ_id):
        return None
    date_text = date_raw.strip()
    if not _DATE_SHAPE.fullmatch(date_text):
        return None
    number, _, notation = code_raw.partition("/")
    return DocumentIdParts(
        organ_id=organ_id,
        date=_read_date(date_text),
        date_text=date_text,
        code_number=number.strip(),
        code_notation=notation.strip(),
    )


def format_document_id(
    organ_id: str, promulgation_date: date | str, number: str, notation: str
) -> str:
    """Write a DocumentId: ``<organ_id>,<yyyy/MM/dd>,<number>/<notation>``.

    ``organ_id`` is normalised; a ``date`` is written ``yyyy/MM/dd``, a string as given
    (to re-write an unreadable date). With an empty notation the ``/`` is left out.
    """
    if isinstance(promulgation_date, date):
        day = (
            f"{promulgation_date.year:04d}/{promulgation_date.month:02d}/"
            f"{promulgation_date.day:02d}"
        )
    else:
        day = promulgation_date
    code = f"{number}/{notation}" if notation else number
    return f"{normalize(organ_id)},{day},{code}"
