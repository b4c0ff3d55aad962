"""lienthong's wire contract: the edXML model, parser, builder, agency codes, reason codes,
receipt format, wire names (``wire_names``) and delivery states (``delivery_state``). No
I/O happens in this package; ``router`` and ``adapters`` import it, and it ships with the
SDK in the ``lienthong-gateway`` distribution.
"""

from schemas.builder import build_package, new_attachment
from schemas.model import (
    Appendixes,
    Attachment,
    Business,
    BusinessDocType,
    BusinessDocumentInfo,
    Code,
    DocumentType,
    EdocPackage,
    Organization,
    OtherInfo,
    Package,
    PackageKind,
    PromulgationInfo,
    Receiver,
    ReplacementInfo,
    ResponseFor,
    SignerInfo,
    StaffInfo,
    StatusCode,
    StatusPackage,
    TraceHeader,
)
from schemas.parser import ParsedPackage, ParseLimits, parse_package
from schemas.reasons import (
    LienthongError,
    PackageRejected,
    Reason,
    ValidationWarning,
    WarningCode,
)

__all__ = [
    "Appendixes",
    "Attachment",
    "Business",
    "BusinessDocType",
    "BusinessDocumentInfo",
    "Code",
    "DocumentType",
    "EdocPackage",
    "LienthongError",
    "Organization",
    "OtherInfo",
    "Package",
    "PackageKind",
    "PackageRejected",
    "ParseLimits",
    "ParsedPackage",
    "PromulgationInfo",
    "Reason",
    "Receiver",
    "ReplacementInfo",
    "ResponseFor",
    "SignerInfo",
    "StaffInfo",
    "StatusCode",
    "StatusPackage",
    "TraceHeader",
    "ValidationWarning",
    "WarningCode",
    "build_package",
    "new_attachment",
    "parse_package",
]
