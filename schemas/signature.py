"""XML signatures (XML-DSig) on edXML packages: sign, and check one strict profile.

The profile lienthong signs with and accepts — anything else is refused:

* exactly one ``Signature`` element in the XML-DSig namespace in the whole document, and it
  is a child of ``edXML/edXMLEnvelope/edXMLHeader`` (where the SDK puts its placeholder);
* ``SignedInfo`` has exclusive canonicalisation (``xml-exc-c14n#``), a signature method
  RSA-SHA256/384/512 or ECDSA-SHA256/384, and exactly one ``Reference`` with ``URI=""``
  (the whole document) whose transforms are exactly *enveloped-signature* then
  *exclusive c14n*, with a SHA-256/384/512 digest;
* ``KeyInfo/X509Data/X509Certificate`` carries the signer's certificate (optional for
  verification: without it the caller's candidate certificates are tried);
* no ``Object``, no ``Manifest``, no second ``Reference``, no XPath or XSLT transform.

Everything that looks like an attempt to make a verifier check one part of the document
while a consumer reads another — a second signature or signed subtree, a Signature moved
out of the header, a ``Reference`` to an ``Id`` — is :data:`Reason.SIGNATURE_WRAPPING`.
A well-formed signature that does not verify is :data:`Reason.SIGNATURE_INVALID`.

The SDK samples' ``<Signature>`` in the edXML namespace (or in none) is a placeholder: it
is not an XML-DSig signature, :func:`find_signature` ignores it (the parser warns
``PLACEHOLDER_SIGNATURE``) and :func:`sign_package` replaces it.

Pure CPU, no I/O: certificates are passed in by the caller (``router.security.certificates``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from lxml import etree

from schemas.model import EDXML_NS
from schemas.reasons import PackageRejected, Reason
from schemas.safe_xml import hardened_parser

__all__ = [
    "DSIG_NS",
    "SignatureInfo",
    "certificate_fingerprint",
    "find_signature",
    "sign_package",
    "verify_package",
    "verify_signature",
]

DSIG_NS: Final = "http://www.w3.org/2000/09/xmldsig#"
EXC_C14N: Final = "http://www.w3.org/2001/10/xml-exc-c14n#"
ENVELOPED: Final = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"

_RSA: dict[str, hashes.HashAlgorithm] = {
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256": hashes.SHA256(),
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384": hashes.SHA384(),
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512": hashes.SHA512(),
}
_ECDSA: dict[str, hashes.HashAlgorithm] = {
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256": hashes.SHA256(),
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384": hashes.SHA384(),
}
_DIGESTS: dict[str, Callable[[bytes], hashlib._Hash]] = {
    "http://www.w3.org/2001/04/xmlenc#sha256": hashlib.sha256,
    "http://www.w3.org/2001/04/xmldsig-more#sha384": hashlib.sha384,
    "http://www.w3.org/2001/04/xmlenc#sha512": hashlib.sha512,
}
RSA_SHA256: Final = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
ECDSA_SHA256: Final = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
SHA256: Final = "http://www.w3.org/2001/04/xmlenc#sha256"

_D = "{" + DSIG_NS + "}"
_E = "{" + EDXML_NS + "}"
_SIGNATURE = _D + "Signature"
_NS_MARKER = DSIG_NS.encode()
_DECLARATION = re.compile(rb"<!\s*(?:DOCTYPE|ENTITY|ELEMENT|ATTLIST|NOTATION)", re.IGNORECASE)



@dataclass(frozen=True, slots=True)
class SignatureInfo:
    """A signature that passed the structural checks, ready for :func:`verify_signature`."""

    tree: etree._ElementTree
    signature: etree._Element
    signed_info: etree._Element
    signature_method: str
    digest_method: str
    digest_value: bytes
    signature_value: bytes
    certificate_der: bytes | None

    @property
    def fingerprint(self) -> str | None:
        """SHA-256 (hex) of the certificate in KeyInfo, if there is one."""
        return None if self.certificate_der is None else _sha256_hex(self.certificate_der)


def certificate_fingerprint(cert: x509.Certificate) -> str:
    """The SHA-256 of the certificate's DER encoding, lowercase hex: how lienthong names it."""
    return _sha256_hex(cert.public_bytes(serialization.Encoding.DER))


def _sha256_hex(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def _wrapping(detail: str) -> PackageRejected:
    return PackageRejected(Reason.SIGNATURE_WRAPPING, detail)


def _invalid(detail: str) -> PackageRejected:
    return PackageRejected(Reason.SIGNATURE_INVALID, detail)


def _parse(body: bytes) -> etree._ElementTree:
    if b"<!" in body and _DECLARATION.search(body) is not None:
        raise PackageRejected(
            Reason.FORBIDDEN_XML_CONSTRUCT, "a DOCTYPE or markup declaration is present"
        )
    try:
        # comments are kept (they are not signed, but removing them would not change c14n
        # without comments either); processing instructions are kept: c14n includes them
        root = etree.fromstring(body, hardened_parser(huge=True, keep_comments=True))
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise PackageRejected(Reason.MALFORMED_XML, str(exc).splitlines()[0][:300]) from None
    return root.getroottree()


def _b64(text: str | None, what: str) -> bytes:
    try:
        return base64.b64decode("".join((text or "").split()), validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(f"{what} is not valid base64") from None


def _children(el: etree._Element) -> list[etree._Element]:
    """Element children; comments and PIs inside the signature are not allowed."""
    out = []
    for child in el:
        if not isinstance(child.tag, str):
            raise _wrapping(f"a comment or processing instruction inside {_local(el)}")
        out.append(child)
    return out


def _local(el: etree._Element) -> str:
    return etree.QName(el).localname


def _expect(el: etree._Element, names: Sequence[str], where: str) -> list[etree._Element]:
    """The children of ``el`` must be exactly ``names`` (``?`` suffix: optional) in order."""
    kids = _children(el)
    out: list[etree._Element] = []
    i = 0
    for name in names:
        optional = name.endswith("?")
        tag = _D + name.rstrip("?")
        if i < len(kids) and kids[i].tag == tag:
            out.append(kids[i])
            i += 1
        elif not optional:
            raise _wrapping(f"{where}: {name.rstrip('?')} is missing or out of place")
    if i != len(kids):
        raise _wrapping(f"{where}: unexpected element {kids[i].tag}")
    return out


def find_signature(body: bytes) -> SignatureInfo | None:
    """Parse ``body`` and check its signature's structure; None when it carries none.

    Raises :class:`PackageRejected` with SIGNATURE_WRAPPING for any structure outside the
    profile that could hide what is signed, SIGNATURE_INVALID for unsupported algorithms or
    malformed values, MALFORMED_XML / FORBIDDEN_XML_CONSTRUCT for a body that is not safe XML.
    """
    if _NS_MARKER not in body:
        return None
    tree = _parse(body)
    root = tree.getroot()
    found = list(root.iter(_SIGNATURE))
    if not found:
        return None
    if len(found) > 1:
        raise _wrapping(f"{len(found)} XML-DSig Signature elements; exactly one is allowed")
    sig = found[0]
    header = sig.getparent()
    envelope = header.getparent() if header is not None else None
    if (
        root.tag != _E + "edXML"
        or header is None
        or header.tag != _E + "edXMLHeader"
        or envelope is None
        or envelope.tag != _E + "edXMLEnvelope"
        or envelope.getparent() is not root
    ):
        raise _wrapping("the Signature must be a child of edXML/edXMLEnvelope/edXMLHeader")
    parts = _expect(sig, ["SignedInfo", "SignatureValue", "KeyInfo?"], "Signature")
    signed_info, sig_value = parts[0], parts[1]
    key_info = parts[2] if len(parts) == 3 else None
    c14n, method, reference = _expect(
        signed_info, ["CanonicalizationMethod", "SignatureMethod", "Reference"], "SignedInfo"
    )
    if len(_children(c14n)) or c14n.get("Algorithm") != EXC_C14N:
        raise _invalid(f"canonicalisation {c14n.get('Algorithm')!r} is not exclusive c14n")
    sig_alg = method.get("Algorithm") or ""
    if sig_alg not in _RSA and sig_alg not in _ECDSA:
        raise _invalid(f"unsupported signature method {sig_alg!r}")
    if len(_children(method)):
        raise _wrapping("SignatureMethod has children")
    if set(reference.attrib) - {"URI", "Id", "Type"}:
        raise _wrapping("unexpected attribute on Reference")
    uri = reference.get("URI")
    if uri != "":
        raise _wrapping(
            f"Reference URI={uri!r}: only URI=\"\" (the whole document) is accepted"
        )
    transforms, digest_method, digest_value = _expect(
        reference, ["Transforms", "DigestMethod", "DigestValue"], "Reference"
    )
    algs = []
    for t in _children(transforms):
        if t.tag != _D + "Transform":
            raise _wrapping(f"unexpected element {t.tag} in Transforms")
        if len(t):
            raise _wrapping("a Transform with parameters (XPath, XSLT, prefix lists)")
        algs.append(t.get("Algorithm"))
    if algs != [ENVELOPED, EXC_C14N]:
        raise _wrapping(f"transforms {algs}: expected enveloped-signature then exclusive c14n")
    dig_alg = digest_method.get("Algorithm") or ""
    if dig_alg not in _DIGESTS:
        raise _invalid(f"unsupported digest method {dig_alg!r}")
    cert_der: bytes | None = None
    if key_info is not None:
        certs = list(key_info.iter(_D + "X509Certificate"))
        if len(certs) > 1:
            raise _wrapping("KeyInfo carries more than one certificate")
        if certs:
            cert_der = _b64(certs[0].text, "X509Certificate")
    return SignatureInfo(
        tree=tree,
        signature=sig,
        signed_info=signed_info,
        signature_method=sig_alg,
        digest_method=dig_alg,
        digest_value=_b64(digest_value.text, "DigestValue"),
        signature_value=_b64(sig_value.text, "SignatureValue"),
        certificate_der=cert_der,
    )


def _c14n(node: etree._Element | etree._ElementTree) -> bytes:
    return etree.tostring(node, method="c14n", exclusive=True, with_comments=False)


def _document_digest(tree: etree._ElementTree, sig: etree._Element, digest_method: str) -> bytes:
    """Digest of the document with ``sig`` removed (the enveloped-signature transform).

    The tree is restored afterwards. The text after the Signature stays in the document.
    """
    parent = sig.getparent()
    assert parent is not None
    index = parent.index(sig)
    prev = sig.getprevious()
    saved = prev.tail if prev is not None else parent.text
    tail = sig.tail or ""
    if prev is not None:
        prev.tail = (prev.tail or "") + tail
    else:
        parent.text = (parent.text or "") + tail
    parent.remove(sig)
    try:
        return _DIGESTS[digest_method](_c14n(tree)).digest()
    finally:
        parent.insert(index, sig)
        sig.tail = tail or None
        if prev is not None:
            prev.tail = saved
        else:
            parent.text = saved


def verify_signature(info: SignatureInfo, public_key: object) -> None:
    """Check the digest and the signature value with ``public_key`` (RSA or EC).

    Raises PackageRejected(SIGNATURE_INVALID) when they do not verify.
    """
    signed = _c14n(info.signed_info)
    if isinstance(public_key, rsa.RSAPublicKey):
        hash_cls = _RSA.get(info.signature_method)
        if hash_cls is None:
            raise _invalid("the certificate holds an RSA key but the method is not RSA")
        if public_key.key_size < 2048:
            raise _invalid(f"RSA key of {public_key.key_size} bits; at least 2048 required")
        try:
            public_key.verify(info.signature_value, signed, padding.PKCS1v15(), hash_cls)
        except InvalidSignature:
            raise _invalid("the signature value does not match SignedInfo") from None
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        hash_cls = _ECDSA.get(info.signature_method)
        if hash_cls is None:
            raise _invalid("the certificate holds an EC key but the method is not ECDSA")
        size = (public_key.curve.key_size + 7) // 8
        raw = info.signature_value
        if len(raw) != 2 * size:
            raise _invalid(f"ECDSA value of {len(raw)} bytes; expected {2 * size}")
        der = encode_dss_signature(
            int.from_bytes(raw[:size], "big"), int.from_bytes(raw[size:], "big")
        )
        try:
            public_key.verify(der, signed, ec.ECDSA(hash_cls))
        except InvalidSignature:
            raise _invalid("the signature value does not match SignedInfo") from None
    else:
        raise _invalid(f"unsupported key type {type(public_key).__name__}")
    digest = _document_digest(info.tree, info.signature, info.digest_method)
    if digest != info.digest_value:
        raise _invalid("the document was changed after it was signed (digest mismatch)")


def verify_package(
    body: bytes, certificates: Sequence[x509.Certificate] = ()
) -> tuple[SignatureInfo, x509.Certificate] | None:
    """Find and verify the signature of ``body``; None when it carries none.

    Without ``certificates`` the certificate in KeyInfo is used (integrity only: the caller
    decides whether to trust it). With ``certificates`` the signature must verify with one of
    them: the one whose fingerprint matches KeyInfo's, or each in turn when KeyInfo has no
    certificate; otherwise CERTIFICATE_UNKNOWN.
    """
    info = find_signature(body)
    if info is None:
        return None
    if not certificates:
        if info.certificate_der is None:
            raise PackageRejected(Reason.CERTIFICATE_UNKNOWN, "KeyInfo has no certificate")
        try:
            cert = x509.load_der_x509_certificate(info.certificate_der)
        except ValueError:
            raise _invalid("the certificate in KeyInfo cannot be read") from None
        verify_signature(info, cert.public_key())
        return info, cert
    if info.fingerprint is not None:
        for cert in certificates:
            if certificate_fingerprint(cert) == info.fingerprint:
                verify_signature(info, cert.public_key())
                return info, cert
        raise PackageRejected(
            Reason.CERTIFICATE_UNKNOWN, f"certificate sha256:{info.fingerprint} is not trusted"
        )
    last: PackageRejected | None = None
    for cert in certificates:
        try:
            verify_signature(info, cert.public_key())
        except PackageRejected as exc:
            last = exc
            continue
        return info, cert
    assert last is not None
    raise last


# -- signing ----------------------------------------------------------------------------------


def _load_key(
    key_pem: bytes, password: bytes | None
) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(key_pem, password=password)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ValueError(  # noqa: TRY004 - a bad key file is a value error for callers
            f"unsupported key type {type(key).__name__}: use RSA or ECDSA"
        )
    return key


def _placeholders(header: etree._Element) -> list[etree._Element]:
    return [c for c in header if c.tag in (_E + "Signature", "Signature")]


def _remove_keeping_text(el: etree._Element) -> None:
    """Remove ``el``; the whitespace before it goes too, the text after it stays."""
    parent = el.getparent()
    assert parent is not None
    prev = el.getprevious()
    tail = el.tail
    if prev is not None:
        prev.tail = tail if tail is not None else prev.tail
    else:
        parent.text = tail if tail is not None else parent.text
    parent.remove(el)


def sign_package(
    body: bytes,
    key_pem: bytes,
    cert_pem: bytes,
    *,
    password: bytes | None = None,
) -> bytes:
    """Return ``body`` with an enveloped XML-DSig signature in ``edXMLHeader``.

    RSA keys sign with RSA-SHA256, EC keys (P-256) with ECDSA-SHA256; the digest is SHA-256
    over the exclusive canonical form of the whole document; the certificate goes in
    KeyInfo. The SDK's placeholder ``<Signature>`` is replaced. CRLF line endings are kept.
    Raises ValueError when ``body`` is not an edXML package, is already signed, or the key
    does not match the certificate.
    """
    key = _load_key(key_pem, password)
    cert = x509.load_pem_x509_certificate(cert_pem)
    if cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise ValueError("the private key does not belong to the certificate")
    try:
        tree = _parse(body)
    except PackageRejected as exc:
        raise ValueError(str(exc)) from None
    root = tree.getroot()
    if next(root.iter(_SIGNATURE), None) is not None:
        raise ValueError("the package already carries an XML-DSig signature")
    header = root.find(f"{_E}edXMLEnvelope/{_E}edXMLHeader")
    if root.tag != _E + "edXML" or header is None:
        raise ValueError("not an edXML package: edXML/edXMLEnvelope/edXMLHeader is missing")
    for placeholder in _placeholders(header):
        _remove_keeping_text(placeholder)

    if isinstance(key, rsa.RSAPrivateKey):
        method = RSA_SHA256
    else:
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError(  # noqa: TRY004 - same
                f"EC curve {key.curve.name}: lienthong signs with P-256"
            )
        method = ECDSA_SHA256

    def sub(parent: etree._Element, name: str, **attrib: str) -> etree._Element:
        return etree.SubElement(parent, _D + name, attrib)

    sig = etree.Element(_SIGNATURE, nsmap={None: DSIG_NS})  # type: ignore[dict-item]
    signed_info = sub(sig, "SignedInfo")
    sub(signed_info, "CanonicalizationMethod", Algorithm=EXC_C14N)
    sub(signed_info, "SignatureMethod", Algorithm=method)
    ref = sub(signed_info, "Reference", URI="")
    transforms = sub(ref, "Transforms")
    sub(transforms, "Transform", Algorithm=ENVELOPED)
    sub(transforms, "Transform", Algorithm=EXC_C14N)
    sub(ref, "DigestMethod", Algorithm=SHA256)
    digest_value = sub(ref, "DigestValue")
    sig_value = sub(sig, "SignatureValue")
    x509_data = sub(sub(sig, "KeyInfo"), "X509Data")
    sub(x509_data, "X509Certificate").text = base64.b64encode(
        cert.public_bytes(serialization.Encoding.DER)
    ).decode()

    # place it last in the header, indented like its siblings
    last = header[-1] if len(header) else None
    if last is not None and (last.tail or "").strip() == "":
        sig.tail = last.tail
        last.tail = (last.tail or "") + "  "
    header.append(sig)

    digest_value.text = base64.b64encode(_document_digest(tree, sig, SHA256)).decode()
    signed = _c14n(signed_info)
    if isinstance(key, rsa.RSAPrivateKey):
        value = key.sign(signed, padding.PKCS1v15(), hashes.SHA256())
    else:
        r, s = decode_dss_signature(key.sign(signed, ec.ECDSA(hashes.SHA256())))
        value = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    sig_value.text = base64.b64encode(value).decode()

    out = b'<?xml version="1.0" encoding="UTF-8"?>\n' + etree.tostring(tree, encoding="UTF-8")
    if b"\r\n" in body:
        out = out.replace(b"\n", b"\r\n")
    return out
