"""ES10b functions of a profile download (SGP.22 v2.5 3.1.3, 5.7.13-5.7.16; SGP.32 v1.2 5.9).

AuthenticateServer, PrepareDownload, LoadBoundProfilePackage and
CancelSession, used in direct download (ES9+ to the SM-DP+) and indirect
download (relayed by the eIM over ESipa). Everything the eUICC signs is
returned with its exact bytes under "raw" and everything a server signed
is taken as whole TLVs and forwarded verbatim. Re-exported by ipa_core.es10.
"""

from ipa_core import tlv
from ipa_core import es10_decode as d
from ipa_core import es10_signed as sg
from ipa_core.errors import ProtocolError, TlvError

CANCEL_SESSION_ERROR = {5: "invalidTransactionId", 127: "undefinedError"}
AUTHENTICATE_ERROR_CODE = {1: "invalidCertificate", 2: "invalidSignature",
                           3: "unsupportedCurve", 4: "noSessionContext", 5: "invalidOid",
                           6: "euiccChallengeMismatch", 7: "ciPKUnknown",
                           127: "undefinedError"}
DOWNLOAD_ERROR_CODE = {1: "invalidCertificate", 2: "invalidSignature", 3: "unsupportedCurve",
                       4: "noSessionContext", 5: "invalidTransactionId", 127: "undefinedError"}
CANCEL_SESSION_REASON = {"endUserRejection": 0, "postponed": 1, "timeout": 2,
                         "pprNotAllowed": 3, "metadataMismatch": 4,
                         "loadBppExecutionError": 5, "undefinedReason": 127}
DEVICE_CAPABILITIES = ("gsmSupportedRelease", "utranSupportedRelease",
                       "cdma2000onexSupportedRelease", "cdma2000hrpdSupportedRelease",
                       "cdma2000ehrpdSupportedRelease", "eutranEpcSupportedRelease",
                       "contactlessSupportedRelease", "rspCrlSupportedVersion",
                       "nrEpcSupportedRelease", "nr5gcSupportedRelease",
                       "eutran5gcSupportedRelease", "lpaSvn", "catSupportedClasses",
                       "euiccFormFactorType", "deviceAdditionalFeatureSupport")


def encode_ctx_params1(matching_id=None, tac=b"\x00\x00\x00\x00", device_capabilities=None,
                       imei=None):
    """CtxParams1 'A0' { matchingId '80'?, deviceInfo 'A1' { tac '80', deviceCapabilities 'A1',
    imei '82'? } } for AuthenticateServer.

    device_capabilities: {name: value} with names from DEVICE_CAPABILITIES;
    a value is "x.y.z" (VersionType), an int, or the raw value bytes.
    """
    caps = []
    dc = device_capabilities or {}
    for i, name in enumerate(DEVICE_CAPABILITIES):
        v = dc.get(name)
        if v is None:
            continue
        if isinstance(v, str):
            v = bytes([int(x) for x in v.split(".")])
        elif isinstance(v, int):
            v = tlv.int_encode(v)
        # deviceAdditionalFeatureSupport (14) is a SEQUENCE: constructed tag.
        caps.append(tlv.encode((0xA0 if i == 14 else 0x80) + i, bytes(v)))
    for name in dc:
        if name not in DEVICE_CAPABILITIES:
            raise ValueError("unknown device capability %r" % (name,))
    tac = d.binary(tac, "tac")
    if len(tac) != 4:
        raise ValueError("tac: expected 4 bytes, got %d" % len(tac))
    info = tlv.enc(0xA1, tlv.encode(0x80, tac), tlv.enc(0xA1, *caps),
                   None if imei is None else tlv.encode(0x82, d.binary(imei, "imei")))
    return tlv.enc(0xA0, None if matching_id is None else tlv.encode(0x80, matching_id.encode()),
                   info)


def _download_answer(t, kinds, code_tag, names):
    """AuthenticateServer / PrepareDownload answers: CHOICE by A0/A1/A2, kept raw."""
    out = {"raw": t.raw}
    c = d.unwrap(t)
    k = d.need_any(c, (0xA0, 0xA1, 0xA2), "an %s, %s or %s alternative" % kinds)
    out["kind"] = kinds[(k.tag & 0x0F)]
    if k.tag == 0xA1:
        out["transactionId"] = k.need(0x80, "transactionId").value
        code = d.need_any(k, (0x02, 0x81), code_tag).as_int()
        out[code_tag] = code
        out["error"] = names.get(code, "undefined")
    elif k.tag == 0xA0:
        signed = k.need(0x30, "the signed data")
        out["transactionId"] = signed.need(0x80, "transactionId").value
    return out


def authenticate_server(s, server_signed1, server_signature1, euicc_ci_pk_id_to_be_used,
                        server_certificate, ctx_params1):
    """ES10b.AuthenticateServer 'BF38': every argument is a whole TLV, forwarded verbatim.

    server_signed1 '30', server_signature1 '5F37', euicc_ci_pk_id_to_be_used
    '04', server_certificate '30', ctx_params1 'A0' (see encode_ctx_params1).
    Returns {"raw" (forward as is), "kind": authenticateResponseOk |
    authenticateResponseError | compactAuthenticateResponseOk,
    "transactionId"?, "authenticateErrorCode"?, "error"?}. An error answer
    is returned, since it is forwarded to the server too.
    """
    f = "ES10b.AuthenticateServer"
    req = tlv.enc(0xBF38,
                  d.raw_tlv(server_signed1, 0x30, "serverSigned1"),
                  d.raw_tlv(server_signature1, 0x5F37, "serverSignature1"),
                  d.raw_tlv(euicc_ci_pk_id_to_be_used, 0x04, "euiccCiPKIdToBeUsed"),
                  d.raw_tlv(server_certificate, 0x30, "serverCertificate"),
                  d.raw_tlv(ctx_params1, 0xA0, "ctxParams1"))
    return _download_answer(d.exchange(s, f, req, 0xBF38),
                            ("authenticateResponseOk", "authenticateResponseError",
                             "compactAuthenticateResponseOk"),
                            "authenticateErrorCode", AUTHENTICATE_ERROR_CODE)


def prepare_download(s, smdp_signed2, smdp_signature2, smdp_certificate, hash_cc=None):
    """ES10b.PrepareDownload 'BF21' { smdpSigned2 '30', smdpSignature2 '5F37', hashCc '04'?,
    smdpCertificate '30' }: TLVs forwarded verbatim; hash_cc is the 32-byte value.

    Returns {"raw", "kind": downloadResponseOk | downloadResponseError |
    compactDownloadResponseOk, "transactionId"?, "downloadErrorCode"?, "error"?}.
    """
    f = "ES10b.PrepareDownload"
    hcc = None
    if hash_cc is not None:
        hash_cc = bytes(hash_cc)
        if len(hash_cc) != 32:
            raise ValueError("hashCc: expected 32 bytes, got %d" % len(hash_cc))
        hcc = tlv.encode(0x04, hash_cc)
    req = tlv.enc(0xBF21,
                  d.raw_tlv(smdp_signed2, 0x30, "smdpSigned2"),
                  d.raw_tlv(smdp_signature2, 0x5F37, "smdpSignature2"),
                  hcc,
                  d.raw_tlv(smdp_certificate, 0x30, "smdpCertificate"))
    return _download_answer(d.exchange(s, f, req, 0xBF21),
                            ("downloadResponseOk", "downloadResponseError",
                             "compactDownloadResponseOk"),
                            "downloadErrorCode", DOWNLOAD_ERROR_CODE)


def bpp_segments(bpp):
    """The STORE DATA segments of a BoundProfilePackage 'BF36' as (start, end) offsets (SGP.22 2.5.5).

    (1) BF36 tag+length with the whole BF23; (2) A0 with its 87; (3) A1
    tag+length, then each 88 alone; (4) A2 with its 87 (optional); (5) A3
    tag+length, then each 86 alone. The whole package is checked before
    anything is sent, and offsets (not copies) keep the heap flat.
    """
    t = tlv.decode(bpp)
    if t.tag != 0xBF36:
        raise ProtocolError("BoundProfilePackage: expected tag BF36, got %X" % t.tag)
    kids = t.children()
    if not kids or kids[0].tag != 0xBF23:
        raise ProtocolError("BoundProfilePackage: expected InitialiseSecureChannel BF23 first")
    spans = [(t.start, kids[0].end)]
    last = 0
    for k in kids[1:]:
        if k.tag not in (0xA0, 0xA1, 0xA2, 0xA3) or k.tag <= last:
            raise ProtocolError("BoundProfilePackage: expected A0, A1, A2 (optional), A3 in "
                                "order after BF23, got %X" % k.tag)
        last = k.tag
        if k.tag in (0xA0, 0xA2):
            spans.append((k.start, k.end))
        else:
            spans.append((k.start, k.vstart))
            want = 0x88 if k.tag == 0xA1 else 0x86
            for c in k:
                if c.tag != want:
                    raise ProtocolError("BoundProfilePackage: expected %X in %X, got %X"
                                        % (want, k.tag, c.tag))
                spans.append((c.start, c.end))
    if last != 0xA3:
        raise ProtocolError("BoundProfilePackage: sequenceOf86 (A3) missing")
    return spans


def load_bound_profile_package(s, bpp):
    """ES10b.LoadBoundProfilePackage: send the BPP in segments; return the ProfileInstallationResult.

    Any segment may be answered early with a ProfileInstallationResult
    'BF37' (an error): sending stops and it is returned. The result (success
    or "error") is a dict from es10_signed.profile_installation_result whose
    "raw" is forwarded as is.
    """
    f = "ES10b.LoadBoundProfilePackage"
    for start, end in bpp_segments(bpp):
        rsp = s.store_data(bytes(bpp[start:end]))
        if rsp:
            t = tlv.decode(rsp)
            if t.tag != 0xBF37:
                raise TlvError(0, "a BF37 ProfileInstallationResult from " + f, "tag %X" % t.tag)
            return sg.profile_installation_result(t)
    raise ProtocolError("%s: no ProfileInstallationResult after the last segment" % f)


def cancel_session(s, transaction_id, reason):
    """ES10b.CancelSession 'BF41' { transactionId '80', reason '81' }.

    reason: an int or a CANCEL_SESSION_REASON name. Returns {"raw" (the
    whole BF41 answer, forwarded as is), "kind", "transactionId"?, "smdpOid"?,
    "reason"?}; cancelSessionResponseError -> FunctionError.
    """
    f = "ES10b.CancelSession"
    if isinstance(reason, str):
        if reason not in CANCEL_SESSION_REASON:
            raise ValueError("unknown CancelSessionReason %r" % (reason,))
        reason = CANCEL_SESSION_REASON[reason]
    t = d.call(s, f, 0xBF41, tlv.encode(0x80, d.binary(transaction_id, "transactionId")),
               tlv.encode(0x81, tlv.int_encode(reason)))
    c = d.need_any(d.unwrap(t), (0xA0, 0x81, 0xA2), "cancelSessionResponseOk (A0), error (81) "
                   "or compactCancelSessionResponseOk (A2)")
    if c.tag == 0x81:
        raise d.fail(f, c.as_int(), CANCEL_SESSION_ERROR)
    out = {"raw": t.raw}
    signed = c.need(0x30, "the signed part")
    if c.tag == 0xA0:
        out["kind"] = "cancelSessionResponseOk"
        d.fields(signed, {0x80: ("transactionId", d.v_bytes), 0x81: ("smdpOid", d.v_oid),
                          0x82: ("reason", d.v_int)}, out)
    else:
        out["kind"] = "compactCancelSessionResponseOk"
        d.fields(signed, {0x80: ("reason", d.v_int)}, out)
    return out
