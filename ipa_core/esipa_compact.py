"""minimizeEsipaBytes (SGP.32 v1.2 ipaFeatures): the compact forms of the eUICC's
AuthenticateServer and PrepareDownload answers an IPA may send the eIM instead of the
full ones. A board sends the full answers (it does not announce minimizeEsipaBytes), so
these builders live outside the modules it freezes; they stay reachable as
ipa_core.esipa.compact_authenticate_server_response / compact_prepare_download_response,
imported on first use (this module imports esipa_decode, never esipa).
"""

from ipa_core import tlv
from ipa_core import es10_decode as d
from ipa_core.errors import ProtocolError
from ipa_core.esipa_decode import raw_tlv, retag


def compact_authenticate_server_response(response, include_ctx_params1=True,
                                         include_certificates=False):
    """minimizeEsipaBytes: an AuthenticateServer answer in its compact form 'BF38' { 'A2' ... }.

    From authenticateResponseOk 'A0' { euiccSigned1 '30' { transactionId 80,
    serverAddress 83, serverChallenge 84, euiccInfo2 BF22, ctxParams1 A0 },
    euiccSignature1 5F37, euiccCertificate 30, eumCertificate 30 } this builds
    compactAuthenticateResponseOk 'A2' { compactEuiccSigned1 [0] 'A0' {
    extCardResource [4] '84' (from euiccInfo2), ctxParams1 [2] 'A2' { A0 }? },
    euiccSignature1 5F37 (verbatim), euiccCertificate [1] 'A1'?,
    eumCertificate [2] 'A2'? }: the eIM rebuilds euiccSigned1 from what it
    knows to check and forward the signature. An answer that is not
    authenticateResponseOk (an error, or already compact) is returned as is.
    """
    raw = raw_tlv(response, (0xBF38,), "authenticateServerResponse")
    t = d.unwrap(tlv.decode(raw))
    ok = t.find(0xA0)
    if ok is None:
        return raw
    kids = ok.children()
    if len(kids) < 4 or kids[0].tag != 0x30 or kids[1].tag != 0x5F37:
        raise ProtocolError("authenticateResponseOk: expected euiccSigned1 30, euiccSignature1 "
                            "5F37 and two certificates")
    signed1 = kids[0]
    ext = signed1.need(0xBF22, "euiccInfo2 in euiccSigned1").need(0x84, "extCardResource")
    ctx = signed1.find(0xA0) if include_ctx_params1 else None
    compact = tlv.enc(0xA0, tlv.encode(0x84, ext.value),
                      None if ctx is None else tlv.encode(0xA2, ctx.raw))
    certs = None
    if include_certificates:
        certs = retag(kids[2].raw, 0xA1) + retag(kids[3].raw, 0xA2)
    return tlv.enc(0xBF38, tlv.enc(0xA2, compact, kids[1].raw, certs))


def compact_prepare_download_response(response):
    """minimizeEsipaBytes: a PrepareDownload answer in compact form 'BF21' { 'A2' ... }.

    From downloadResponseOk 'A0' { euiccSigned2 '30' { transactionId 80,
    euiccOtpk 5F49, hashCc 04? }, euiccSignature2 5F37 } this builds
    compactDownloadResponseOk 'A2' { compactEuiccSigned2 '30' { euiccOtpk 5F49,
    hashCc 04? }, euiccSignature2 5F37 (verbatim) }: only the transactionId,
    which the eIM knows, is left out. Other answers are returned as is.
    """
    raw = raw_tlv(response, (0xBF21,), "prepareDownloadResponse")
    t = d.unwrap(tlv.decode(raw))
    ok = t.find(0xA0)
    if ok is None:
        return raw
    signed2 = ok.need(0x30, "euiccSigned2")
    sig = ok.need(0x5F37, "euiccSignature2")
    keep = [c.raw for c in signed2 if c.tag != 0x80]
    return tlv.enc(0xBF21, tlv.enc(0xA2, tlv.encode(0x30, keep), sig.raw))
