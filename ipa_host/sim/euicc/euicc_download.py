"""Profile download on the virtual eUICC: SGP.22 v2.5 5.7.13 AuthenticateServer, 5.7.5
PrepareDownload, 5.7.6 LoadBoundProfilePackage, 5.7.14 CancelSession (ES10b).

Requests and answers, from RSPDefinitions / SGP32Definitions with AUTOMATIC
TAGS applied by hand (a SEQUENCE in which one component carries a tag keeps
universal tags on the others):

    AuthenticateServerRequest BF38 { 30 serverSigned1 {80 txid, 81 euiccChallenge,
        83 serverAddress, 84 serverChallenge}, 5F37 serverSignature1,
        04 euiccCiPKIdToBeUsed, 30 serverCertificate (DPauth), A0 ctxParams1 }
    -> BF38 { A0 { 30 euiccSigned1 {80 txid, 83 serverAddress, 84 serverChallenge,
                   BF22 euiccInfo2, A0 ctxParams1}, 5F37 euiccSignature1,
                   30 euiccCertificate, 30 eumCertificate } }
     | BF38 { A1 { 80 txid, 02 authenticateErrorCode } }

    PrepareDownloadRequest BF21 { 30 smdpSigned2 {80 txid, 01 ccRequiredFlag,
        [5F49 bppEuiccOtpk]}, 5F37 smdpSignature2, [04 hashCc], 30 smdpCertificate (DPpb) }
    -> BF21 { A0 { 30 euiccSigned2 {80 txid, 5F49 euiccOtpk, [04 hashCc]}, 5F37 euiccSignature2 } }
     | BF21 { A1 { 80 txid, 02 downloadErrorCode } }

    BoundProfilePackage BF36 { BF23 InitialiseSecureChannel, A0 {87..}, A1 {88..},
        [A2 {87..}], A3 {86..} }, sent as several STORE DATA sequences (BF36 header +
        BF23; A0 whole; A1 header; each 88; A2 whole; A3 header; each 86). Each
        intermediate sequence answers 9000 without data; the last one, or the first
        that fails, answers
    ProfileInstallationResult BF37 { BF27 { 80 txid, BF2F notificationMetadata,
        06 smdpOid, A2 { A0 {4F aid, 04 simaResponse} | A1 {80 bppCommandId,
        81 errorReason} } }, 5F37 euiccSignPIR }

    CancelSessionRequest BF41 { 80 txid, 81 reason }
    -> BF41 { A0 { 30 {80 txid, 81 smdpOid, 82 reason}, 5F37 signature } } | BF41 { 81 05 }

Signed bytes (as read from SGP.22 and public SM-DP+ implementations):
serverSignature1 covers serverSigned1; euiccSignature1 covers euiccSigned1;
smdpSignature2 covers smdpSigned2 followed by the euiccSignature1 data object
(5F37 40 ..); euiccSignature2 covers euiccSigned2 followed by the
smdpSignature2 data object as received; smdpSign covers what
bsp.isc_signed_bytes says; euiccSignPIR covers profileInstallationResultData
(BF27); euiccCancelSessionSignature covers euiccCancelSessionSigned.

The session context (challenge use, transaction, keys, BPP progress) lives in
`card.download`, the card's volatile memory: a power cycle (`card.reset()`)
loses it, as a real eUICC loses it. A card with a `ram_path` (the home eUICC
of `ipa --card sim`, one process per command) keeps it there between
processes while it is "powered" (session_to_json / session_from_json): the
IPA dying does not power the eUICC off. A BPP cut in the middle keeps its
transaction (CancelSession works) but not its progress: the STORE DATA chain
died with the logical channel. What a download leaves (the profile, the PIR
as a pending notification) goes into the committed state in the same atomic
save as the last answer.
"""

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from ipa_core import tlv
from ipa_core.errors import TlvError

from ipa_host.sim import bsp
from ipa_host.sim.euicc import euicc_codec as codec
from ipa_host.sim.euicc import euicc_es10 as es10
from ipa_host.sim import pki
from ipa_host.sim.euicc.euicc_apdu import SwError

# AuthenticateErrorCode / DownloadErrorCode
INVALID_CERTIFICATE, INVALID_SIGNATURE, UNSUPPORTED_CURVE, NO_SESSION_CONTEXT = 1, 2, 3, 4
INVALID_OID, EUICC_CHALLENGE_MISMATCH, CI_PK_UNKNOWN = 5, 6, 7  # AuthenticateServer only
INVALID_TRANSACTION_ID = 5  # PrepareDownload only
UNDEFINED_ERROR = 127

# BppCommandId
CMD_ISC, CMD_CONFIGURE_ISDP, CMD_STORE_METADATA, CMD_REPLACE_KEYS, CMD_LOAD_PE = 0, 1, 2, 4, 5
# ErrorReason
(INCORRECT_INPUT, BAD_SIGNATURE, BAD_TRANSACTION, BAD_CRT, BAD_REMOTE_OP, BAD_CLASS,
 SCP03T_STRUCTURE, SCP03T_SECURITY, ICCID_EXISTS, NO_MEMORY) = range(1, 11)

# id-rspRole (RSPDefinitions): which certificate may sign what
ROLE_PREFIX = "2.23.146.1.2.1."
ROLE_DP_AUTH, ROLE_DP_PB, ROLE_DS_AUTH = ROLE_PREFIX + "4", ROLE_PREFIX + "5", ROLE_PREFIX + "7"

MAX_PROFILES = 16  # more is installFailedDueToInsufficientMemoryForProfile
# EUICCResponse "all profile elements processed, ok" (SGP.32 CompactSuccessResult comment)
SIMA_OK = bytes.fromhex("3007A0053003800100")
BPP_TAG = 0xBF36
_SEGMENT_FIRST = (0xA0, 0xA1, 0xA2, 0xA3, 0x86, 0x87, 0x88)


class _Abort(Exception):
    """A BPP step failed: answer the ProfileInstallationResult errorResult."""

    def __init__(self, command, reason, message):
        super().__init__(message)
        self.command = command
        self.reason = reason


# ---- certificates ------------------------------------------------------------------------


def _policies(cert):
    try:
        ext = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    except x509.ExtensionNotFound:
        return []
    return [p.policy_identifier.dotted_string for p in ext]


def smdp_oid(cert):
    """The SM-DP+ OID: the registeredID in the certificate's subjectAltName (SGP.22 4.5.2), or None."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    ids = san.get_values_for_type(x509.RegisteredID)
    return ids[0].dotted_string if ids else None


def check_server_certificate(card, cert_der, ci_pkid, roles):
    """(cert, 0) or (None, error code) for CERT.DPauth / CERT.DPpb under the CI `ci_pkid`.

    eSIM-specific check, no generic path validation: the certificate parses,
    its key is on P-256, it is signed by the CI key the eUICC holds under that
    identifier, and an id-rspRole policy, when present, is one of `roles`.
    Validity dates are not checked (an eUICC has no trusted clock).
    """
    ci = card.pki.get("ci_cert")
    if ci_pkid not in card.ci_pkids or ci is None or pki.ski(ci) != ci_pkid:
        return None, CI_PK_UNKNOWN
    try:
        cert = x509.load_der_x509_certificate(cert_der)
        key = cert.public_key()
    except ValueError:
        return None, INVALID_CERTIFICATE
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        return None, UNSUPPORTED_CURVE
    if not pki.verify(ci, cert.tbs_certificate_bytes, cert.signature):
        return None, INVALID_CERTIFICATE
    rsp_roles = [p for p in _policies(cert) if p.startswith(ROLE_PREFIX)]
    if rsp_roles and not set(rsp_roles) & set(roles):
        return None, INVALID_CERTIFICATE
    return cert, 0


# ---- the session context as the card's RAM keeps it -----------------------------------------

_RAM_BYTES = ("txid", "ci_pkid", "signature1", "otpk")


def session_to_json(s):
    """card.download -> a JSON-able dict (None stays None); the BPP progress is left out."""
    if s is None:
        return None
    out = {k: s[k].hex() for k in _RAM_BYTES if s.get(k) is not None}
    out.update({k: s[k] for k in ("stage", "address", "smdp_oid", "pb_oid") if k in s})
    if s.get("otsk") is not None:
        out["otsk"] = "%x" % s["otsk"].private_numbers().private_value
    if s.get("pb_cert") is not None:
        out["pb_cert"] = pki.certificate_der(s["pb_cert"]).hex()
    return out


def session_from_json(d):
    """The inverse of session_to_json."""
    if d is None:
        return None
    s = {k: bytes.fromhex(d[k]) for k in _RAM_BYTES if k in d}
    s.update({k: d[k] for k in ("stage", "address", "smdp_oid", "pb_oid") if k in d})
    if "otsk" in d:
        s["otsk"] = ec.derive_private_key(int(d["otsk"], 16), ec.SECP256R1())
    if "pb_cert" in d:
        s["pb_cert"] = x509.load_der_x509_certificate(bytes.fromhex(d["pb_cert"]))
    s["bpp"] = None
    return s


# ---- GetEuiccChallenge ------------------------------------------------------------------


def get_euicc_challenge(card, req):
    """ES10b.GetEuiccChallenge: a new challenge starts a new RSP session; the old context goes."""
    card.download = None
    return es10.get_euicc_challenge(card, req)


# ---- AuthenticateServer (SGP.22 5.7.13) ---------------------------------------------------


def _auth_error(txid, code):
    return tlv.encode(0xBF38, tlv.encode(0xA1, tlv.encode(0x80, txid) + tlv.encode(0x02, tlv.int_encode(code))))


def authenticate_server(card, req):
    """ES10b.AuthenticateServer: check the server, sign euiccSigned1, open the session context.

    Order of checks: CI known (ciPKUnknown), DPauth certificate (unsupportedCurve,
    invalidCertificate, invalidOid without an SM-DP+ OID), serverSignature1
    (invalidSignature), the eUICC challenge (noSessionContext when none was
    issued since power-up, euiccChallengeMismatch), then success. The
    challenge is used up by a successful call.
    """
    signed1, cert_t = (req.find_all(0x30) + [None, None])[:2]
    if signed1 is None or cert_t is None:
        raise TlvError(req.vstart, "serverSigned1 (30) and serverCertificate (30) in BF38", "fewer")
    sig = req.need(0x5F37, "serverSignature1").value
    ci_pkid = req.need(0x04, "euiccCiPKIdToBeUsed").value
    ctx = req.need(0xA0, "ctxParams1")
    txid = signed1.need(0x80, "transactionId").value
    if not 1 <= len(txid) <= 16:
        raise TlvError(signed1.vstart, "a transactionId of 1..16 bytes", "%d bytes" % len(txid))
    challenge = signed1.need(0x81, "euiccChallenge").value
    address_t = signed1.need(0x83, "serverAddress")
    address = address_t.as_str()
    server_challenge = signed1.need(0x84, "serverChallenge").value
    if len(server_challenge) != 16:
        raise TlvError(signed1.vstart, "a 16-byte serverChallenge", "%d bytes" % len(server_challenge))

    cert, code = check_server_certificate(card, cert_t.raw, ci_pkid, (ROLE_DP_AUTH, ROLE_DS_AUTH))
    if code:
        return _auth_error(txid, code)
    oid = smdp_oid(cert)
    if oid is None:
        return _auth_error(txid, INVALID_OID)
    if not pki.verify(cert, signed1.raw, sig):
        return _auth_error(txid, INVALID_SIGNATURE)
    if card.challenge is None:
        return _auth_error(txid, NO_SESSION_CONTEXT)
    if challenge != card.challenge:
        return _auth_error(txid, EUICC_CHALLENGE_MISMATCH)

    card.challenge = None
    euicc_signed1 = tlv.encode(0x30, [tlv.encode(0x80, txid), address_t.raw,
                                      tlv.encode(0x84, server_challenge),
                                      es10.euicc_info2(card), ctx.raw])
    signature1 = card.sign(euicc_signed1)
    card.download = {"stage": "authenticated", "txid": txid, "address": address,
                     "ci_pkid": ci_pkid, "smdp_oid": oid, "signature1": signature1}
    return tlv.encode(0xBF38, tlv.encode(0xA0, [euicc_signed1, tlv.encode(0x5F37, signature1),
                                                card.euicc_cert_der, card.eum_cert_der]))


# ---- PrepareDownload (SGP.22 5.7.5) -----------------------------------------------------


def _download_error(txid, code):
    return tlv.encode(0xBF21, tlv.encode(0xA1, tlv.encode(0x80, txid) + tlv.encode(0x02, tlv.int_encode(code))))


def hash_cc(confirmation_code, txid):
    """hashCc = SHA-256(SHA-256(confirmation code) | transactionId) (SGP.22 5.7.5, computed by the LPA/IPA)."""
    if isinstance(confirmation_code, str):
        confirmation_code = confirmation_code.encode("utf-8")
    return hashlib.sha256(hashlib.sha256(confirmation_code).digest() + bytes(txid)).digest()


def prepare_download(card, req):
    """ES10b.PrepareDownload: check DPpb and smdpSignature2, make otPK/otSK.EUICC.ECKA, sign euiccSigned2.

    Errors: noSessionContext (no AuthenticateServer since the last challenge /
    power-up), unsupportedCurve / invalidCertificate (DPpb not under the
    session's CI, not P-256, or another SM-DP+ OID than DPauth's),
    invalidSignature (smdpSignature2 over smdpSigned2 || euiccSignature1 DO),
    invalidTransactionId, undefinedError (ccRequiredFlag without a 32-byte
    hashCc). The eUICC cannot check the confirmation code itself: it signs
    hashCc into euiccSigned2 for the SM-DP+ to compare.
    """
    signed2, cert_t = (req.find_all(0x30) + [None, None])[:2]
    if signed2 is None or cert_t is None:
        raise TlvError(req.vstart, "smdpSigned2 (30) and smdpCertificate (30) in BF21", "fewer")
    sig_t = req.need(0x5F37, "smdpSignature2")
    txid = signed2.need(0x80, "transactionId").value
    cc_required = signed2.need(0x01, "ccRequiredFlag").as_bool()
    hcc = req.find(0x04)
    s = card.download
    if s is None or s["stage"] not in ("authenticated", "prepared"):
        return _download_error(txid, NO_SESSION_CONTEXT)
    cert, code = check_server_certificate(card, cert_t.raw, s["ci_pkid"], (ROLE_DP_PB,))
    if code:
        return _download_error(txid, INVALID_CERTIFICATE if code == CI_PK_UNKNOWN else code)
    if smdp_oid(cert) != s["smdp_oid"]:
        return _download_error(txid, INVALID_CERTIFICATE)
    if not pki.verify(cert, signed2.raw + tlv.encode(0x5F37, s["signature1"]), sig_t.value):
        return _download_error(txid, INVALID_SIGNATURE)
    if txid != s["txid"]:
        return _download_error(txid, INVALID_TRANSACTION_ID)
    if cc_required and (hcc is None or len(hcc.value) != 32):
        return _download_error(txid, UNDEFINED_ERROR)

    otsk = ec.generate_private_key(ec.SECP256R1())
    otpk = pki.public_key_bytes(otsk)
    euicc_signed2 = tlv.enc(0x30, tlv.encode(0x80, txid), tlv.encode(0x5F49, otpk),
                            tlv.encode(0x04, hcc.value) if cc_required else None)
    s.update({"stage": "prepared", "otsk": otsk, "otpk": otpk, "bpp": None,
              "pb_cert": cert, "pb_oid": smdp_oid(cert)})
    return tlv.encode(0xBF21, tlv.encode(0xA0, [
        euicc_signed2, tlv.encode(0x5F37, card.sign(euicc_signed2 + sig_t.raw))]))


# ---- LoadBoundProfilePackage (SGP.22 5.7.6, 2.5.5) -------------------------------------------


def is_bpp_segment(card, request):
    """True when `request` is (part of) a BPP: BF36 starts one, the rest continue an open one."""
    if request[:2] == b"\xbf\x36":
        return True
    s = card.download
    b = s.get("bpp") if s else None
    if not b or not request:
        return False
    return request[0] in _SEGMENT_FIRST or (request[:2] == b"\xbf\x23" and b["index"] == 0)


def _head(data, off):
    """(tag, value offset, length) of the TLV header at `off`; the value may lie beyond the data."""
    end = len(data)
    if off >= end:
        raise TlvError(off, "a tag", "end of data")
    tag = data[off]
    i = off + 1
    if tag & 0x1F == 0x1F:
        while True:
            if i >= end or i - off > 3:
                raise TlvError(i, "a tag of at most 3 bytes", "more or end of data")
            tag = (tag << 8) | data[i]
            i += 1
            if not data[i - 1] & 0x80:
                break
    if i >= end:
        raise TlvError(i, "a length", "end of data")
    n = data[i]
    i += 1
    if n & 0x80:
        k = n & 0x7F
        if not 1 <= k <= 3 or i + k > end:
            raise TlvError(i - 1, "a length of 1..3 bytes", "%02X" % n)
        n = int.from_bytes(data[i:i + k], "big")
        i += k
    return tag, i, n


# children of BF36 in order: (tag, container?, optional?)
_BPP_LAYOUT = ((0xBF23, False, False), (0xA0, True, False), (0xA1, True, False),
               (0xA2, True, True), (0xA3, True, False))
_GROUP = {0xA0: (0x87, CMD_CONFIGURE_ISDP, True), 0xA1: (0x88, CMD_STORE_METADATA, False),
          0xA2: (0x87, CMD_REPLACE_KEYS, True), 0xA3: (0x86, CMD_LOAD_PE, True)}


def load_bound_profile_package(card, request):
    """One STORE DATA sequence of a BPP (raw bytes, not one whole TLV): b'' or BF37.

    The segments may be cut anywhere between whole '87'/'88'/'86' TLVs and the
    BF36/A0..A3 headers; a leaf TLV split over two sequences is a structure
    error. The first failure answers the errorResult and ends the session.
    """
    s = card.download
    if request[:2] == b"\xbf\x36":
        if s is None or s["stage"] != "prepared":
            card.download = None
            raise SwError(0x6985, "LoadBoundProfilePackage without PrepareDownload")
        tag, vs, n = _head(request, 0)
        s["stage"] = "bpp"
        s["bpp"] = {"left": n, "index": 0, "group": None, "group_left": 0, "cmd": CMD_ISC,
                    "rx": None, "plain": [], "iccid": None, "meta": None, "pe_bytes": 0}
        pos = vs
    else:
        pos = 0
    b = s["bpp"]
    try:
        while pos < len(request):
            pos = _step(card, s, b, request, pos)
        if b["left"] == 0:
            if b["group"] is not None or b["index"] != len(_BPP_LAYOUT):
                raise _Abort(b["cmd"], SCP03T_STRUCTURE, "BF36 ends before sequenceOf86")
            return _finish(card, s, b)
        return b""
    except _Abort as e:
        return _fail(card, s, b, e.command, e.reason)
    except bsp.BspError as e:
        return _fail(card, s, b, b["cmd"], SCP03T_SECURITY if e.reason in ("mac", "padding")
                     else SCP03T_STRUCTURE)
    except TlvError as e:
        return _fail(card, s, b, b["cmd"], SCP03T_STRUCTURE if b["cmd"] else INCORRECT_INPUT, str(e))


def _step(card, s, b, data, pos):
    """Consume one header or one leaf TLV at `pos`; returns the new position."""
    tag, vs, n = _head(data, pos)
    hlen = vs - pos
    if b["group"] is None:  # a child of BF36
        while b["index"] < len(_BPP_LAYOUT) and _BPP_LAYOUT[b["index"]][0] != tag and _BPP_LAYOUT[b["index"]][2]:
            b["index"] += 1
        if b["index"] >= len(_BPP_LAYOUT) or _BPP_LAYOUT[b["index"]][0] != tag:
            raise _Abort(b["cmd"], SCP03T_STRUCTURE, "unexpected %X in BF36" % tag)
        b["index"] += 1
        if tag == 0xBF23:
            if vs + n > len(data):
                raise _Abort(CMD_ISC, INCORRECT_INPUT, "InitialiseSecureChannel split over segments")
            _consume(b, hlen + n)
            _initialise_secure_channel(card, s, b, data[pos:vs + n])
            return vs + n
        _consume(b, hlen)
        b["group"], b["group_left"] = tag, n
        b["cmd"] = _GROUP[tag][1]
        b["plain"] = []
        if n == 0:
            _close_group(card, s, b)
        return vs
    leaf, cmd, decrypt = _GROUP[b["group"]]
    if tag != leaf or vs + n > len(data) or hlen + n > b["group_left"]:
        raise _Abort(cmd, SCP03T_STRUCTURE, "expected whole %02X TLVs in %02X" % (leaf, b["group"]))
    _consume(b, hlen + n)
    b["group_left"] -= hlen + n
    plain = b["rx"].unwrap(data[pos:vs + n], decrypt=decrypt, tag=leaf)
    if b["group"] == 0xA3:
        b["pe_bytes"] += len(plain)  # profile elements are not interpreted
    else:
        b["plain"].append(plain)
    if b["group_left"] == 0:
        _close_group(card, s, b)
    return vs + n


def _consume(b, k):
    if k > b["left"]:
        raise _Abort(b["cmd"], SCP03T_STRUCTURE, "more data than the BF36 length")
    b["left"] -= k


def _initialise_secure_channel(card, s, b, raw):
    """SGP.22 5.5.1 checks, then ECKA and the session keys (bsp.derive_session_keys)."""
    try:
        isc = bsp.parse_initialise_secure_channel(raw)
    except bsp.BspError as e:
        raise _Abort(CMD_ISC, INCORRECT_INPUT, str(e))
    if isc["remote_op_id"] != bsp.REMOTE_OP_INSTALL_BPP:
        raise _Abort(CMD_ISC, BAD_REMOTE_OP, "remoteOpId %d" % isc["remote_op_id"])
    if isc["transaction_id"] != s["txid"]:
        raise _Abort(CMD_ISC, BAD_TRANSACTION, "transactionId")
    if isc["key_type"] != bsp.KEY_TYPE_AES or isc["key_len"] != 16 or not 1 <= len(isc["host_id"]) <= 16:
        raise _Abort(CMD_ISC, BAD_CRT, "controlRefTemplate")
    pb = s.get("pb_cert")
    if not pki.verify(pb, bsp.isc_signed_bytes(raw, s["otpk"]), isc["smdp_sign"]):
        raise _Abort(CMD_ISC, BAD_SIGNATURE, "smdpSign")
    try:
        shs = bsp.ecka_shared_secret(s["otsk"], isc["smdp_otpk"])
    except bsp.BspError as e:
        raise _Abort(CMD_ISC, INCORRECT_INPUT, str(e))
    mac_chain, s_enc, s_mac = bsp.derive_session_keys(shs, isc["host_id"], card.eid_bytes)
    b["rx"] = bsp.BspReceiver(s_enc, s_mac, mac_chain)
    s["otsk"] = None  # one-time: gone once used


def _close_group(card, s, b):
    group, data = b["group"], b"".join(b["plain"])
    b["group"], b["plain"] = None, []
    try:
        if group == 0xA0:
            if tlv.decode(data).tag != 0xBF24:
                raise _Abort(CMD_CONFIGURE_ISDP, INCORRECT_INPUT, "ConfigureISDPRequest BF24 expected")
        elif group == 0xA1:
            _store_metadata(card, b, tlv.decode(data))
        elif group == 0xA2:
            mcv, enc_key, mac_key = bsp.parse_replace_session_keys(data)
            b["rx"] = bsp.BspReceiver(enc_key, mac_key, mcv)
    except TlvError as e:
        raise _Abort(_GROUP[group][1], INCORRECT_INPUT, str(e))
    except bsp.BspError as e:
        raise _Abort(_GROUP[group][1], INCORRECT_INPUT, str(e))


EVENT_NAME = {bit: name for name, bit in codec.EVENT_BIT.items()}  # notificationEnable -> enable


def _store_metadata(card, b, t):
    """StoreMetadataRequest BF25 {5A iccid, 91 spName, 92 name, [93 94], [95 class], [B6 notif], [99 ppr] ..}."""
    if t.tag != 0xBF25:
        raise _Abort(CMD_STORE_METADATA, INCORRECT_INPUT, "StoreMetadataRequest BF25 expected, found %X" % t.tag)
    iccid = codec.iccid_digits(t.need(0x5A, "iccid").value).upper().rstrip("F")
    cls_t = t.find(0x95)
    cls = codec.PROFILE_CLASS_NAME.get(cls_t.as_int() if cls_t is not None else 2)
    if cls is None:
        raise _Abort(CMD_STORE_METADATA, BAD_CLASS, "profileClass")
    addresses = {}
    notif = t.find(0xB6)
    for c in (notif or ()):
        # NotificationConfigurationInformation has no tagged component: AUTOMATIC TAGS gives 80/81
        op = c.find(0x80) or c.need(0x03, "profileManagementOperation")
        addr = (c.find(0x81) or c.need(0x0C, "notificationAddress")).as_str()
        for ev in op.as_bits(codec.NOTIFICATION_EVENTS):
            addresses[EVENT_NAME[ev]] = addr
    ppr_t = t.find(0x99)
    ppr = [p for p in (ppr_t.as_bits(codec.PPR_IDS) if ppr_t is not None else []) if p in ("ppr1", "ppr2")]
    b["iccid"] = iccid
    if card.state.find_profile(iccid) is not None:
        raise _Abort(CMD_STORE_METADATA, ICCID_EXISTS, "ICCID %s exists" % iccid)
    if len(card.state.profiles) >= MAX_PROFILES:
        raise _Abort(CMD_STORE_METADATA, NO_MEMORY, "no room")
    b["meta"] = {"iccid": iccid, "provider": t.need(0x91, "serviceProviderName").as_str(),
                 "name": t.need(0x92, "profileName").as_str(), "class": cls, "ppr": ppr,
                 "addresses": addresses}


def _pir(card, s, b, final):
    """Sign ProfileInstallationResult, keep it pending (its seqNumber), end the session."""
    seq = card.state.next_seq()
    meta = codec.notification_metadata(seq, "install", s["address"], b["iccid"])
    data = tlv.encode(0xBF27, [tlv.encode(0x80, s["txid"]), meta,
                               tlv.encode(0x06, tlv.oid_encode(s["pb_oid"])), tlv.encode(0xA2, final)])
    pir = tlv.encode(0xBF37, data + tlv.encode(0x5F37, card.sign(data)))
    card.state.add_pending(seq, "notification", pir, event="install", iccid=b["iccid"])
    card.download = None
    return pir


def _fail(card, s, b, command, reason, message=""):
    final = tlv.encode(0xA1, tlv.encode(0x80, tlv.int_encode(command)) + tlv.encode(0x81, tlv.int_encode(reason)))
    return _pir(card, s, b, final)


def _finish(card, s, b):
    m = b["meta"]
    if m is None:
        return _fail(card, s, b, CMD_LOAD_PE, INCORRECT_INPUT)
    p = card.state.add_profile({"iccid": m["iccid"], "name": m["name"], "provider": m["provider"],
                                "class": m["class"], "state": "disabled", "preloaded": False,
                                "notification_address": s["address"],
                                "notification_addresses": m["addresses"], "ppr": m["ppr"]})
    card.state.data["last_installed"] = m["iccid"]
    final = tlv.encode(0xA0, tlv.encode(0x4F, bytes.fromhex(p["isdp_aid"])) + tlv.encode(0x04, SIMA_OK))
    return _pir(card, s, b, final)


# ---- CancelSession (SGP.22 5.7.14) ----------------------------------------------------------


def cancel_session(card, req):
    """ES10b.CancelSession: sign {txid, smdpOid, reason} and drop the session context.

    invalidTransactionId (BF41 { 81 01 05 }) without a session or for another
    transaction; the context stays then.
    """
    txid = req.need(0x80, "transactionId").value
    reason = req.need(0x81, "reason").as_int()
    s = card.download
    if s is None or s["txid"] != txid:
        return tlv.encode(0xBF41, tlv.encode(0x81, tlv.int_encode(INVALID_TRANSACTION_ID)))
    signed = tlv.encode(0x30, [tlv.encode(0x80, txid), tlv.encode(0x81, tlv.oid_encode(s["smdp_oid"])),
                               tlv.encode(0x82, tlv.int_encode(reason))])
    card.download = None
    return tlv.encode(0xBF41, tlv.encode(0xA0, signed + tlv.encode(0x5F37, card.sign(signed))))


# ---- ListNotification that knows PIRs -----------------------------------------------------------


def list_notification(card, req):
    """ES10b.ListNotification: BF28 { [81 events] } -> BF28 { A0 { BF2F.. } }, PIRs included.

    A pending ProfileInstallationResult keeps its NotificationMetadata inside
    BF27; euicc_es10.list_notification only knows OtherSignedNotification.
    """
    notes = card.state.pending("notification")
    f = req.find(0x81)
    if f is not None:
        events = set(f.as_bits(codec.NOTIFICATION_EVENTS))
        notes = [n for n in notes if codec.EVENT_BIT[n["event"]] in events]
    metas = []
    for n in notes:
        top = tlv.decode(bytes.fromhex(n["der"]))
        meta = top.path(0xBF27, 0xBF2F) if top.tag == 0xBF37 else top.need(0xBF2F)
        metas.append(meta.raw)
    return tlv.encode(0xBF28, tlv.encode(0xA0, metas))
