"""Attacks on XML signatures, each refused with the reason an operator would expect.

Signature wrapping (XSW) tries to make the verifier check one part of a document while the
router and the recipient read another. lienthong accepts exactly one Signature, in
edXMLHeader, whose single Reference covers the whole document (URI=""), with exactly the
enveloped + exclusive-c14n transforms: anything else is SIGNATURE_WRAPPING.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable

import pytest
from lxml import etree
from signxml import CanonicalizationMethod, DigestAlgorithm, SignatureMethod, XMLSigner, XMLVerifier

from schemas import PackageRejected, Reason
from schemas.signature import DSIG_NS, sign_package, verify_package
from tests.factory import edoc
from tests.pki import Identity, identity

NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
E = "{" + NS + "}"
D = "{" + DSIG_NS + "}"


@pytest.fixture(scope="module")
def rsa_signer() -> Identity:
    return identity("vpcp.gov.vn", "rsa")


def _package(number: str = "7816") -> bytes:
    return edoc("000.00.00.G22", ["000.00.00.H41"], number=number)[1]


def _signed(who: Identity, number: str = "7816") -> bytes:
    return sign_package(_package(number), who.key_pem, who.cert_pem)


def _mutate(data: bytes, change: Callable[[etree._Element], None]) -> bytes:
    root = etree.fromstring(data)
    change(root)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _sig(root: etree._Element) -> etree._Element:
    found = root.find(f".//{D}Signature")
    assert found is not None
    return found


def _rejected(data: bytes, who: Identity) -> Reason:
    with pytest.raises(PackageRejected) as err:
        verify_package(data, [who.cert])
    return err.value.reason


def _header(root: etree._Element) -> etree._Element:
    h = root.find(f"{E}edXMLEnvelope/{E}edXMLHeader")
    assert h is not None
    return h


def _set_subject(root: etree._Element, text: str) -> None:
    subject = root.find(f".//{E}Subject")
    assert subject is not None
    subject.text = text


# -- wrapping -------------------------------------------------------------------------------


def test_a_second_signature_is_wrapping(rsa_signer: Identity) -> None:
    def add_second(root: etree._Element) -> None:
        body = root.find(f"{E}edXMLEnvelope/{E}edXMLBody")
        assert body is not None
        body.append(copy.deepcopy(_sig(root)))

    assert _rejected(_mutate(_signed(rsa_signer), add_second), rsa_signer) is (
        Reason.SIGNATURE_WRAPPING
    )


def test_a_signature_nested_in_key_info_is_wrapping(rsa_signer: Identity) -> None:
    def nest(root: etree._Element) -> None:
        sig = _sig(root)
        key_info = sig.find(f"{D}KeyInfo")
        assert key_info is not None
        key_info.append(copy.deepcopy(sig))

    assert _rejected(_mutate(_signed(rsa_signer), nest), rsa_signer) is Reason.SIGNATURE_WRAPPING


@pytest.mark.parametrize("where", ["root", "envelope", "attachments", "body"])
def test_a_moved_signature_is_wrapping_even_though_its_digest_still_matches(
    rsa_signer: Identity, where: str
) -> None:
    """The enveloped transform removes the Signature wherever it is, so the crypto would
    still verify: the structural rule is what refuses it."""

    def move(root: etree._Element) -> None:
        sig = _sig(root)
        _header(root).remove(sig)
        target = {
            "root": root,
            "envelope": root.find(f"{E}edXMLEnvelope"),
            "attachments": root.find("{*}AttachmentEncoded"),
            "body": root.find(f"{E}edXMLEnvelope/{E}edXMLBody"),
        }[where]
        assert target is not None
        target.append(sig)

    assert _rejected(_mutate(_signed(rsa_signer), move), rsa_signer) is (
        Reason.SIGNATURE_WRAPPING
    )


def test_a_valid_signature_over_an_id_subtree_is_wrapping(rsa_signer: Identity) -> None:
    """A genuine signature (made by signxml) that covers only MessageHeader, by Id: a
    verifier that follows the Reference would accept a package whose attachments were
    swapped. lienthong refuses any Reference but the whole document."""
    root = etree.fromstring(_package())
    header = _header(root)
    message_header = header.find(f"{E}MessageHeader")
    assert message_header is not None
    message_header.set("Id", "mh")
    etree.SubElement(header, D + "Signature", Id="placeholder", nsmap={"ds": DSIG_NS})
    signed = XMLSigner(
        signature_algorithm=SignatureMethod.RSA_SHA256,
        digest_algorithm=DigestAlgorithm.SHA256,
        c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    ).sign(root, key=rsa_signer.key_pem, cert=rsa_signer.cert_pem.decode(),
           reference_uri="#mh", id_attribute="Id")
    data = etree.tostring(signed)
    # the attacker swaps the attachment: the subtree signature still verifies for signxml
    swapped = data.replace(b"JVBERi0x", b"JVBERi0y", 1)
    assert swapped != data
    XMLVerifier().verify(swapped, x509_cert=rsa_signer.cert_pem.decode(), id_attribute="Id")
    assert _rejected(swapped, rsa_signer) is Reason.SIGNATURE_WRAPPING


def test_an_object_carrying_the_original_content_is_wrapping(rsa_signer: Identity) -> None:
    """Classic XSW: the signed original hidden in ds:Object, a forged document outside."""

    def wrap(root: etree._Element) -> None:
        sig = _sig(root)
        obj = etree.SubElement(sig, D + "Object")
        obj.append(copy.deepcopy(_header(root).find(f"{E}MessageHeader")))
        _set_subject(root, "V/v chuyển tiền gấp")

    assert _rejected(_mutate(_signed(rsa_signer), wrap), rsa_signer) is Reason.SIGNATURE_WRAPPING


def test_a_second_reference_is_wrapping(rsa_signer: Identity) -> None:
    def add_reference(root: etree._Element) -> None:
        ref = _sig(root).find(f"{D}SignedInfo/{D}Reference")
        assert ref is not None
        extra = copy.deepcopy(ref)
        extra.set("URI", "#other")
        ref.addnext(extra)

    assert _rejected(_mutate(_signed(rsa_signer), add_reference), rsa_signer) is (
        Reason.SIGNATURE_WRAPPING
    )


@pytest.mark.parametrize("uri", ["#mh", "#xpointer(/)", "http://127.0.0.1/doc.xml", None])
def test_a_reference_that_is_not_the_whole_document_is_wrapping(
    rsa_signer: Identity, uri: str | None
) -> None:
    def retarget(root: etree._Element) -> None:
        ref = _sig(root).find(f"{D}SignedInfo/{D}Reference")
        assert ref is not None
        if uri is None:
            del ref.attrib["URI"]
        else:
            ref.set("URI", uri)

    assert _rejected(_mutate(_signed(rsa_signer), retarget), rsa_signer) is (
        Reason.SIGNATURE_WRAPPING
    )


def test_an_xpath_transform_is_wrapping(rsa_signer: Identity) -> None:
    def xpath(root: etree._Element) -> None:
        transforms = _sig(root).find(f"{D}SignedInfo/{D}Reference/{D}Transforms")
        assert transforms is not None
        t = etree.SubElement(transforms, D + "Transform",
                             Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116")
        etree.SubElement(t, D + "XPath").text = "ancestor-or-self::*[local-name()='Subject']"

    assert _rejected(_mutate(_signed(rsa_signer), xpath), rsa_signer) is (
        Reason.SIGNATURE_WRAPPING
    )


# -- invalid --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method",
    [
        "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
        "http://www.w3.org/2001/04/xmldsig-more#hmac-sha256",  # key confusion: HMAC with a cert
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",  # ECDSA method, RSA key
    ],
)
def test_weak_or_mismatched_algorithms_are_invalid(rsa_signer: Identity, method: str) -> None:
    def set_method(root: etree._Element) -> None:
        m = _sig(root).find(f"{D}SignedInfo/{D}SignatureMethod")
        assert m is not None
        m.set("Algorithm", method)

    assert _rejected(_mutate(_signed(rsa_signer), set_method), rsa_signer) is (
        Reason.SIGNATURE_INVALID
    )


def test_a_signature_copied_from_another_package_is_invalid(rsa_signer: Identity) -> None:
    first = etree.fromstring(_signed(rsa_signer, "1"))
    second_data = _signed(rsa_signer, "2")

    def transplant(root: etree._Element) -> None:
        mine = _sig(root)
        mine.getparent().replace(mine, copy.deepcopy(_sig(first)))  # type: ignore[union-attr]

    assert _rejected(_mutate(second_data, transplant), rsa_signer) is Reason.SIGNATURE_INVALID


def test_a_changed_document_with_a_recomputed_digest_is_invalid(rsa_signer: Identity) -> None:
    """The attacker edits and fixes the digest; the signature over SignedInfo breaks."""
    import hashlib

    def forge(root: etree._Element) -> None:
        _set_subject(root, "V/v chuyển tiền gấp")
        sig = _sig(root)
        parent = sig.getparent()
        assert parent is not None
        idx = parent.index(sig)
        parent.remove(sig)
        digest = hashlib.sha256(
            etree.tostring(root.getroottree(), method="c14n", exclusive=True)
        ).digest()
        parent.insert(idx, sig)
        dv = sig.find(f"{D}SignedInfo/{D}Reference/{D}DigestValue")
        assert dv is not None
        dv.text = base64.b64encode(digest).decode()

    assert _rejected(_mutate(_signed(rsa_signer), forge), rsa_signer) is Reason.SIGNATURE_INVALID


def test_a_1024_bit_rsa_key_is_invalid() -> None:
    weak = identity("weak", "rsa1024")
    assert _rejected(_signed(weak), weak) is Reason.SIGNATURE_INVALID


def test_a_doctype_in_a_signed_package_is_refused(rsa_signer: Identity) -> None:
    data = _signed(rsa_signer)
    evil = data.replace(
        b"?>", b'?>\n<!DOCTYPE edXML [<!ENTITY x "V/v chuy\xe1\xbb\x83n ti\xe1\xbb\x81n">]>', 1
    )
    assert _rejected(evil, rsa_signer) is Reason.FORBIDDEN_XML_CONSTRUCT
