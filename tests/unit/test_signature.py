"""XML signatures on edXML packages: what we sign verifies, with our code and with two
independent XML-DSig implementations (xmlsec1, signxml), and what they sign verifies with
ours. Attacks are in test_signature_attacks.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from lxml import etree
from signxml import CanonicalizationMethod, DigestAlgorithm, SignatureMethod, XMLSigner, XMLVerifier

from schemas import PackageRejected, Reason, WarningCode, parse_package
from schemas.signature import (
    DSIG_NS,
    certificate_fingerprint,
    find_signature,
    sign_package,
    verify_package,
)
from tests import packages
from tests.factory import edoc
from tests.pki import Identity, identity

NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
E = "{" + NS + "}"
D = "{" + DSIG_NS + "}"
KINDS = ["rsa", "p256"]


@pytest.fixture(scope="module", params=KINDS)
def signer(request: pytest.FixtureRequest) -> Identity:
    return identity("vpcp.gov.vn", request.param)


def _package() -> bytes:
    return edoc("000.00.00.G22", ["000.00.00.H41"], number="7816")[1]


def test_signed_package_verifies_and_the_parser_sees_a_real_signature(signer: Identity) -> None:
    body = _package()
    signed = sign_package(body, signer.key_pem, signer.cert_pem)
    parsed = parse_package(signed)
    assert parsed.package.has_signature
    assert WarningCode.PLACEHOLDER_SIGNATURE not in {w.code for w in parsed.warnings}
    result = verify_package(signed, [signer.cert])
    assert result is not None
    info, cert = result
    assert cert == signer.cert
    assert info.fingerprint == certificate_fingerprint(signer.cert)
    # the signature sits in edXMLHeader, after the header's own content
    root = etree.fromstring(signed)
    header = root.find(f"{E}edXMLEnvelope/{E}edXMLHeader")
    assert header is not None
    assert header[-1].tag == D + "Signature"
    # CRLF line endings of the builder are kept
    assert b"\r\n" in signed
    assert b"\n" not in signed.replace(b"\r\n", b"")


def test_sdk_placeholder_is_replaced_and_is_not_a_signature(signer: Identity) -> None:
    body = packages.package(packages.NEW)
    assert find_signature(body) is None  # the placeholder proves nothing
    signed = sign_package(body, signer.key_pem, signer.cert_pem)
    assert b"<Signature>" not in signed  # the placeholder is gone
    parsed = parse_package(signed)
    assert parsed.package.has_signature
    assert verify_package(signed, [signer.cert]) is not None


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"V/v k", b"V/V k"),  # the subject
        (b"000.00.00.H41</edXML:OrganId>", b"000.00.00.H42</edXML:OrganId>"),  # a recipient
        (b"JVBERi0x", b"JVBERi0y"),  # the attachment's bytes (base64 of %PDF-1)
    ],
)
def test_any_change_after_signing_is_invalid(signer: Identity, old: bytes, new: bytes) -> None:
    signed = sign_package(_package(), signer.key_pem, signer.cert_pem)
    assert old in signed
    with pytest.raises(PackageRejected) as err:
        verify_package(signed.replace(old, new, 1), [signer.cert])
    assert err.value.reason is Reason.SIGNATURE_INVALID


def test_formatting_outside_the_canonical_form_does_not_matter(signer: Identity) -> None:
    """Exclusive c14n: CRLF vs LF and comments are not part of what is signed."""
    signed = sign_package(_package(), signer.key_pem, signer.cert_pem)
    assert verify_package(signed.replace(b"\r\n", b"\n"), [signer.cert]) is not None
    commented = signed.replace(b"<edXML:Subject>", b"<!-- note --><edXML:Subject>", 1)
    assert verify_package(commented, [signer.cert]) is not None


def test_a_certificate_that_is_not_trusted_is_unknown(signer: Identity) -> None:
    signed = sign_package(_package(), signer.key_pem, signer.cert_pem)
    other = identity("someone-else", "p256")
    with pytest.raises(PackageRejected) as err:
        verify_package(signed, [other.cert])
    assert err.value.reason is Reason.CERTIFICATE_UNKNOWN


def test_signing_refuses_bad_input(signer: Identity) -> None:
    signed = sign_package(_package(), signer.key_pem, signer.cert_pem)
    with pytest.raises(ValueError, match="already"):
        sign_package(signed, signer.key_pem, signer.cert_pem)
    other = identity("other", "p256")
    with pytest.raises(ValueError, match="does not belong"):
        sign_package(_package(), other.key_pem, signer.cert_pem)
    with pytest.raises(ValueError, match="not an edXML"):
        sign_package(b"<a/>", signer.key_pem, signer.cert_pem)


# -- interoperability ------------------------------------------------------------------------


def _xmlsec1(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["xmlsec1", *args], capture_output=True, text=True, check=False)


def test_xmlsec1_verifies_our_signature(signer: Identity, tmp_path: Path) -> None:
    _, cert_path = signer.write(tmp_path, "signer")
    signed = sign_package(_package(), signer.key_pem, signer.cert_pem)
    good, bad = tmp_path / "good.xml", tmp_path / "bad.xml"
    good.write_bytes(signed)
    bad.write_bytes(signed.replace(b"V/v k", b"V/V k", 1))
    base = ["--verify", "--enabled-reference-uris", "empty", "--insecure",
            "--pubkey-cert-pem", str(cert_path)]
    ok = _xmlsec1(*base, str(good))
    assert ok.returncode == 0, ok.stderr
    assert "OK" in ok.stderr
    tampered = _xmlsec1(*base, str(bad))
    assert tampered.returncode != 0  # the negative control: xmlsec1 is really checking


_TEMPLATE = (
    '<Signature xmlns="http://www.w3.org/2000/09/xmldsig#"><SignedInfo>'
    '<CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>'
    '<SignatureMethod Algorithm="{method}"/>'
    '<Reference URI=""><Transforms>'
    '<Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>'
    '<Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></Transforms>'
    '<DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>'
    "<DigestValue/></Reference></SignedInfo><SignatureValue/>"
    "<KeyInfo><X509Data/></KeyInfo></Signature>"
)
_METHODS = {
    "rsa": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "p256": "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
}


def test_we_verify_what_xmlsec1_signs(tmp_path: Path) -> None:
    for kind in KINDS:
        who = identity(f"xmlsec-{kind}", kind)
        key_path, cert_path = who.write(tmp_path, kind)
        template = _package().replace(
            b"</edXML:edXMLHeader>",
            _TEMPLATE.format(method=_METHODS[kind]).encode() + b"</edXML:edXMLHeader>",
        )
        (tmp_path / "tmpl.xml").write_bytes(template)
        out = tmp_path / f"signed-{kind}.xml"
        done = _xmlsec1("--sign", "--privkey-pem", f"{key_path},{cert_path}",
                        "--output", str(out), str(tmp_path / "tmpl.xml"))
        assert done.returncode == 0, done.stderr
        signed = out.read_bytes()
        result = verify_package(signed, [who.cert])
        assert result is not None
        assert result[1] == who.cert
        assert parse_package(signed).package.has_signature
        with pytest.raises(PackageRejected) as err:
            verify_package(signed.replace(b"V/v k", b"V/V k", 1), [who.cert])
        assert err.value.reason is Reason.SIGNATURE_INVALID


def test_signxml_and_we_agree_both_ways(signer: Identity) -> None:
    ours = sign_package(_package(), signer.key_pem, signer.cert_pem)
    XMLVerifier().verify(ours, x509_cert=signer.cert_pem.decode())

    root = etree.fromstring(_package())
    header = root.find(f"{E}edXMLEnvelope/{E}edXMLHeader")
    assert header is not None
    etree.SubElement(header, D + "Signature", Id="placeholder", nsmap={"ds": DSIG_NS})
    method = (SignatureMethod.RSA_SHA256 if "RSA" in type(signer.key).__name__
              else SignatureMethod.ECDSA_SHA256)
    theirs = etree.tostring(
        XMLSigner(
            signature_algorithm=method,
            digest_algorithm=DigestAlgorithm.SHA256,
            c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
        ).sign(root, key=signer.key_pem, cert=signer.cert_pem.decode())
    )
    result = verify_package(theirs, [signer.cert])
    assert result is not None
    assert result[1] == signer.cert
